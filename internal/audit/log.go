package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Defaults for Options.
const (
	DefaultOpenTimeout = time.Second
	DefaultMaxBatch    = 512
)

// Options tune a Log. The zero value is usable.
type Options struct {
	// OpenTimeout bounds the wait for the file lock held by another
	// process. Zero or negative means DefaultOpenTimeout.
	OpenTimeout time.Duration
	// MaxBatch is the largest number of appends committed in one
	// transaction. Zero or negative means DefaultMaxBatch.
	MaxBatch int
}

func (o Options) withDefaults() Options {
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = DefaultOpenTimeout
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	return o
}

// Log is an open audit log. It is safe for concurrent use. Exactly one
// process may have a given file open as a Log; see Open.
type Log struct {
	db       *bolt.DB
	path     string
	maxBatch int
	hooks    hooks

	// mu guards closed and the send side of reqs: Append holds it for
	// reading while it enqueues, Close takes it for writing to close reqs.
	mu     sync.RWMutex
	closed bool
	reqs   chan *appendReq
	done   chan struct{} // closed when the committer has exited

	// headMu guards head and failed, which only the committer writes.
	headMu sync.Mutex
	head   head
	failed error // the first commit failure; set, it never clears

	closeOnce sync.Once
	closeErr  error

	commits atomic.Uint64 // committed append transactions
}

// hooks let tests observe and perturb the committer. All are nil in
// production.
type hooks struct {
	enqueued     func()            // after an append is queued
	beforeCommit func(n int) error // inside the write transaction of n entries; an error aborts it
}

type appendReq struct {
	entry Entry
	res   chan appendResult // buffered (1): the committer never blocks on it
}

type appendResult struct {
	seq  uint64
	hash string
	err  error
}

// Open opens the audit log at path, creating the file (mode 0600) and its
// buckets if needed, and starts the committer. It checks that the head
// recorded in the file matches the last stored entry (a mismatch is a
// *TamperError); it does not walk the whole chain, which is Verify's job.
//
// The file is locked for the life of the Log. If another process holds
// it, Open waits up to opts.OpenTimeout and then fails with an error
// wrapping ErrBusy.
func Open(path string, opts Options) (*Log, error) {
	return open(path, opts, hooks{})
}

func open(path string, opts Options, h hooks) (*Log, error) {
	opts = opts.withDefaults()
	db, err := openBolt(path, opts, false)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	var hd head
	if err := db.Update(func(tx *bolt.Tx) error {
		var err error
		hd, err = initTx(tx)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	l := &Log{
		db:       db,
		path:     path,
		maxBatch: opts.MaxBatch,
		hooks:    h,
		reqs:     make(chan *appendReq, opts.MaxBatch),
		done:     make(chan struct{}),
		head:     hd,
	}
	go l.run()
	return l, nil
}

// openBolt opens the bbolt file, turning a lock timeout into ErrBusy.
// Callers add the operation and path to errors.
func openBolt(path string, opts Options, readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:  opts.OpenTimeout,
		ReadOnly: readOnly,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: the audit log at %s is in use (locked) by another process "+
			"(e.g. a running gateway) and was not released within %s; "+
			"to read it while the gateway runs, take a copy with `trustgate audit snapshot` (%w)",
			ErrBusy, path, opts.OpenTimeout, err)
	}
	return db, err
}

