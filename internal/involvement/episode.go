package involvement

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

func childEpisodes(tx *bolt.Tx, subj []byte) ([]*Episode, error) {
	var out []*Episode
	c := tx.Bucket(bucketEpisodes).Cursor()
	for k, raw := c.Seek(subj); k != nil && bytes.HasPrefix(k, subj); k, raw = c.Next() {
		e := new(Episode)
		if err := json.Unmarshal(raw, e); err != nil {
			return nil, fmt.Errorf("episode %x: %w", k[32:], err)
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *Episode) int { return a.Opened.Compare(b.Opened) })
	return out, nil
}

// OpenEpisode opens an early help episode for the child at opened; the
// opener joins its team in role. A child has at most one open episode.
func (s *Store) OpenEpisode(ctx context.Context, subject string, opened time.Time, by Actor, role string) (*Episode, Undo, error) {
	subj, err := subjectKey(subject)
	if err != nil {
		return nil, nil, err
	}
	id := newID()
	e := &Episode{
		ID: formatID(prefixEpisode, id), Subject: subject, Opened: opened, OpenedBy: by,
		Team:  []Member{{Partner: by.Partner, Practitioner: by.Practitioner, Role: role, Joined: opened}},
		Leads: []Lead{},
	}
	undo, err := s.update(ctx, func(j *journal) error {
		eps, err := childEpisodes(j.tx, subj)
		if err != nil {
			return err
		}
		for _, o := range eps {
			if o.Open() {
				return fmt.Errorf("%w: the child already has an open early help episode: %s", ErrConflict, o.ID)
			}
		}
		if err := j.put(bucketEpIDs, id, subj); err != nil {
			return err
		}
		return j.putJSON(bucketEpisodes, append(append([]byte{}, subj...), id...), e)
	})
	if err != nil {
		return nil, nil, err
	}
	return e, undo, nil
}

// Episode returns an episode by id.
func (s *Store) Episode(ctx context.Context, id string) (*Episode, error) {
	raw, ok := parseID(prefixEpisode, id)
	if !ok {
		return nil, fmt.Errorf("%w: no early help episode %q", ErrNotFound, clip(id))
	}
	var e *Episode
	err := s.view(ctx, func(tx *bolt.Tx) error {
		subj := tx.Bucket(bucketEpIDs).Get(raw)
		if subj == nil {
			return nil
		}
		v := tx.Bucket(bucketEpisodes).Get(append(append([]byte{}, subj...), raw...))
		if v == nil {
			return nil
		}
		e = new(Episode)
		return json.Unmarshal(v, e)
	})
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, fmt.Errorf("%w: no early help episode %q", ErrNotFound, clip(id))
	}
	return e, nil
}

// ChangeEpisode applies fn to the open episode id in one transaction.
// fn returns an error to refuse the change (nothing is written).
func (s *Store) ChangeEpisode(ctx context.Context, id string, fn func(e *Episode) error) (*Episode, Undo, error) {
	raw, ok := parseID(prefixEpisode, id)
	if !ok {
		return nil, nil, fmt.Errorf("%w: no early help episode %q", ErrNotFound, clip(id))
	}
	var out *Episode
	undo, err := s.update(ctx, func(j *journal) error {
		subj := j.tx.Bucket(bucketEpIDs).Get(raw)
		if subj == nil {
			return fmt.Errorf("%w: no early help episode %q", ErrNotFound, id)
		}
		key := append(append([]byte{}, subj...), raw...)
		v := j.tx.Bucket(bucketEpisodes).Get(key)
		if v == nil {
			return fmt.Errorf("%w: no early help episode %q", ErrNotFound, id)
		}
		e := new(Episode)
		if err := json.Unmarshal(v, e); err != nil {
			return err
		}
		if !e.Open() {
			return fmt.Errorf("%w: early help episode %s closed at %s", ErrConflict, id, e.Closed.Format(time.RFC3339))
		}
		if err := fn(e); err != nil {
			return err
		}
		out = e
		return j.putJSON(bucketEpisodes, key, e)
	})
	if err != nil {
		return nil, nil, err
	}
	return out, undo, nil
}

// Join adds m to the team (a current member cannot join twice).
func Join(m Member) func(*Episode) error {
	return func(e *Episode) error {
		if e.IsMember(m.Partner, m.Practitioner) {
			return fmt.Errorf("%w: %s of %s is already in the team", ErrConflict, m.Practitioner, m.Partner)
		}
		if m.Joined.Before(e.Opened) {
			return bad("joined", "is before the episode opened (%s)", e.Opened.Format(time.RFC3339))
		}
		e.Team = append(e.Team, m)
		return nil
	}
}

// Leave records that a member left at t; a member who is the lead
// professional stops being it at t.
func Leave(partner, practitioner string, t time.Time) func(*Episode) error {
	return func(e *Episode) error {
		i := e.member(partner, practitioner)
		if i < 0 {
			return fmt.Errorf("%w: %s of %s is not in the team", ErrNotFound, practitioner, partner)
		}
		if t.Before(e.Team[i].Joined) {
			return bad("left", "is before the member joined (%s)", e.Team[i].Joined.Format(time.RFC3339))
		}
		e.Team[i].Left = t
		if l := e.Lead(); l != nil && l.Partner == partner && l.Practitioner == practitioner {
			l.To = t
		}
		return nil
	}
}

// SetLead makes a current member the lead professional from t, ending the
// previous lead's term: only a member of the team, so only an involved
// agency, may be named.
func SetLead(l Lead) func(*Episode) error {
	return func(e *Episode) error {
		if !e.IsMember(l.Partner, l.Practitioner) {
			return bad("practitioner", "%s of %s is not in the team around the child: only a member of the team (an involved agency) may be the lead professional", l.Practitioner, l.Partner)
		}
		if cur := e.Lead(); cur != nil {
			if cur.Partner == l.Partner && cur.Practitioner == l.Practitioner {
				return fmt.Errorf("%w: %s of %s is already the lead professional", ErrConflict, l.Practitioner, l.Partner)
			}
			cur.To = l.From
		}
		e.Leads = append(e.Leads, l)
		return nil
	}
}

// Close closes the episode at t (the team and lead stay as history).
func Close(t time.Time, by Actor) func(*Episode) error {
	return func(e *Episode) error {
		if t.Before(e.Opened) {
			return bad("closed", "is before the episode opened (%s)", e.Opened.Format(time.RFC3339))
		}
		e.Closed, e.ClosedBy = t, &by
		if l := e.Lead(); l != nil {
			l.To = t
		}
		for i := range e.Team {
			if e.Team[i].Left.IsZero() {
				e.Team[i].Left = t
			}
		}
		return nil
	}
}

func sortMatches(ms []Match) {
	slices.SortStableFunc(ms, func(a, b Match) int { return b.Time.Compare(a.Time) })
}
