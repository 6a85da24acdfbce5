package involvement

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/boltfile"
	"github.com/childrens-trust/trustgate/internal/nhs"
)

// formatVersion 2: involvements in the binary form of codec.go (format
// 1 stored them as JSON; a format-1 file is refused, see Open).
const formatVersion uint64 = 2

var (
	bucketMeta     = []byte("meta")
	bucketInv      = []byte("inv")
	bucketIDs      = []byte("ids")
	bucketActive   = []byte("active")
	bucketRenew    = []byte("renew")
	bucketEnds     = []byte("ends")
	bucketEpisodes = []byte("episodes")
	bucketEpIDs    = []byte("epids")
	bucketMatches  = []byte("matches")
	bucketParties  = []byte("parties")
	metaVersion    = []byte("version")
	dataBuckets    = [][]byte{bucketInv, bucketIDs, bucketActive, bucketRenew, bucketEnds, bucketEpisodes, bucketEpIDs, bucketMatches, bucketParties}
)

// ID prefixes: an id says what it names.
const (
	prefixInvolvement = "inv_"
	prefixEpisode     = "eh_"
	prefixMatch       = "m_"
)

// ErrBusy: the file is locked by another process beyond the open timeout.
var ErrBusy = errors.New("index busy")

// Defaults of Options (the Verwijsindex's: a signal is active for two
// years unless renewed, and visible for five after it ends).
const (
	DefaultActiveFor  = 2 * 365 * 24 * time.Hour
	DefaultVisibleFor = 5 * 365 * 24 * time.Hour
)

// Options tune Open.
type Options struct {
	OpenTimeout time.Duration // the wait for the file lock; default 1s
	ActiveFor   time.Duration // an involvement lapses this long after its last renewal
	VisibleFor  time.Duration // an ended involvement is erased this long after its end
}

// Store is the open index. Safe for concurrent use.
type Store struct {
	db *bolt.DB
	o  Options
}

// Undo restores what one change overwrote. Call it only when the change
// could not be recorded (its audit entry failed).
type Undo func(ctx context.Context) error

// Open opens (creating, mode 0600) the index at path.
func Open(path string, o Options) (*Store, error) {
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = time.Second
	}
	if o.ActiveFor <= 0 {
		o.ActiveFor = DefaultActiveFor
	}
	if o.VisibleFor <= 0 {
		o.VisibleFor = DefaultVisibleFor
	}
	db, err := boltfile.Open(path, o.OpenTimeout, bucketMeta, metaVersion, formatVersion, dataBuckets...)
	switch {
	case errors.Is(err, boltfile.ErrLocked):
		return nil, fmt.Errorf("involvement: %s: %w (is another gateway running?)", path, ErrBusy)
	case errors.Is(err, boltfile.ErrOpen):
		return nil, fmt.Errorf("involvement: open %s: %w", path, errors.Unwrap(err))
	case errors.Is(err, boltfile.ErrVersion):
		// Refused, not migrated: format 1 was only ever written by
		// development builds of the index (no release carried it), and
		// the index is rebuilt from the agencies' caseload syncs.
		return nil, fmt.Errorf("involvement: %s: %w: this gateway reads index format %d; move the file aside (the agencies' next caseload syncs rebuild the index) or run the build that wrote it", path, err, formatVersion)
	case err != nil:
		return nil, fmt.Errorf("involvement: %s: %w", path, err)
	}
	return &Store{db: db, o: o}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Options returns the store's options with defaults filled in.
func (s *Store) Options() Options { return s.o }

// Ready reports whether the store can answer.
func (s *Store) Ready(ctx context.Context) error {
	return s.view(ctx, func(tx *bolt.Tx) error { return nil })
}

// Size is the file's size in bytes (benchmarks).
func (s *Store) Size() (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n, err
}

// ---------------------------------------------------------------------------
// Transactions, with a journal that can undo a change.

// journal wraps a write transaction and remembers the first old value of
// every key it writes or deletes, so that the change can be undone.
type journal struct {
	tx    *bolt.Tx
	saved []saved
	seen  map[string]bool
}

type saved struct {
	bucket []byte
	key    []byte
	old    []byte // nil: the key was absent
}