// initTx creates the buckets of a new log, or checks an existing one, and
// returns its head.
func initTx(tx *bolt.Tx) (head, error) {
	entries, meta := tx.Bucket(bucketEntries), tx.Bucket(bucketMeta)
	if entries == nil && meta == nil {
		if _, err := tx.CreateBucket(bucketEntries); err != nil {
			return head{}, fmt.Errorf("create bucket %s: %w", bucketEntries, err)
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return head{}, fmt.Errorf("create bucket %s: %w", bucketMeta, err)
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], formatVersion)
		if err := meta.Put(metaVersion, v[:]); err != nil {
			return head{}, fmt.Errorf("write format version: %w", err)
		}
		h := head{seq: 0, hash: GenesisHash}
		if err := writeMeta(meta, h); err != nil {
			return head{}, fmt.Errorf("write head: %w", err)
		}
		return h, nil
	}
	if entries == nil {
		return head{}, tampered(0, "bucket %q is missing", bucketEntries)
	}
	if meta == nil {
		return head{}, tampered(0, "bucket %q is missing", bucketMeta)
	}
	h, err := readMeta(meta)
	if err != nil {
		return head{}, err
	}
	k, v := entries.Cursor().Last()
	if k == nil {
		return h, checkHead(h, 0, GenesisHash)
	}
	seq, ok := keySeq(k)
	if !ok {
		return head{}, tampered(0, "malformed key %x in bucket %q", k, bucketEntries)
	}
	if seq != h.seq {
		return head{}, checkHead(h, seq, "")
	}
	e, err := decodeEntry(seq, v)
	if err != nil {
		return head{}, err
	}
	return h, checkHead(h, seq, e.Hash)
}

// checkHead compares the head recorded in meta with the last stored entry
// (lastSeq 0 for none; lastHash is only compared when the seqs agree).
func checkHead(recorded head, lastSeq uint64, lastHash string) error {
	switch {
	case lastSeq < recorded.seq:
		return tampered(lastSeq+1, "missing: meta records head seq %d but the last entry is %d (truncated tail or edited meta)",
			recorded.seq, lastSeq)
	case lastSeq > recorded.seq:
		return tampered(recorded.seq+1, "beyond the head seq %d recorded in meta (edited meta)", recorded.seq)
	case lastHash != recorded.hash:
		if lastSeq == 0 {
			return tampered(0, "empty log but meta records head hash %s", recorded.hash)
		}
		return tampered(lastSeq, "hash %s does not match the head hash %s recorded in meta (altered entry or edited meta)",
			lastHash, recorded.hash)
	}
	return nil
}

// Head returns the seq and hash of the last committed entry: (0,
// GenesisHash) for an empty log.
func (l *Log) Head() (seq uint64, hash string) {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.head.seq, l.head.hash
}

// Append adds e to the log and returns its seq and hash once the
// transaction holding it has committed, which bbolt fsyncs before
// returning: when Append returns nil the entry is durable. e is not
// modified; its Seq, PrevHash and Hash are ignored and assigned by the
// log. A zero e.Time is set to the time of the call; times are stored in
// UTC.
//
// Concurrent appends are committed together (group commit): one committer
// takes every queued append, up to Options.MaxBatch, into a single write
// transaction, so they share one fsync. Entries are chained in the order
// the committer takes them; a caller that needs an order between two
// entries must wait for the first Append to return before calling the
// second.
//
// Errors:
//   - ErrUnavailable: the transaction failed. Nothing in it was
//     acknowledged and the head did not advance. The Log then refuses
//     every later Append (also ErrUnavailable), because after a failed
//     commit the file's state is uncertain; reopen the log, which checks
//     the head, to recover.
//   - ErrUnavailable and ErrClosed: the Log is closed.
//   - ErrInvalidEntry: e cannot be encoded; nothing was written.
//   - ctx's error, if ctx ends first. If it ends after the entry was
//     queued, the entry may still be committed.
func (l *Log) Append(ctx context.Context, e *Entry) (seq uint64, hash string, err error) {
	if err := ctx.Err(); err != nil {
		return 0, "", fmt.Errorf("audit: append: %w", err)
	}
	r := &appendReq{entry: cloneEntry(e), res: make(chan appendResult, 1)}
	if r.entry.Time.IsZero() {
		r.entry.Time = time.Now()
	}
	r.entry.Time = r.entry.Time.UTC()
	if y := r.entry.Time.Year(); y < 0 || y > 9999 {
		return 0, "", fmt.Errorf("audit: append: %w: time %v outside years 0-9999", ErrInvalidEntry, r.entry.Time)
	}
	if err := l.enqueue(ctx, r); err != nil {
		return 0, "", err
	}
	select {
	case res := <-r.res:
		return res.seq, res.hash, res.err
	case <-ctx.Done():
		return 0, "", fmt.Errorf("audit: append: waiting for commit (the entry may still be committed): %w", ctx.Err())
	}
}

