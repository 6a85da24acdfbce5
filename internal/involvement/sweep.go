package involvement

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Erasure is what retention erased about one child: ids only, never the
// content (not even the agencies, which could name a shielded service).
type Erasure struct {
	Subject      string   `json:"subject"`
	Involvements []string `json:"involvements,omitempty"`
	Episodes     []string `json:"episodes,omitempty"`
	Matches      []string `json:"matches,omitempty"`
}

// IDs lists every id erased.
func (e *Erasure) IDs() []string {
	return slices.Concat(e.Involvements, e.Episodes, e.Matches)
}

// SweepResult counts what a sweep did.
type SweepResult struct {
	Lapsed   int `json:"lapsed"`
	Children int `json:"children"`
	Erased   int `json:"erased"`
}

// Recorder durably records an erasure before it happens (the audit log).
type Recorder func(ctx context.Context, e *Erasure) error

// Sweep applies retention at now: active involvements not renewed within
// ActiveFor lapse (they end ActiveFor after their last renewal); for each
// child with an involvement ended, or an episode closed, VisibleFor or
// more before now, the erasure is recorded through record and only then
// carried out, with the matches naming an erased involvement. A recorder
// failure stops the sweep: what was not recorded is not erased.
func (s *Store) Sweep(ctx context.Context, now time.Time, record Recorder) (*SweepResult, error) {
	res := &SweepResult{}
	lapseBefore := now.Add(-s.o.ActiveFor)
	_, err := s.update(ctx, func(j *journal) error {
		var due [][]byte
		c := j.tx.Bucket(bucketRenew).Cursor()
		limit := u64(uint64(lapseBefore.UnixNano()))
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0; k, _ = c.Next() {
			due = append(due, append([]byte(nil), k[8:]...))
		}
		for _, id := range due {
			subj := j.tx.Bucket(bucketIDs).Get(id)
			if subj == nil {
				continue
			}
			subj = append([]byte{}, subj...)
			prev, err := getInv(j.tx, subj, id)
			if err != nil || prev == nil {
				return err
			}
			v := *prev
			v.End, v.EndReason, v.UpdatedAt = prev.RenewedAt.Add(s.o.ActiveFor), EndedLapsed, now
			if err := s.writeInv(j, prev, &v, now); err != nil {
				return err
			}
			res.Lapsed++
		}
		return nil
	})
	if err != nil {
		return res, err
	}

	erasures, err := s.dueErasures(ctx, now)
	if err != nil {
		return res, err
	}
	for _, e := range erasures {
		if err := record(ctx, e); err != nil {
			return res, fmt.Errorf("involvement: record the erasure before erasing: %w", err)
		}
		if err := s.erase(ctx, e); err != nil {
			return res, err
		}
		res.Children++
		res.Erased += len(e.IDs())
	}
	return res, nil
}

// dueErasures finds, per child, what retention erases at now.
func (s *Store) dueErasures(ctx context.Context, now time.Time) ([]*Erasure, error) {
	before := now.Add(-s.o.VisibleFor)
	by := map[string]*Erasure{}
	var order []string
	get := func(subj []byte) *Erasure {
		k := hex.EncodeToString(subj)
		e, ok := by[k]
		if !ok {
			e = &Erasure{Subject: k}
			by[k] = e
			order = append(order, k)
		}
		return e
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		limit := u64(uint64(before.UnixNano()))
		c := tx.Bucket(bucketEnds).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0; k, _ = c.Next() {
			id := k[8:]
			subj := tx.Bucket(bucketIDs).Get(id)
			if subj == nil {
				continue
			}
			e := get(subj)
			e.Involvements = append(e.Involvements, formatID(prefixInvolvement, id))
		}
		// Episodes closed long enough ago (episodes are few: a full walk).
		return tx.Bucket(bucketEpisodes).ForEach(func(k, v []byte) error {
			var ep struct {
				Closed time.Time `json:"closed"`
			}
			if err := json.Unmarshal(v, &ep); err != nil {
				return err
			}
			if !ep.Closed.IsZero() && ep.Closed.Before(before) {
				e := get(k[:32])
				e.Episodes = append(e.Episodes, formatID(prefixEpisode, k[32:]))
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]*Erasure, 0, len(order))
	for _, k := range order {
		e := by[k]
		subj, _ := hex.DecodeString(k)
		err := s.view(ctx, func(tx *bolt.Tx) error {
			ms, err := childMatches(tx, subj)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if slices.Contains(e.Involvements, m.A.Involvement) || slices.Contains(e.Involvements, m.B.Involvement) {
					e.Matches = append(e.Matches, m.ID)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// erase deletes what e names, with every index entry of it.
func (s *Store) erase(ctx context.Context, e *Erasure) error {
	subj, err := subjectKey(e.Subject)
	if err != nil {
		return err
	}
	_, err = s.update(ctx, func(j *journal) error {
		for _, id := range e.Involvements {
			raw, _ := parseID(prefixInvolvement, id)
			v, err := getInv(j.tx, subj, raw)
			if err != nil {
				return err
			}
			if v == nil {
				continue
			}
			for _, d := range []struct{ b, k []byte }{
				{bucketInv, append(append([]byte{}, subj...), raw...)},
				{bucketIDs, raw},
				{bucketActive, activeKey(v.Partner, subj, raw)},
				{bucketRenew, tsKey(v.RenewedAt, raw)},
				{bucketEnds, tsKey(v.End, raw)},
			} {
				if err := j.del(d.b, d.k); err != nil {
					return err
				}
			}
		}
		for _, id := range e.Episodes {
			raw, _ := parseID(prefixEpisode, id)
			if err := j.del(bucketEpisodes, append(append([]byte{}, subj...), raw...)); err != nil {
				return err
			}
			if err := j.del(bucketEpIDs, raw); err != nil {
				return err
			}
		}
		for _, id := range e.Matches {
			raw, _ := parseID(prefixMatch, id)
			key := append(append([]byte{}, subj...), raw...)
			if v := j.tx.Bucket(bucketMatches).Get(key); v != nil {
				var m Match
				if err := json.Unmarshal(v, &m); err != nil {
					return err
				}
				for _, p := range []Party{m.A, m.B} {
					if err := j.del(bucketParties, partyKey(p.Partner, p.Practitioner, raw)); err != nil {
						return err
					}
				}
			}
			if err := j.del(bucketMatches, key); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}