func (j *journal) remember(b, k []byte) {
	id := string(b) + "\x00" + string(k)
	if j.seen[id] {
		return
	}
	j.seen[id] = true
	var old []byte
	if v := j.tx.Bucket(b).Get(k); v != nil {
		old = append([]byte{}, v...)
	}
	j.saved = append(j.saved, saved{bucket: b, key: append([]byte(nil), k...), old: old})
}

func (j *journal) put(b, k, v []byte) error {
	j.remember(b, k)
	return j.tx.Bucket(b).Put(k, v)
}

// putFresh puts a key the caller knows is absent (under a fresh random
// id): its undo is a delete, with no read of the old value.
func (j *journal) putFresh(b, k, v []byte) error {
	id := string(b) + "\x00" + string(k)
	if !j.seen[id] {
		j.seen[id] = true
		j.saved = append(j.saved, saved{bucket: b, key: append([]byte(nil), k...)})
	}
	return j.tx.Bucket(b).Put(k, v)
}

func (j *journal) del(b, k []byte) error {
	j.remember(b, k)
	return j.tx.Bucket(b).Delete(k)
}

func (j *journal) putJSON(b, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return j.put(b, k, raw)
}

// update runs fn in a write transaction and returns the undo of what it
// changed.
func (s *Store) update(ctx context.Context, fn func(j *journal) error) (Undo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("involvement: %w: %w", ErrUnavailable, err)
	}
	var j *journal
	err := s.db.Update(func(tx *bolt.Tx) error {
		j = &journal{tx: tx, seen: map[string]bool{}}
		return fn(j)
	})
	if err != nil {
		return nil, classify(err)
	}
	saved := j.saved
	return func(ctx context.Context) error {
		if len(saved) == 0 {
			return nil
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := len(saved) - 1; i >= 0; i-- {
				sv := saved[i]
				b := tx.Bucket(sv.bucket)
				var err error
				if sv.old == nil {
					err = b.Delete(sv.key)
				} else {
					err = b.Put(sv.key, sv.old)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("involvement: undo: %w: %w", ErrUnavailable, err)
		}
		return nil
	}, nil
}

func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("involvement: %w: %w", ErrUnavailable, err)
	}
	if err := s.db.View(fn); err != nil {
		return classify(err)
	}
	return nil
}

// classify keeps input and lookup errors as they are and makes every
// other failure ErrUnavailable.
func classify(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("involvement: %w: %w", ErrUnavailable, err)
}

// ---------------------------------------------------------------------------
// Keys.

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func tsKey(t time.Time, id []byte) []byte {
	return append(u64(uint64(t.UnixNano())), id...)
}

// subjectKey is the pseudonym's 32 raw bytes.
func subjectKey(pseudonym string) ([]byte, error) {
	b, err := hex.DecodeString(pseudonym)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("involvement: %q is not a pseudonym (64 hex digits)", clip(pseudonym))
	}
	return b, nil
}

// newID is 8 random bytes whose hex form holds no valid NHS number (the id
// is written to the audit log: nhs.FreeOf).
func newID() []byte {
	for {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		if h := hex.EncodeToString(b); nhs.Redact(h) == h {
			return b
		}
	}
}

func formatID(prefix string, raw []byte) string { return prefix + hex.EncodeToString(raw) }

// parseID returns the 8 raw bytes of an id with prefix, or false.
func parseID(prefix, id string) ([]byte, bool) {
	h, ok := strings.CutPrefix(id, prefix)
	if !ok || len(h) != 16 {
		return nil, false
	}
	b, err := hex.DecodeString(h)
	return b, err == nil
}

func activeKey(partner string, subj, id []byte) []byte {
	k := make([]byte, 0, len(partner)+41)
	k = append(k, partner...)
	k = append(k, 0)
	k = append(k, subj...)
	return append(k, id...)
}

func partyKey(partner, practitioner string, id []byte) []byte {
	k := make([]byte, 0, len(partner)+len(practitioner)+10)
	k = append(k, partner...)
	k = append(k, 0)
	k = append(k, practitioner...)
	k = append(k, 0)
	return append(k, id...)
}

