package audit

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
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
	// DefaultPageSize is the bbolt page size of a new log file: large
	// enough that stored entries pack densely (see docs/performance.md).
	DefaultPageSize = 16384
	// DefaultCommitDelay bounds the committer's wait, under load, for
	// more appends to share a commit (see Log.run).
	DefaultCommitDelay = 5 * time.Millisecond
)

// Options tune a Log. The zero value is usable.
type Options struct {
	// OpenTimeout bounds the wait for the file lock held by another
	// process. Zero or negative means DefaultOpenTimeout.
	OpenTimeout time.Duration
	// MaxBatch is the largest number of appends committed in one
	// transaction. Zero or negative means DefaultMaxBatch.
	MaxBatch int
	// CommitDelay is how long, at most, the committer waits under load for
	// more appends before committing a batch that is not full (see
	// Log.run).
	// Zero means DefaultCommitDelay; negative disables the wait.
	CommitDelay time.Duration
	// PageSize is the bbolt page size used when the file is created
	// (an existing file keeps its own). Zero means DefaultPageSize.
	PageSize int
	// ReadOnly opens the file for reading only (for example a snapshot,
	// offline): Append fails with ErrReadOnly and the file is not changed.
	// Another process may read it at the same time, but not a writer.
	ReadOnly bool
	// ProbeInterval is how often a Log whose commit failed probes for
	// recovery (recover.go). Zero means DefaultProbeInterval.
	ProbeInterval time.Duration
	// Logger receives the failure and recovery transitions. Nil: none.
	Logger *slog.Logger
	// OnCommit, if set, is told the number of entries of each committed
	// batch (the gateway's commit batch size metric). It runs on the
	// committer: it must not block.
	OnCommit func(entries int)
	// JournalSize is the size in bytes of the journal file beside the log
	// (JournalPath; journal.go, docs/audit-journal.md) when it is created:
	// each committed batch is one write and one sync into it, and the
	// bbolt file is brought up to date behind, many batches to one
	// transaction. Zero means DefaultJournalSize; negative means no
	// journal: every batch is a bbolt transaction of its own.
	JournalSize int64
}

