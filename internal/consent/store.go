package consent

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/childrens-trust/trustgate/internal/boltfile"
	"github.com/childrens-trust/trustgate/internal/policy"
)

// Defaults for Options.
const (
	DefaultOpenTimeout   = time.Second
	DefaultMaxPerSubject = 256
)

// formatVersion is the on-disk layout this package writes and reads.
const formatVersion uint64 = 1

// The buckets of the state store, all created on Open.
var (
	bucketMeta     = []byte("meta")             // "version" → big-endian uint64
	bucketConsents = []byte("consents")         // consent id → JSON Record
	bucketSubjects = []byte("consent_subjects") // subject ‖ 0x00 ‖ big-endian seq → consent id
	bucketReviews  = []byte("reviews")          // review id → JSON Review
	bucketOpen     = []byte("reviews_open")     // big-endian due ns ‖ review id → nil
	bucketClosed   = []byte("reviews_closed")   // big-endian closed ns ‖ review id → nil

	metaVersion = []byte("version")
)

// ErrBusy: the file is locked by another process and was not released
// within the open timeout.
var ErrBusy = errors.New("state store busy")

// Options tune a Store. The zero value is usable.
type Options struct {
	// OpenTimeout bounds the wait for the file lock. Zero: DefaultOpenTimeout.
	OpenTimeout time.Duration
	// MaxPerSubject bounds the consent records kept for one child, which
	// bounds every decision's policy input. Zero: DefaultMaxPerSubject.
	MaxPerSubject int
}

// Store is the open state store. Safe for concurrent use; exactly one
// process may have the file open.
type Store struct {
	db            *bolt.DB
	path          string
	maxPerSubject int
	closed        atomic.Bool
	views         views // ForDecision's answers, until a record changes
}

// Open opens the state store at path, creating the file (mode 0600) and
// its buckets if needed. If another process holds the file, Open waits up
// to OpenTimeout and fails with an error wrapping ErrBusy.
func Open(path string, opts Options) (*Store, error) {
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.MaxPerSubject <= 0 {
		opts.MaxPerSubject = DefaultMaxPerSubject
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.OpenTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("consent: open %s: %w: locked by another process and not released within %s (%w)", path, ErrBusy, opts.OpenTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("consent: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(metaVersion); v != nil {
			if len(v) != 8 || binary.BigEndian.Uint64(v) != formatVersion {
				return fmt.Errorf("format version %x is not %d", v, formatVersion)
			}
		} else if err := meta.Put(metaVersion, be(formatVersion)); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketConsents, bucketSubjects, bucketReviews, bucketOpen, bucketClosed} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("consent: open %s: %w", path, err)
	}
	return &Store{db: db, path: path, maxPerSubject: opts.MaxPerSubject}, nil
}

// Close closes the file. Calls after Close fail with ErrUnavailable.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.db.Close()
}

// Ready reports whether the store can answer.
func (s *Store) Ready(ctx context.Context) error {
	return s.view(ctx, func(tx *bolt.Tx) error { return nil })
}

func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	return s.classify(s.db.View(fn))
}

func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := s.usable(ctx); err != nil {
		return err
	}
	return s.classify(s.db.Update(fn))
}

func (s *Store) usable(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("consent: %w: closed", ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("consent: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// classify passes *Error through and marks everything else unavailable.
func (s *Store) classify(err error) error {
	var ce *Error
	if err == nil || errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("consent: %s: %w: %w", s.path, ErrUnavailable, err)
}

// Record stores a new record atomically with its subject index entry. The
// record must have passed Check and carry its ID, Subject, RecordedBy,
// RecordedAt and receipt. A used id is ErrConflict; a subject that already
// has MaxPerSubject records is ErrInvalid (field subject).
func (s *Store) Record(ctx context.Context, r *Record) error {
	if r.ID == "" || r.Subject == "" || r.ReceiptID == "" || r.RecordedAt.IsZero() || r.Withdrawal != nil {
		return invalid("", "a record needs an id, a subject, a receipt and a recording time, and no withdrawal")
	}
	val, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("consent: encode %s: %w", r.ID, err)
	}
	defer s.views.changed()
	return s.update(ctx, func(tx *bolt.Tx) error {
		cs, idx := tx.Bucket(bucketConsents), tx.Bucket(bucketSubjects)
		if cs.Get([]byte(r.ID)) != nil {
			return conflict("id", fmt.Sprintf("%s is already used", r.ID))
		}
		n := 0
		prefix := subjectPrefix(r.Subject)
		c := idx.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
		}
		if n >= s.maxPerSubject {
			return invalid("subject", fmt.Sprintf("the child already has %d consent records, the most the gateway keeps for one child", n))
		}
		seq, err := idx.NextSequence()
		if err != nil {
			return err
		}
		if err := cs.Put([]byte(r.ID), val); err != nil {
			return err
		}
		return idx.Put(append(prefix, be(seq)...), []byte(r.ID))
	})
}

// Get returns the record with id, or an *Error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*Record, error) {
	var r *Record
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		r, err = getRecord(tx, id)
		return err
	})
	return r, err
}

