package notify

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/boltfile"
	"github.com/childrens-trust/trustgate/internal/provider"
)

const formatVersion uint64 = 1

var (
	bucketMeta    = []byte("meta")
	bucketInbox   = []byte("inbox")
	bucketPending = []byte("pending")
	// bucketLeads held each child's lead professional before the
	// involvement index's early help episodes became the one place it is
	// kept; it is still created so that files of this format open alike,
	// and nothing reads or writes it.
	bucketLeads = []byte("leads")
	metaVersion = []byte("version")
)

// ErrBusy: the file is locked by another process beyond the open timeout.
var ErrBusy = errors.New("outbox busy")

// ErrUnavailable classifies every failure to read or write the store; the
// server answers 503 and discloses nothing.
var ErrUnavailable = errors.New("notification store unavailable")

// Options tune Open.
type Options struct {
	// OpenTimeout bounds the wait for the file lock. Default 1s.
	OpenTimeout time.Duration
}

// Store is the open notification store. Safe for concurrent use.
type Store struct {
	db    *bolt.DB
	added chan struct{}
}

// delivery is the state of a queued notification. A held one waits for
// Release (its request's audit entry to be written) before delivery.
type delivery struct {
	Held      bool   `json:"held,omitempty"`
	Attempts  int    `json:"attempts"`
	NextNS    int64  `json:"next_ns"` // not before (wall clock); 0: now
	LastError string `json:"last_error,omitempty"`
}

// Open opens (creating, mode 0600) the store at path.
func Open(path string, o Options) (*Store, error) {
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = time.Second
	}
	db, err := boltfile.Open(path, o.OpenTimeout, bucketMeta, metaVersion, formatVersion, bucketInbox, bucketPending, bucketLeads)
	switch {
	case errors.Is(err, boltfile.ErrLocked):
		return nil, fmt.Errorf("notify: %s: %w (is another gateway running?)", path, ErrBusy)
	case errors.Is(err, boltfile.ErrOpen):
		return nil, fmt.Errorf("notify: open %s: %w", path, errors.Unwrap(err))
	case err != nil:
		return nil, fmt.Errorf("notify: %s: %w", path, err)
	}
	s := &Store{db: db, added: make(chan struct{}, 1)}
	// A notification still held was added by a request the gateway may or
	// may not have finished recording before it stopped: release it (at
	// least once — a notification too many, never one too few).
	if err := s.release(func(*delivery) bool { return true }); err != nil {
		db.Close()
		return nil, fmt.Errorf("notify: %s: release held notifications: %w", path, err)
	}
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Added signals (coalesced) that notifications became deliverable.
func (s *Store) Added() <-chan struct{} { return s.added }