func (o Options) withDefaults() Options {
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = DefaultOpenTimeout
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.CommitDelay == 0 {
		o.CommitDelay = DefaultCommitDelay
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.JournalSize == 0 {
		o.JournalSize = DefaultJournalSize
	}
	return o
}

// Log is an open audit log. It is safe for concurrent use. Exactly one
// process may have a given file open as a Log; see Open.
type Log struct {
	db          *bolt.DB
	path        string
	maxBatch    int
	commitDelay time.Duration
	onCommit    func(entries int)
	hooks       hooks
	readOnly    bool
	grown       chan struct{} // signalled (without blocking) after each commit
	coming      atomic.Int64  // appends on their way (Coming)

	// mu guards closed and the send side of reqs: Append holds it for
	// reading while it enqueues, Close takes it for writing to close reqs.
	mu     sync.RWMutex
	closed bool
	reqs   chan *appendReq
	done   chan struct{} // closed when the committer has exited

	// headMu guards head, tree and failed, which only the committer
	// writes (and failed, which a failed checkpoint write may set).
	headMu sync.Mutex
	head   head
	tree   *tree
	heads  heads // chain heads (chains.go); replaced entries only under headMu, read by the committer without it
	failed error // the first commit failure; cleared when a probe succeeds (recover.go)
	rec    recovery

	jr *journal // nil: every batch is a bbolt transaction (apply.go)
	ap applyState

	closeOnce sync.Once
	closeErr  error

	commits atomic.Uint64 // committed append transactions
}

// hooks let tests observe and perturb the committer. All are nil in
// production.
type hooks struct {
	enqueued     func()            // after an append is queued
	beforeCommit func(n int) error // before a batch of n entries is made durable (journal write or bbolt transaction); an error aborts it
	beforeApply  func(n int) error // inside the bbolt transaction applying n journalled entries, before they are written; an error aborts it
	afterJournal func() error      // after a batch's journal record is durable; an error fails the batch as a failed sync would
	afterApply   func() error      // after an apply's bbolt transaction committed; an error fails the apply as a commit whose last sync failed would
}

type appendReq struct {
	entry Entry
	tmpl  []byte            // the entry encoded by the caller, for the committer to splice (nil: encode in full)
	res   chan appendResult // buffered (1): the committer never blocks on it
}

type appendResult struct {
	seq  uint64
	hash string
	err  error
}

// Open opens the audit log at path, creating the file (mode 0600) and its
// buckets if needed, and starts the committer. It checks that the head
// recorded in the file matches the last stored entry, that the recorded
// Merkle tree state has the size of the log and that no stored checkpoint
// claims more entries than the log holds (a mismatch is a *TamperError);
// it does not walk the whole log, which is Verify's job.
//
// The file is locked for the life of the Log. If another process holds
// it, Open waits up to opts.OpenTimeout and then fails with an error
// wrapping ErrBusy.
func Open(path string, opts Options) (*Log, error) {
	return open(path, opts, hooks{})
}

func open(path string, opts Options, h hooks) (*Log, error) {
	opts = opts.withDefaults()
	db, err := openBolt(path, opts, opts.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	var (
		hd  head
		tr  *tree
		hds heads
	)
	init := func(tx *bolt.Tx) error {
		var err error
		if hd, tr, err = initTx(tx); err != nil {
			return err
		}
		hds, err = loadHeads(tx, hd.seq)
		return err
	}
	if opts.ReadOnly {
		err = db.View(init)
	} else {
		err = db.Update(init)
	}
	var jr *journal
	switch {
	case err != nil:
	case opts.ReadOnly:
		err = checkApplied(path, hd.seq)
	case opts.JournalSize > 0:
		jr, err = replay(db, path, opts.JournalSize, &hd, &tr, hds, h, opts.Logger) // apply.go
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	l := &Log{
		db:          db,
		path:        path,
		maxBatch:    opts.MaxBatch,
		commitDelay: opts.CommitDelay,
		hooks:       h,
		onCommit:    opts.OnCommit,
		readOnly:    opts.ReadOnly,
		grown:       make(chan struct{}, 1),
		reqs:        make(chan *appendReq, opts.MaxBatch),
		done:        make(chan struct{}),
		head:        hd,
		tree:        tr,
		heads:       hds,
		rec:         recovery{since: time.Now(), interval: opts.ProbeInterval, log: opts.Logger, stop: make(chan struct{})},
		jr:          jr,
	}
	if opts.ReadOnly {
		close(l.done)
		return l, nil
	}
	go l.run()
	if jr != nil {
		l.ap.start(hd, tr)
		go l.applyLoop()
	}
	return l, nil
}

// openBolt opens the bbolt file, turning a lock timeout into ErrBusy.
// Callers add the operation and path to errors.
func openBolt(path string, opts Options, readOnly bool) (*bolt.DB, error) {
	if readOnly {
		// bbolt would create a missing file even read-only.
		if _, err := os.Stat(path); err != nil {
			return nil, err
		}
	}
	db, err := openChecked(path, readOnly, opts.OpenTimeout, func() (*bolt.DB, error) { // structure_open.go
		return bolt.Open(path, 0o600, &bolt.Options{
			Timeout:  opts.OpenTimeout,
			ReadOnly: readOnly,
			PageSize: opts.PageSize,
			// Map generously up front: growing the map waits for every open
			// read transaction (a snapshot being streamed, a long query), and
			// appends would wait behind it.
			InitialMmapSize: initialMmap,
			FreelistType:    bolt.FreelistMapType,
		})
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: the audit log at %s is in use (locked) by another process "+
			"(e.g. a running gateway) and was not released within %s; "+
			"to read it while the gateway runs, take a copy with `trustgate audit snapshot` (%w)",
			ErrBusy, path, opts.OpenTimeout, err)
	}
	return db, err
}

// initialMmap is the initial memory map of a log file (address space,
// not memory).
const initialMmap = 1 << 30

// initTx creates the buckets of a new log, or checks an existing one, and
// returns its head and tree. It only writes when the file is new.
func initTx(tx *bolt.Tx) (head, *tree, error) {
	if tx.Bucket(bucketEntries) == nil && tx.Bucket(bucketMeta) == nil {
		if !tx.Writable() {
			return head{}, nil, tampered(0, "bucket %q is missing", bucketEntries)
		}
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return head{}, nil, fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], formatVersion)
		if err := meta.Put(metaVersion, v[:]); err != nil {
			return head{}, nil, fmt.Errorf("write format version: %w", err)
		}
		h := head{seq: 0, hash: GenesisHash}
		if err := writeMeta(meta, h); err != nil {
			return head{}, nil, fmt.Errorf("write head: %w", err)
		}
		return h, newTree(), nil
	}
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if _, err := readMeta(meta); errors.Is(err, ErrUnsupportedVersion) {
			return head{}, nil, err
		}
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return head{}, nil, tampered(0, "bucket %q is missing", name)
		}
	}
	entries, meta := tx.Bucket(bucketEntries), tx.Bucket(bucketMeta)
	h, err := readMeta(meta)
	if err != nil {
		return head{}, nil, err
	}
	k, v := entries.Cursor().Last()
	if k == nil {
		if err := checkHead(h, 0, GenesisHash); err != nil {
			return head{}, nil, err
		}
	} else {
		seq, ok := keySeq(k)
		if !ok {
			return head{}, nil, tampered(0, "malformed key %x in bucket %q", k, bucketEntries)
		}
		if seq != h.seq {
			return head{}, nil, checkHead(h, seq, "")
		}
		e, err := decodeEntry(seq, v)
		if err != nil {
			return head{}, nil, err
		}
		if err := checkHead(h, seq, e.Hash); err != nil {
			return head{}, nil, err
		}
	}
	tr, err := loadTree(meta, h.seq)
	if err != nil {
		return head{}, nil, err
	}
	if k, _ := tx.Bucket(bucketCheckpoints).Cursor().Last(); k != nil {
		size, ok := keySeq(k)
		if !ok {
			return head{}, nil, tampered(0, "malformed key %x in bucket %q", k, bucketCheckpoints)
		}
		if size > h.seq {
			return head{}, nil, tampered(h.seq+1, "missing: a stored checkpoint covers %d entries but the log ends at %d (truncated tail)", size, h.seq)
		}
	}
	return h, tr, nil
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