// ---------------------------------------------------------------------------
// Involvements.

func getInv(tx *bolt.Tx, subj, id []byte) (*Involvement, error) {
	raw := tx.Bucket(bucketInv).Get(append(append([]byte{}, subj...), id...))
	if raw == nil {
		return nil, nil
	}
	v, err := decodeInv(subj, id, raw)
	if err != nil {
		return nil, fmt.Errorf("involvement %x: %w", id, err)
	}
	return v, nil
}

// childInvolvements returns every stored involvement of the child.
func childInvolvements(tx *bolt.Tx, subj []byte) ([]*Involvement, error) {
	var out []*Involvement
	c := tx.Bucket(bucketInv).Cursor()
	for k, raw := c.Seek(subj); k != nil && bytes.HasPrefix(k, subj); k, raw = c.Next() {
		v, err := decodeInv(subj, k[32:], raw)
		if err != nil {
			return nil, fmt.Errorf("involvement %x: %w", k[32:], err)
		}
		out = append(out, v)
	}
	return out, nil
}

// writeInv stores v and keeps the indexes in step with its state, given
// what was stored before (nil: new).
func (s *Store) writeInv(j *journal, prev, v *Involvement, now time.Time) error {
	subj, err := subjectKey(v.Subject)
	if err != nil {
		return err
	}
	id, _ := parseID(prefixInvolvement, v.ID)
	put := j.put
	if prev == nil {
		// A new involvement's id is fresh: none of its keys exist yet.
		put = j.putFresh
		if err := put(bucketIDs, id, subj); err != nil {
			return err
		}
	} else {
		if prev.Active(now) {
			if err := j.del(bucketActive, activeKey(prev.Partner, subj, id)); err != nil {
				return err
			}
			if err := j.del(bucketRenew, tsKey(prev.RenewedAt, id)); err != nil {
				return err
			}
		}
		if !prev.End.IsZero() {
			if err := j.del(bucketEnds, tsKey(prev.End, id)); err != nil {
				return err
			}
		}
	}
	if v.Active(now) {
		if err := put(bucketActive, activeKey(v.Partner, subj, id), nil); err != nil {
			return err
		}
		if err := put(bucketRenew, tsKey(v.RenewedAt, id), nil); err != nil {
			return err
		}
	}
	if !v.End.IsZero() {
		if err := put(bucketEnds, tsKey(v.End, id), nil); err != nil {
			return err
		}
	}
	return put(bucketInv, append(append([]byte{}, subj...), id...), encodeInv(v))
}