// Add stores ns in one durable transaction. Each notification's Seq is set
// to its recipient's next seq; IDs are the caller's (stable, unique). Those
// whose recipient push reports true are queued for webhook delivery, held
// until Release: the caller releases them once the disclosure is recorded,
// or takes them back with Remove if it could not be. (Held ones are also
// released when the store is next opened.)
func (s *Store) Add(ctx context.Context, ns []*provider.Notification, push func(recipient string) bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("notify: add: %w: %w", ErrUnavailable, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		inbox, pending := tx.Bucket(bucketInbox), tx.Bucket(bucketPending)
		for _, n := range ns {
			if n.ID == "" || n.Recipient == "" {
				return errors.New("a notification needs an id and a recipient")
			}
			b, err := inbox.CreateBucketIfNotExists([]byte(n.Recipient))
			if err != nil {
				return err
			}
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			n.Seq = seq
			v, err := json.Marshal(n)
			if err != nil {
				return err
			}
			if err := b.Put(u64(seq), v); err != nil {
				return err
			}
			if push != nil && push(n.Recipient) {
				d, _ := json.Marshal(delivery{Held: true})
				if err := pending.Put(pendingKey(n.Recipient, seq), d); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("notify: add: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// Release lets the held notifications among ns be delivered.
func (s *Store) Release(ctx context.Context, ns []*provider.Notification) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("notify: release: %w: %w", ErrUnavailable, err)
	}
	keys := map[string]bool{}
	for _, n := range ns {
		keys[string(pendingKey(n.Recipient, n.Seq))] = true
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		for k := range keys {
			v := b.Get([]byte(k))
			if v == nil {
				continue
			}
			var d delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			d.Held = false
			nv, _ := json.Marshal(d)
			if err := b.Put([]byte(k), nv); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("notify: release: %w: %w", ErrUnavailable, err)
	}
	s.wake()
	return nil
}

// Remove takes back notifications Add stored (their request could not be
// recorded, so the disclosure did not happen). Seqs are not reused.
func (s *Store) Remove(ctx context.Context, ns []*provider.Notification) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("notify: remove: %w: %w", ErrUnavailable, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, n := range ns {
			if err := tx.Bucket(bucketPending).Delete(pendingKey(n.Recipient, n.Seq)); err != nil {
				return err
			}
			if b := tx.Bucket(bucketInbox).Bucket([]byte(n.Recipient)); b != nil {
				if err := b.Delete(u64(n.Seq)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("notify: remove: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// release clears Held on every queued notification sel picks.
func (s *Store) release(sel func(*delivery) bool) error {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		type kv struct{ k, v []byte }
		var upd []kv
		if err := b.ForEach(func(k, v []byte) error {
			var d delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			if d.Held && sel(&d) {
				d.Held = false
				nv, _ := json.Marshal(d)
				upd = append(upd, kv{append([]byte(nil), k...), nv})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, u := range upd {
			if err := b.Put(u.k, u.v); err != nil {
				return err
			}
		}
		n = len(upd)
		return nil
	})
	if err == nil && n > 0 {
		s.wake()
	}
	return err
}

func (s *Store) wake() {
	select {
	case s.added <- struct{}{}:
	default:
	}
}

// MaxList bounds one List.
const MaxList = 500

// List returns recipient's notifications with seq > since, oldest first,
// at most limit (1..MaxList), and whether more follow.
func (s *Store) List(ctx context.Context, recipient string, since uint64, limit int) ([]provider.Notification, bool, error) {
	if limit < 1 || limit > MaxList {
		limit = MaxList
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("notify: list: %w: %w", ErrUnavailable, err)
	}
	var out []provider.Notification
	more := false
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInbox).Bucket([]byte(recipient))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(u64(since + 1)); k != nil; k, v = c.Next() {
			if len(out) == limit {
				more = true
				return nil
			}
			var n provider.Notification
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("inbox %s/%d: %w", recipient, binary.BigEndian.Uint64(k), err)
			}
			out = append(out, n)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("notify: list: %w: %w", ErrUnavailable, err)
	}
	return out, more, nil
}

// Pending is the number of notifications awaiting webhook delivery.
func (s *Store) Pending(ctx context.Context) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketPending).Stats().KeyN
		return nil
	})
	return n, err
}

// head is a partner's first queued notification.
type head struct {
	seq uint64
	d   delivery
}

// heads returns each partner's first queued notification.
func (s *Store) heads() (map[string]head, error) {
	out := map[string]head{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPending).Cursor()
		for k, v := c.First(); k != nil; {
			partner, seq, ok := splitPendingKey(k)
			if !ok {
				return fmt.Errorf("pending key %x is malformed", k)
			}
			var d delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out[partner] = head{seq: seq, d: d}
			// Jump past this partner's other entries.
			k, v = c.Seek(append([]byte(partner), 0x01))
		}
		return nil
	})
	return out, err
}

// first returns partner's first queued notification and its state.
func (s *Store) first(partner string) (*provider.Notification, delivery, bool, error) {
	var n *provider.Notification
	var d delivery
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(partner), 0x00)
		k, v := tx.Bucket(bucketPending).Cursor().Seek(prefix)
		if k == nil || !bytes.HasPrefix(k, prefix) {
			return nil
		}
		if err := json.Unmarshal(v, &d); err != nil {
			return err
		}
		_, seq, _ := splitPendingKey(k)
		raw := tx.Bucket(bucketInbox).Bucket([]byte(partner)).Get(u64(seq))
		if raw == nil {
			return fmt.Errorf("queued notification %s/%d is not in the inbox", partner, seq)
		}
		n = new(provider.Notification)
		return json.Unmarshal(raw, n)
	})
	return n, d, n != nil, err
}

// delivered takes a notification off the queue.
func (s *Store) delivered(partner string, seq uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPending).Delete(pendingKey(partner, seq)) })
}

// retryLater records a failed attempt.
func (s *Store) retryLater(partner string, seq uint64, d delivery) error {
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		k := pendingKey(partner, seq)
		if b.Get(k) == nil {
			return nil // delivered meanwhile
		}
		return b.Put(k, v)
	})
}

// purge deletes notifications timed before cutoff that are not queued,
// and returns how many.
func (s *Store) purge(cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		pending := tx.Bucket(bucketPending)
		inbox := tx.Bucket(bucketInbox)
		var partners [][]byte
		if err := inbox.ForEachBucket(func(k []byte) error {
			partners = append(partners, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return err
		}
		for _, p := range partners {
			b := inbox.Bucket(p)
			var old [][]byte
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				var t struct {
					Time time.Time `json:"time"`
				}
				if err := json.Unmarshal(v, &t); err != nil {
					return err
				}
				if !t.Time.Before(cutoff) {
					break
				}
				if pending.Get(pendingKey(string(p), binary.BigEndian.Uint64(k))) == nil {
					old = append(old, append([]byte(nil), k...))
				}
			}
			// Deleted after the walk: a bbolt cursor skips an entry
			// when the one under it is deleted.
			for _, k := range old {
				if err := b.Delete(k); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func pendingKey(partner string, seq uint64) []byte {
	k := make([]byte, 0, len(partner)+9)
	k = append(k, partner...)
	k = append(k, 0x00)
	return append(k, u64(seq)...)
}

func splitPendingKey(k []byte) (string, uint64, bool) {
	if len(k) < 10 || k[len(k)-9] != 0x00 {
		return "", 0, false
	}
	return string(k[:len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:]), true
}

// Snapshot writes a consistent copy of the store's file while it is in
// use (a backup of the data directory, docs/operations.md A3).
func (s *Store) Snapshot(start func(size int64) (io.Writer, error)) (int64, error) {
	return boltfile.Snapshot(s.db, start)
}