// TreeHead is the state of the log after its last commit: the number of
// entries, the Merkle root over them and the chain hash of the last one.
type TreeHead struct {
	Size uint64 `json:"size"`
	Root string `json:"root"` // lowercase hex; EmptyRoot for an empty log
	Head string `json:"head"` // chain hash of entry Size; GenesisHash for an empty log
}

// TreeHead returns the state of the log after its last commit, read
// atomically.
func (l *Log) TreeHead() TreeHead {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return TreeHead{Size: l.head.seq, Root: hex.EncodeToString(l.tree.root()), Head: l.head.hash}
}

// Grown is signalled (level-triggered, capacity one) after each commit
// that added entries. One consumer (the checkpointer) reads it.
func (l *Log) Grown() <-chan struct{} { return l.grown }

// readHead returns the head seq recorded in the transaction.
func (l *Log) readHead(tx *bolt.Tx) uint64 {
	n, _ := keySeq(tx.Bucket(bucketMeta).Get(metaHeadSeq))
	return n
}

// Append adds e to the log and returns its seq and hash once the batch
// holding it is durable — its journal record written and fdatasynced
// (apply.go), or without a journal its bbolt transaction committed, which
// bbolt fsyncs: when Append returns nil the entry is durable. e is not
// modified; its Seq, PrevHash and Hash are ignored and assigned by the
// log. A zero e.Time is set to the time of the call; times are stored in
// UTC.
//
// Concurrent appends are committed together (group commit): one committer
// takes every queued append, up to Options.MaxBatch, into a single
// journal record (or write transaction), so they share one fsync.
// Entries are chained in the order the committer takes them; a caller
// that needs an order between two entries must wait for the first Append
// to return before calling the second.
//
// Errors:
//   - ErrUnavailable: the transaction failed. Nothing in it was
//     acknowledged and the head did not advance. The Log then refuses
//     every later Append (also ErrUnavailable) until a background probe
//     append and sync succeeds and the committed state has been re-read
//     from the file (recover.go).
//   - ErrUnavailable and ErrClosed: the Log is closed.
//   - ErrInvalidEntry: e cannot be encoded; nothing was written.
//   - ctx's error, if ctx ends first. If it ends after the entry was
//     queued, the entry may still be committed.
func (l *Log) Append(ctx context.Context, e *Entry) (seq uint64, hash string, err error) {
	if err := ctx.Err(); err != nil {
		return 0, "", fmt.Errorf("audit: append: %w", err)
	}
	r, err := newAppendReq(e)
	if err != nil {
		return 0, "", err
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

// newAppendReq prepares the append of e: a copy in its storable form
// (UTC time, valid UTF-8), encoded as a template if the committer
// splices.
func newAppendReq(e *Entry) (*appendReq, error) {
	r := &appendReq{entry: cloneEntry(e), res: make(chan appendResult, 1)}
	if r.entry.Time.IsZero() {
		r.entry.Time = time.Now()
	}
	r.entry.Time = r.entry.Time.UTC()
	if y := r.entry.Time.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("audit: append: %w: time %v outside years 0-9999", ErrInvalidEntry, r.entry.Time)
	}
	makeStorable(&r.entry)
	if canSplice {
		tmpl, err := marshalTemplate(r.entry)
		if err != nil {
			return nil, fmt.Errorf("audit: append: %w: %w", ErrInvalidEntry, err)
		}
		r.tmpl = tmpl
	}
	return r, nil
}

func (l *Log) enqueue(ctx context.Context, r *appendReq) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.readOnly {
		return fmt.Errorf("audit: append: %w: %w", ErrUnavailable, ErrReadOnly)
	}
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
// Every []string field is cloned, including fields added later.
func cloneEntry(e *Entry) Entry {
	c := *e
	v := reflect.ValueOf(&c).Elem()
	for _, i := range stringSliceFields {
		f := v.Field(i)
		f.Set(reflect.ValueOf(slices.Clone(f.Interface().([]string))))
	}
	c.InputResidual = slices.Clone(e.InputResidual)
	return c
}

// stringSliceFields are the indexes of Entry's []string fields.
var stringSliceFields = func() (out []int) {
	for i := range entryType.NumField() {
		if entryType.Field(i).Type == reflect.TypeFor[[]string]() {
			out = append(out, i)
		}
	}
	return out
}()

func (l *Log) failure() error {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.failed
}

// run is the committer: it drains queued appends into batches until reqs
// is closed and empty.
//
// Group commit. Each commit costs a write and an fsync of the journal
// (without one, two fsyncs and a rewrite of the tail pages of every bucket
// it touches), whatever the number of entries, so the more a commit
// carries the less each request pays. The committer takes
// every append already queued; it then holds a batch that is not full open
// only while at least commitSiblings appends are on their way (Coming: the
// requests being decided; PostgreSQL's commit_siblings counts active
// transactions the same way), each arrival within commitGap of the one
// before, for at most l.commitDelay (PostgreSQL's commit_delay), and
// commits as soon as none is on its way. A request arriving on its own,
// as at a steady rate, finds nobody to wait for and is committed at
// once: one fsync pair and no window.
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
		if l.commitDelay > 0 && l.coming.Load() >= commitSiblings && len(batch) < l.maxBatch {
			deadline := time.NewTimer(l.commitDelay)
			gap := time.NewTimer(min(commitGap, l.commitDelay))
		linger:
			for len(batch) < l.maxBatch && l.coming.Load() > 0 {
				select {
				case r, ok := <-l.reqs:
					if !ok {
						break linger
					}
					batch = append(batch, r)
					gap.Reset(min(commitGap, l.commitDelay))
				case <-gap.C:
					break linger
				case <-deadline.C:
					break linger
				}
			}
			deadline.Stop()
			gap.Stop()
		}
		l.commit(batch)
		clear(batch)
	}
}