// Record stores a new involvement of v.Partner (ID, times and Shielded
// are the caller's: Shielded from the registry and the kind; RecordedAt,
// UpdatedAt and RenewedAt default to now). An active involvement of the
// same agency, child, service and kind is a conflict (update it instead).
// If v is an active concern, it is matched with the other agencies'
// active concerns about the child, as rule decides.
func (s *Store) Record(ctx context.Context, v *Involvement, now time.Time, rule MatchRule) (*Involvement, []Match, Undo, error) {
	v.ID = formatID(prefixInvolvement, newID())
	fill(v, now)
	var ms []Match
	undo, err := s.update(ctx, func(j *journal) error {
		subj, err := subjectKey(v.Subject)
		if err != nil {
			return err
		}
		all, err := childInvolvements(j.tx, subj)
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.Partner == v.Partner && o.key() == v.key() && o.Active(now) && v.Active(now) {
				return fmt.Errorf("%w: your agency already records an active %s involvement with this child in service %s: %s (update or end it)", ErrConflict, v.Kind, v.Service, o.ID)
			}
		}
		if err := s.writeInv(j, nil, v, now); err != nil {
			return err
		}
		ms, err = s.match(j, subj, v, all, now, rule)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return v, ms, undo, nil
}

func fill(v *Involvement, now time.Time) {
	if v.RecordedAt.IsZero() {
		v.RecordedAt = now
	}
	if v.RenewedAt.IsZero() {
		v.RenewedAt = v.Start
		if v.RenewedAt.After(now) || v.RenewedAt.IsZero() {
			v.RenewedAt = now
		}
	}
	v.UpdatedAt = now
}

// match makes the matches v's concern causes with others (the child's
// other involvements, as stored before v): one per pair, with every
// other agency's active concern.
func (s *Store) match(j *journal, subj []byte, v *Involvement, others []*Involvement, now time.Time, rule MatchRule) ([]Match, error) {
	if !v.Concern || !v.Active(now) {
		return nil, nil
	}
	existing, err := childMatches(j.tx, subj)
	if err != nil {
		return nil, err
	}
	var out []Match
	for _, o := range others {
		if o.Partner == v.Partner || !o.Concern || !o.Active(now) || o.ID == v.ID {
			continue
		}
		if paired(existing, v.ID, o.ID) {
			continue
		}
		tellA, tellB, err := rule(v, o)
		if err != nil {
			return nil, err
		}
		mid := newID()
		m := Match{
			ID: formatID(prefixMatch, mid), Subject: v.Subject, Time: now,
			A: party(v), B: party(o), TellA: tellA, TellB: tellB, RequestID: v.RequestID,
		}
		if err := j.putJSON(bucketMatches, append(append([]byte{}, subj...), mid...), m); err != nil {
			return nil, err
		}
		for _, p := range []struct {
			told bool
			p    Party
		}{{tellA, m.A}, {tellB, m.B}} {
			if p.told {
				if err := j.put(bucketParties, partyKey(p.p.Partner, p.p.Practitioner, mid), subj); err != nil {
					return nil, err
				}
			}
		}
		existing = append(existing, &m)
		out = append(out, m)
	}
	return out, nil
}

func paired(ms []*Match, a, b string) bool {
	for _, m := range ms {
		if (m.A.Involvement == a && m.B.Involvement == b) || (m.A.Involvement == b && m.B.Involvement == a) {
			return true
		}
	}
	return false
}

func party(v *Involvement) Party {
	return Party{Involvement: v.ID, Partner: v.Partner, Practitioner: v.Practitioner, Contact: v.Contact, Kind: v.Kind, Shielded: v.Shielded}
}

func childMatches(tx *bolt.Tx, subj []byte) ([]*Match, error) {
	var out []*Match
	c := tx.Bucket(bucketMatches).Cursor()
	for k, raw := c.Seek(subj); k != nil && bytes.HasPrefix(k, subj); k, raw = c.Next() {
		m := new(Match)
		if err := json.Unmarshal(raw, m); err != nil {
			return nil, fmt.Errorf("match %x: %w", k[32:], err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Get returns an involvement by id.
func (s *Store) Get(ctx context.Context, id string) (*Involvement, error) {
	raw, ok := parseID(prefixInvolvement, id)
	if !ok {
		return nil, fmt.Errorf("%w: no involvement %q", ErrNotFound, clip(id))
	}
	var v *Involvement
	err := s.view(ctx, func(tx *bolt.Tx) error {
		subj := tx.Bucket(bucketIDs).Get(raw)
		if subj == nil {
			return nil
		}
		var err error
		v, err = getInv(tx, subj, raw)
		return err
	})
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%w: no involvement %q", ErrNotFound, clip(id))
	}
	return v, nil
}

// Change is an update of an involvement: nil fields stay as they are.
type Change struct {
	Practitioner     *string
	Contact          *Contact
	Concern          *bool
	ShareWithMatches *bool
	// Renew restarts the active period at the change's time.
	Renew bool
	// End ends the involvement at this time (not before its start).
	End *time.Time
}

// Update changes partner's involvement id. Only the agency that recorded
// an involvement may change it; an ended one cannot be changed. A concern
// newly raised is matched as in Record.
func (s *Store) Update(ctx context.Context, partner, id string, c Change, now time.Time, by Actor, requestID string, rule MatchRule) (*Involvement, []Match, Undo, error) {
	raw, ok := parseID(prefixInvolvement, id)
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: no involvement %q", ErrNotFound, clip(id))
	}
	var out *Involvement
	var ms []Match
	undo, err := s.update(ctx, func(j *journal) error {
		subj := j.tx.Bucket(bucketIDs).Get(raw)
		if subj == nil {
			return fmt.Errorf("%w: no involvement %q", ErrNotFound, id)
		}
		subj = append([]byte{}, subj...)
		prev, err := getInv(j.tx, subj, raw)
		if err != nil {
			return err
		}
		if prev == nil || prev.Partner != partner {
			return fmt.Errorf("%w: your agency records no involvement %q", ErrNotFound, id)
		}
		if !prev.Active(now) {
			return fmt.Errorf("%w: involvement %s ended at %s; record a new one", ErrConflict, id, prev.End.Format(time.RFC3339))
		}
		v := *prev
		if c.Practitioner != nil {
			v.Practitioner = *c.Practitioner
		}
		if c.Contact != nil {
			v.Contact = *c.Contact
		}
		if c.Concern != nil {
			v.Concern = *c.Concern
		}
		if c.ShareWithMatches != nil {
			v.ShareWithMatches = *c.ShareWithMatches
		}
		if c.Renew {
			v.RenewedAt = now
		}
		if c.End != nil {
			if c.End.Before(v.Start) {
				return bad("end", "is before the start (%s)", v.Start.Format(time.RFC3339))
			}
			v.End, v.EndReason = *c.End, EndedByAgency
		}
		v.UpdatedAt, v.UpdatedBy, v.RequestID = now, by, requestID
		if err := s.writeInv(j, prev, &v, now); err != nil {
			return err
		}
		out = &v
		if !prev.Concern && v.Concern {
			all, err := childInvolvements(j.tx, subj)
			if err != nil {
				return err
			}
			ms, err = s.match(j, subj, &v, all, now, rule)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return out, ms, undo, nil
}

// SyncResult counts what a caseload sync did, and the matches it made.
type SyncResult struct {
	Created   int     `json:"created"`
	Updated   int     `json:"updated"`
	Unchanged int     `json:"unchanged"`
	Ended     int     `json:"ended"`
	Matches   []Match `json:"-"`
}

// Sync makes items partner's whole active caseload, in one transaction:
// an item with the natural key (child, service, kind) of an active
// involvement of the agency updates it when something differs, others are
// recorded, and the agency's active involvements not listed are ended at
// now (reason caseload). Items must be distinct by natural key, active,
// checked and carry their Subject; Sync fills in ids and times. Sending
// the same caseload again changes nothing.
func (s *Store) Sync(ctx context.Context, partner string, items []*Involvement, now time.Time, by Actor, requestID string, rule MatchRule) (*SyncResult, Undo, error) {
	res := &SyncResult{}
	// In key order: bbolt writes neighbouring keys into the same pages.
	items = slices.Clone(items)
	slices.SortFunc(items, func(a, b *Involvement) int { return strings.Compare(a.key(), b.key()) })
	undo, err := s.update(ctx, func(j *journal) error {
		// The agency's active caseload as stored.
		current := map[string]*Involvement{}
		prefix := append([]byte(partner), 0)
		c := j.tx.Bucket(bucketActive).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+40 {
				return fmt.Errorf("active key %x is malformed", k)
			}
			v, err := getInv(j.tx, k[len(prefix):len(prefix)+32], k[len(prefix)+32:])
			if err != nil {
				return err
			}
			if v == nil {
				return fmt.Errorf("active key %x names no involvement", k)
			}
			if v.Active(now) {
				current[v.key()] = v
			}
		}
		listed := make(map[string]bool, len(items))
		for _, it := range items {
			it.Partner = partner
			listed[it.key()] = true
			prev := current[it.key()]
			if prev != nil && same(prev, it) {
				res.Unchanged++
				continue
			}
			subj, err := subjectKey(it.Subject)
			if err != nil {
				return err
			}
			v := it
			if prev != nil {
				cp := *prev
				cp.Practitioner, cp.Contact, cp.Concern, cp.ShareWithMatches, cp.Start = it.Practitioner, it.Contact, it.Concern, it.ShareWithMatches, it.Start
				cp.Shielded = it.Shielded
				v = &cp
				res.Updated++
			} else {
				v.ID = formatID(prefixInvolvement, newID())
				v.RecordedAt = time.Time{}
				fill(v, now)
				res.Created++
			}
			v.UpdatedAt, v.UpdatedBy, v.RequestID = now, by, requestID
			if err := s.writeInv(j, prev, v, now); err != nil {
				return err
			}
			if v.Concern && (prev == nil || !prev.Concern) {
				all, err := childInvolvements(j.tx, subj)
				if err != nil {
					return err
				}
				ms, err := s.match(j, subj, v, all, now, rule)
				if err != nil {
					return err
				}
				res.Matches = append(res.Matches, ms...)
			}
		}
		for k, prev := range current {
			if listed[k] {
				continue
			}
			v := *prev
			v.End, v.EndReason = now, EndedByCaseload
			if v.End.Before(v.Start) {
				v.End = v.Start
			}
			v.UpdatedAt, v.UpdatedBy, v.RequestID = now, by, requestID
			if err := s.writeInv(j, prev, &v, now); err != nil {
				return err
			}
			res.Ended++
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return res, undo, nil
}

// same reports whether a caseload item says nothing new about v.
func same(v, it *Involvement) bool {
	return v.Practitioner == it.Practitioner && v.Contact == it.Contact && v.Concern == it.Concern &&
		v.ShareWithMatches == it.ShareWithMatches && v.Start.Equal(it.Start) && v.Shielded == it.Shielded
}

// ---------------------------------------------------------------------------
// The child's view.

// Snapshot is what the index holds about one child, read in one
// transaction: the involvements still visible (active, or ended less
// than VisibleFor ago) and the early help episodes.
type Snapshot struct {
	Subject      string
	Involvements []*Involvement
	Episodes     []*Episode
}

// View reads the child's snapshot at now.
func (s *Store) View(ctx context.Context, subject string, now time.Time) (*Snapshot, error) {
	subj, err := subjectKey(subject)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{Subject: subject}
	err = s.view(ctx, func(tx *bolt.Tx) error {
		all, err := childInvolvements(tx, subj)
		if err != nil {
			return err
		}
		for _, v := range all {
			if s.visible(v, now) {
				snap.Involvements = append(snap.Involvements, v)
			}
		}
		snap.Episodes, err = childEpisodes(tx, subj)
		return err
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

func (s *Store) visible(v *Involvement, now time.Time) bool {
	return v.End.IsZero() || now.Before(v.End.Add(s.o.VisibleFor))
}

// Basis reports whether partner has a basis for knowing about the child at
// now: an active involvement, or a practitioner in the team around the
// child of an open early help episode. (The authorisation rule "only an
// involved agency may be named" asks this.)
func (s *Store) Basis(ctx context.Context, partner, subject string, now time.Time) (bool, error) {
	subj, err := subjectKey(subject)
	if err != nil {
		return false, err
	}
	ok := false
	err = s.view(ctx, func(tx *bolt.Tx) error {
		prefix := activeKey(partner, subj, nil)
		c := tx.Bucket(bucketActive).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			v, err := getInv(tx, subj, k[len(prefix):])
			if err != nil {
				return err
			}
			if v != nil && v.Active(now) {
				ok = true
				return nil
			}
		}
		eps, err := childEpisodes(tx, subj)
		if err != nil {
			return err
		}
		for _, e := range eps {
			if e.Open() && e.HasMember(partner) {
				ok = true
			}
		}
		return nil
	})
	return ok, err
}

// Matches returns the matches the practitioner of partner was told of,
// newest first.
func (s *Store) Matches(ctx context.Context, partner, practitioner string) ([]Match, error) {
	var out []Match
	err := s.view(ctx, func(tx *bolt.Tx) error {
		prefix := partyKey(partner, practitioner, nil)
		c := tx.Bucket(bucketParties).Cursor()
		for k, subj := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, subj = c.Next() {
			raw := tx.Bucket(bucketMatches).Get(append(append([]byte{}, subj...), k[len(prefix):]...))
			if raw == nil {
				continue
			}
			var m Match
			if err := json.Unmarshal(raw, &m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortMatches(out)
	return out, nil
}

// Snapshot writes a consistent copy of the store's file while it is in
// use (a backup of the data directory, docs/operations.md A3).
func (s *Store) Snapshot(start func(size int64) (io.Writer, error)) (int64, error) {
	return boltfile.Snapshot(s.db, start)
}