func getRecord(tx *bolt.Tx, id string) (*Record, error) {
	v := tx.Bucket(bucketConsents).Get([]byte(id))
	if v == nil {
		return nil, notFound("id", fmt.Sprintf("no consent %q is on record", clip(id)))
	}
	var r Record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode consent %s: %w", clip(id), err)
	}
	return &r, nil
}

// Withdraw records w against the consent id, atomically: it fails with an
// *Error wrapping ErrNotFound for an unknown id and ErrConflict for a
// record already withdrawn (checked inside the transaction, so two
// concurrent withdrawals cannot both succeed). w must have passed
// CheckWithdrawal and carry its receipt. It returns the updated record.
func (s *Store) Withdraw(ctx context.Context, id string, w *Withdrawal) (*Record, error) {
	if w.ReceiptID == "" || w.At.IsZero() || w.RecordedAt.IsZero() {
		return nil, invalid("", "a withdrawal needs a time, a recording time and a receipt")
	}
	var out *Record
	defer s.views.changed()
	err := s.update(ctx, func(tx *bolt.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		if r.Withdrawal != nil {
			return conflict("id", fmt.Sprintf("consent %s was already withdrawn (at %s)", r.ID, r.Withdrawal.At.UTC().Format(time.RFC3339)))
		}
		wc := *w
		r.Withdrawal = &wc
		val, err := json.Marshal(r)
		if err != nil {
			return err
		}
		out = r
		return tx.Bucket(bucketConsents).Put([]byte(id), val)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete removes a record that has not been withdrawn, and its index
// entry. It exists only to undo a Record whose audit entry could not be
// written; history is otherwise never erased.
func (s *Store) Delete(ctx context.Context, id string) error {
	defer s.views.changed()
	return s.update(ctx, func(tx *bolt.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		if r.Withdrawal != nil {
			return conflict("id", "a withdrawn consent is history and is never deleted")
		}
		idx := tx.Bucket(bucketSubjects)
		prefix := subjectPrefix(r.Subject)
		c := idx.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if string(v) == id {
				if err := c.Delete(); err != nil {
					return err
				}
				break
			}
		}
		return tx.Bucket(bucketConsents).Delete([]byte(id))
	})
}

// History returns every record of the subject (by pseudonym), in the order
// they were recorded, withdrawn and expired ones included.
func (s *Store) History(ctx context.Context, subject string) ([]*Record, error) {
	var out []*Record
	err := s.view(ctx, func(tx *bolt.Tx) error {
		prefix := subjectPrefix(subject)
		c := tx.Bucket(bucketSubjects).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			r, err := getRecord(tx, string(v))
			if errors.Is(err, ErrNotFound) {
				// An index entry without its record is damage, not a 404.
				return fmt.Errorf("the subject index names consent %s, which is missing", clip(string(v)))
			}
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// ForDecision returns every record of the subject as the policy's input
// (server.ConsentSource). The policy derives each status at decision time.
// The answer is held in memory (views) until any record is recorded,
// withdrawn or deleted, so that a child asked about again is not read and
// decoded again; the slices in it are shared and must not be modified.
func (s *Store) ForDecision(ctx context.Context, subject string) ([]policy.Consent, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	held, gen, ok := s.views.get(subject)
	if ok {
		return held, nil
	}
	recs, err := s.History(ctx, subject)
	if err != nil {
		return nil, err
	}
	out := make([]policy.Consent, len(recs))
	for i, r := range recs {
		out[i] = r.Policy()
	}
	s.views.put(subject, out, gen)
	return slices.Clip(out), nil
}

// views holds ForDecision's answers by subject, about maxViews of them (a
// full map is emptied). Every change to the records forgets them all,
// after its commit (changed); an answer read while a change was being
// committed is not kept (gen), so that no answer older than the last
// change is ever given after that change returned.
type views struct {
	mu  sync.Mutex
	gen uint64
	m   map[string][]policy.Consent
}

const maxViews = 16_384

func (v *views) get(subject string) ([]policy.Consent, uint64, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	cs, ok := v.m[subject]
	return slices.Clip(cs), v.gen, ok
}

func (v *views) put(subject string, cs []policy.Consent, gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if gen != v.gen {
		return
	}
	if v.m == nil || len(v.m) >= maxViews {
		v.m = make(map[string][]policy.Consent)
	}
	v.m[subject] = cs
}

// changed forgets every answer: a record was (or may have been) changed.
func (v *views) changed() {
	v.mu.Lock()
	v.gen++
	v.m = nil
	v.mu.Unlock()
}

func subjectPrefix(subject string) []byte {
	p := make([]byte, 0, len(subject)+9)
	p = append(p, subject...)
	return append(p, 0)
}

func be(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// Snapshot writes a consistent copy of the store's file while it is in
// use (a backup of the data directory, docs/operations.md A3).
func (s *Store) Snapshot(start func(size int64) (io.Writer, error)) (int64, error) {
	return boltfile.Snapshot(s.db, start)
}