// Coming tells the log that an append is on its way: a request that will
// append its entry once decided. The committer holds a batch open for
// appends on their way (run). The returned function says the append has
// come (call it just before Append) or will not; calls after the first do
// nothing.
func (l *Log) Coming() (arrived func()) {
	l.coming.Add(1)
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			l.coming.Add(-1)
		}
	}
}

// commitSiblings is how many appends must be on their way (Coming) for the
// committer to hold a batch open, and commitGap the longest pause between
// two arrivals for which it goes on waiting: a batch waits only for
// requests already being decided, and a request on its own at a steady
// rate (500 or 1,000 a second), which finds none, is committed at once.
// One is enough: a commit's cost is mostly per commit (two fsyncs, and
// bbolt rewriting and allocating the path to every page it changes), so
// waiting up to commitGap for a request already on its way costs it less
// than the commit it saves. Measured with `make bench` (decisions, closed
// and open loop, alternating runs of 1 and 4) in docs/performance.md.
const (
	commitSiblings = 1
	commitGap      = 200 * time.Microsecond
)

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
	lk := newLinker(l.heads) // only the committer changes l.heads
	for _, r := range batch {
		rec, err := lk.encode(&r.entry, r.tmpl, h.seq+1, h.hash)
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

	to := head{seq: from.seq + uint64(len(recs)), hash: recs[len(recs)-1].hash}
	l.headMu.Lock()
	tr := l.tree.clone()
	l.headMu.Unlock()
	var g *group
	if l.jr != nil {
		g, err = l.journalWrite(from, tr, lk, recs) // apply.go
	} else {
		err = l.boltWrite(from, tr, lk, recs, l.hooks.beforeCommit)
	}
	if err != nil {
		err = fmt.Errorf("audit: append: %w: commit of %d entries after seq %d failed; refusing appends until a probe append succeeds: %w",
			ErrUnavailable, len(recs), from.seq, err)
		l.fail(err) // recover.go
		for _, r := range ok {
			r.res <- appendResult{err: err}
		}
		return
	}
	l.commits.Add(1)
	if l.onCommit != nil {
		l.onCommit(len(recs))
	}
	l.headMu.Lock()
	l.head, l.tree = to, tr
	for k, s := range lk.overlay {
		l.heads[k] = s
	}
	if g != nil {
		l.ap.pending = append(l.ap.pending, *g)
	}
	l.headMu.Unlock()
	if g != nil {
		l.ap.wakeUp()
	}
	select {
	case l.grown <- struct{}{}:
	default:
	}
	for i, r := range ok {
		r.res <- appendResult{seq: from.seq + 1 + uint64(i), hash: recs[i].hash}
	}
}