func (l *Log) enqueue(ctx context.Context, r *appendReq) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return fmt.Errorf("audit: append: %w: %w", ErrUnavailable, ErrClosed)
	}
	if err := l.failure(); err != nil {
		return err
	}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		return fmt.Errorf("audit: append: %w", ctx.Err())
	}
	if l.hooks.enqueued != nil {
		l.hooks.enqueued()
	}
	return nil
}

// cloneEntry copies e, including its slices, so that the committer never
// shares memory with a caller who gave up waiting.
func cloneEntry(e *Entry) Entry {
	c := *e
	c.Categories = slices.Clone(e.Categories)
	c.AllowedCategories = slices.Clone(e.AllowedCategories)
	c.Reasons = slices.Clone(e.Reasons)
	return c
}

func (l *Log) failure() error {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.failed
}

// run is the committer: it drains queued appends into batches until reqs
// is closed and empty.
func (l *Log) run() {
	defer close(l.done)
	batch := make([]*appendReq, 0, l.maxBatch)
	for r := range l.reqs {
		batch = append(batch[:0], r)
	fill:
		for len(batch) < l.maxBatch {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		l.commit(batch)
		clear(batch)
	}
}

// commit writes batch in one transaction and answers every request in it.
func (l *Log) commit(batch []*appendReq) {
	from, err := l.headSnapshot()
	if err != nil {
		for _, r := range batch {
			r.res <- appendResult{err: err}
		}
		return
	}

	// Encode outside the transaction. An entry that cannot be encoded
	// fails alone and takes no seq.
	recs := make([]record, 0, len(batch))
	ok := make([]*appendReq, 0, len(batch))
	h := from
	for _, r := range batch {
		rec, err := encodeEntry(r.entry, h.seq+1, h.hash)
		if err != nil {
			r.res <- appendResult{err: fmt.Errorf("audit: append: %w", err)}
			continue
		}
		h = head{seq: h.seq + 1, hash: rec.hash}
		recs = append(recs, rec)
		ok = append(ok, r)
	}
	if len(recs) == 0 {
		return
	}

	var to head
	err = l.db.Update(func(tx *bolt.Tx) error {
		var err error
		if to, err = appendRecords(tx, from, recs); err != nil {
			return err
		}
		if l.hooks.beforeCommit != nil {
			return l.hooks.beforeCommit(len(recs))
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("audit: append: %w: commit of %d entries after seq %d failed; refusing further appends until reopened: %w",
			ErrUnavailable, len(recs), from.seq, err)
		l.headMu.Lock()
		l.failed = err
		l.headMu.Unlock()
		for _, r := range ok {
			r.res <- appendResult{err: err}
		}
		return
	}
	l.commits.Add(1)
	l.headMu.Lock()
	l.head = to
	l.headMu.Unlock()
	for i, r := range ok {
		r.res <- appendResult{seq: from.seq + 1 + uint64(i), hash: recs[i].hash}
	}
}

// headSnapshot returns the head and the sticky failure, if any.
func (l *Log) headSnapshot() (head, error) {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.head, l.failed
}

// Close stops accepting appends, waits for the committer to commit every
// append already queued, and closes the file. It is idempotent: later
// calls return the first call's result.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.reqs)
		l.mu.Unlock()
		<-l.done
		if err := l.db.Close(); err != nil {
			l.closeErr = fmt.Errorf("audit: close %s: %w", l.path, err)
		}
	})
	return l.closeErr
}

// Err reports whether the log can take appends: nil while it can, an error
// wrapping ErrUnavailable once it is closed or a commit has failed (it then
// stays unavailable until reopened). Readiness probes call it.
func (l *Log) Err() error {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return fmt.Errorf("audit: %w: %w", ErrUnavailable, ErrClosed)
	}
	if err := l.failure(); err != nil {
		return fmt.Errorf("audit: %w: %w", ErrUnavailable, err)
	}
	return nil
}