// boltWrite commits recs, the entries after from, in one bbolt
// transaction, advancing tr; hook as for appendTx.
func (l *Log) boltWrite(from head, tr *tree, lk *linker, recs []record, hook func(n int) error) error {
	_, err := appendTx(l.db, from, tr, func(uint64) heads { return lk.merged() }, recs, hook)
	return err
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
		if !l.readOnly {
			close(l.reqs)
		}
		l.mu.Unlock()
		<-l.done
		close(l.rec.stop)
		l.rec.wg.Wait()
		if l.jr != nil {
			l.closeErr = l.closeJournal() // apply.go
		}
		if err := l.db.Close(); err != nil && l.closeErr == nil {
			l.closeErr = fmt.Errorf("audit: close %s: %w", l.path, err)
		}
	})
	return l.closeErr
}

// Err reports whether the log can take appends: nil while it can, an error
// wrapping ErrUnavailable once it is closed or while a failed commit has
// not yet been recovered from (recover.go). Readiness probes call it.
func (l *Log) Err() error {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return fmt.Errorf("audit: %w: %w", ErrUnavailable, ErrClosed)
	}
	if l.readOnly {
		return fmt.Errorf("audit: %w: %w", ErrUnavailable, ErrReadOnly)
	}
	if err := l.failure(); err != nil {
		return fmt.Errorf("audit: %w: %w", ErrUnavailable, err)
	}
	return nil
}
