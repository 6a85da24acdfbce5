package audit

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Applying the journal (journal.go, docs/audit-journal.md).
//
// With a journal, the committer makes a batch durable with one write and
// one sync into the journal, advances the head, the Merkle range and the
// chain heads in memory, answers the batch, and queues it as a group.
// The applier (applyLoop) writes the queued groups into bbolt in one
// transaction — appendRecords, exactly what a commit without a journal
// writes — once applyBatch entries are waiting or applyDelay after the
// oldest. bbolt's recorded head is then "applied up to"; the applier
// keeps its own Merkle range as of it.
//
// Every read of the bbolt file first brings it up to the head (settle):
// a reader sees every entry that has been answered. A checkpoint is
// stored only once the entries it covers are in bbolt, so that the file
// never holds a checkpoint beyond its head.
//
// A failed apply fails the log as a failed commit does (recover.go): the
// entries it held are durable in the journal and were answered; appends
// are refused until a probe succeeds, and the probe applies them.

// applyBatch and applyDelay are when the applier writes what is queued:
// as soon as applyBatch entries are waiting, else applyDelay after the
// oldest was answered (variables for tests; a Log takes them when it
// opens).
var (
	applyBatch uint64 = 512
	applyDelay        = 100 * time.Millisecond
	// releaseEvery is how often, at most, the applier releases the
	// pages of the log file mapped into the process (releaseMapped).
	releaseEvery = time.Second
)

// group is a batch that is durable in the journal but not yet in bbolt.
type group struct {
	first      uint64   // seq of recs[0]
	recs       []record // the entries as encoded
	start, end int64    // where its record lies in the journal, as positions that never wrap (ring offset: mod area)
	at         time.Time
}

// applyState is a journalled Log's apply state. pending, applied and
// tree are guarded by Log.headMu.
type applyState struct {
	pending []group // oldest first
	applied head    // the head recorded in bbolt
	tree    *tree   // the Merkle range as of applied

	batch   uint64        // applyBatch when the log was opened
	delay   time.Duration // applyDelay when the log was opened
	release time.Duration // releaseEvery when the log was opened

	mu sync.Mutex // serialises applies (applyPending)

	wmu sync.Mutex             // serialises journal record writes (journalWrite, erase on recovery)
	jw  int64                  // the next record's position (under wmu)
	bad struct{ off, n int64 } // a region whose write or sync failed (under wmu): erased before appends resume

	wake chan struct{} // capacity one: something was queued
	stop chan struct{}
	done chan struct{}
}

func (a *applyState) start(applied head, tr *tree) {
	a.applied, a.tree = applied, tr.clone()
	a.batch, a.delay, a.release = applyBatch, applyDelay, releaseEvery
	a.wake = make(chan struct{}, 1)
	a.stop = make(chan struct{})
	a.done = make(chan struct{})
}

func (a *applyState) wakeUp() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// applyLoop is the applier: it applies what is queued when it is due.
func (l *Log) applyLoop() {
	defer close(l.ap.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	released := time.Now()
	for {
		select {
		case <-l.ap.stop:
			t.Stop()
			return
		case <-l.ap.wake:
		case <-t.C:
		}
		switch wait := l.applyDue(); {
		case wait == 0:
			if l.applyPending() == nil && time.Since(released) >= l.ap.release { // a failure fails the log (applyPending)
				l.releaseMapped()
				released = time.Now()
			}
		case wait > 0:
			t.Reset(wait)
		}
	}
}

// releaseMapped drops the process's page-table entries for the log file
// (madvise MADV_DONTNEED over bbolt's read-only shared mapping). bbolt
// reads every page through its mapping, and an apply touches pages all
// over the file (the index's postings and the chain heads are keyed at
// random), so the pages the process has mapped, counted in its resident
// set, would otherwise grow with the log, without bound, over a long run
// — the kernel's OOM killer ranks a process by exactly that count. The
// pages stay in the page cache: the next read of one is a minor fault,
// not a disk read, and the file's contents are untouched (a shared file
// mapping is never zeroed by MADV_DONTNEED). A read transaction is held
// so that bbolt cannot remap meanwhile. Errors are ignored: the only cost
// of not releasing is memory accounted to the process.
func (l *Log) releaseMapped() {
	tx, err := l.db.Begin(false)
	if err != nil {
		return
	}
	defer func() { _ = tx.Rollback() }()
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, l.db.Info().Data, uintptr(tx.Size()), unix.MADV_DONTNEED)
}

// applyDue says whether an apply is due (0), in how long it will be
// (> 0), or that nothing is to be done (< 0: nothing queued, or the log
// has failed and its recovery will apply).
func (l *Log) applyDue() time.Duration {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	p := l.ap.pending
	if l.failed != nil || len(p) == 0 {
		return -1
	}
	if l.head.seq-l.ap.applied.seq >= l.ap.batch {
		return 0
	}
	return max(0, l.ap.delay-time.Since(p[0].at))
}

// applyPending writes every queued group into bbolt in one transaction.
// A failure fails the log (its entries stay queued, and durable in the
// journal).
func (l *Log) applyPending() error {
	l.ap.mu.Lock()
	defer l.ap.mu.Unlock()
	l.headMu.Lock()
	groups := l.ap.pending[:len(l.ap.pending):len(l.ap.pending)]
	from, tr := l.ap.applied, l.ap.tree.clone()
	l.headMu.Unlock()
	if len(groups) == 0 {
		return nil
	}
	var recs []record
	for _, g := range groups {
		recs = append(recs, g.recs...)
	}
	to, err := appendTx(l.db, from, tr, l.headsAt, recs, l.hooks.beforeApply)
	if err == nil && l.hooks.afterApply != nil {
		err = l.hooks.afterApply()
	}
	if err != nil {
		err = fmt.Errorf("audit: apply: %w: writing journalled entries %d to %d into the log file failed "+
			"(they are durable in the journal); refusing appends until a probe succeeds: %w",
			ErrUnavailable, from.seq+1, from.seq+uint64(len(recs)), err)
		l.fail(err) // recover.go
		return err
	}
	l.headMu.Lock()
	l.ap.applied, l.ap.tree = to, tr
	l.ap.pending = slices.Delete(l.ap.pending, 0, len(groups)) // zeroes the tail: applied groups are not kept
	l.headMu.Unlock()
	return nil
}

// resync takes bbolt's committed head as the applied head when a failed
// apply reached the file after all (a commit whose last sync failed after
// its meta page was written), dropping what it holds from the queue; the
// recovery probe runs it before applying. A file head that is not the end
// of a queued group is an error: the probe keeps failing, and says why.
func (l *Log) resync() error {
	l.ap.mu.Lock()
	defer l.ap.mu.Unlock()
	var (
		hd head
		tr *tree
	)
	if err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		hd, tr, err = initTx(tx)
		return err
	}); err != nil {
		return err
	}
	l.headMu.Lock()
	defer l.headMu.Unlock()
	switch {
	case hd.seq == l.ap.applied.seq:
		return nil
	case hd.seq > l.ap.applied.seq && len(l.ap.pending) == 0:
		// A batch too large for the journal, committed straight to the
		// file, failed after its meta page was written: as without a
		// journal, the file's state stands (tryRecover adopts it).
		l.ap.applied, l.ap.tree = hd, tr
		return nil
	}
	n := 0 // groups the file holds beyond the applied head
	for n < len(l.ap.pending) && l.ap.pending[n].first+uint64(len(l.ap.pending[n].recs))-1 <= hd.seq {
		n++
	}
	if hd.seq < l.ap.applied.seq || n == 0 || l.ap.pending[n-1].recs[len(l.ap.pending[n-1].recs)-1].hash != hd.hash {
		return fmt.Errorf("audit: recovery: the log file's head %d (%s) is not a point the journal's queue reached (applied %d)",
			hd.seq, hd.hash, l.ap.applied.seq)
	}
	l.ap.pending = slices.Delete(l.ap.pending, 0, n)
	l.ap.applied, l.ap.tree = hd, tr
	return nil
}

// headsAt returns the chain heads as of seq, which must not be below the
// applied head: the committer's heads with the links of the queued
// entries after seq undone, newest first.
func (l *Log) headsAt(seq uint64) heads {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	m := maps.Clone(l.heads)
	undo := func(dim byte, v string, prev uint64) {
		if v == "" {
			return
		}
		if k := chainKey(dim, v); prev == 0 {
			delete(m, k)
		} else {
			m[k] = prev
		}
	}
	for i := len(l.ap.pending) - 1; i >= 0; i-- {
		g := l.ap.pending[i]
		for j := len(g.recs) - 1; j >= 0; j-- {
			if g.first+uint64(j) <= seq {
				return m
			}
			e := g.recs[j].entry
			undo(chainSubject, e.Subject, e.PrevSubject)
			undo(chainPractitioner, e.Practitioner, e.PrevPractitioner)
		}
	}
	return m
}

// settle brings bbolt up to the head: called by every reader before it
// reads the file.
func (l *Log) settle() error {
	if l.jr == nil {
		return nil
	}
	l.headMu.Lock()
	behind := len(l.ap.pending) > 0
	l.headMu.Unlock()
	if !behind {
		return nil
	}
	return l.applyPending()
}

// journalWrite makes recs, the entries after from, durable as one
// journal record and returns the group to queue, advancing tr in memory.
// A batch larger than the whole journal is committed to bbolt directly,
// after everything queued (nil group).
func (l *Log) journalWrite(from head, tr *tree, lk *linker, recs []record) (*group, error) {
	if l.hooks.beforeCommit != nil {
		if err := l.hooks.beforeCommit(len(recs)); err != nil {
			return nil, err
		}
	}
	l.ap.wmu.Lock()
	defer l.ap.wmu.Unlock()
	b := l.jr.encode(from.seq+1, recs)
	n, area := int64(len(b)), l.jr.area
	if n > area {
		return nil, l.boltDirect(from, tr, lk, recs)
	}
	start := l.ap.jw
	if p := start % area; p+n > area {
		start += area - p // records do not wrap: the rest of the ring is left
	}
	end := start + n
	for !l.fits(end) {
		// The journal is full: wait for the applier (back-pressure).
		if err := l.applyPending(); err != nil {
			return nil, err
		}
	}
	for _, r := range recs {
		if err := tr.rng.Append(r.leaf, nil); err != nil {
			return nil, err
		}
	}
	err := l.jr.write(b, start%area)
	if err == nil && l.hooks.afterJournal != nil {
		err = l.hooks.afterJournal()
	}
	if err != nil {
		l.ap.bad.off, l.ap.bad.n = start%area, n
		return nil, err
	}
	l.ap.jw = end
	return &group{first: from.seq + 1, recs: recs, start: start, end: end, at: time.Now()}, nil
}

// fits reports whether a record ending at end overwrites no queued one.
func (l *Log) fits(end int64) bool {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return len(l.ap.pending) == 0 || end-l.ap.pending[0].start <= l.jr.area
}

// boltDirect commits recs to bbolt in a transaction of their own, once
// everything queued is applied.
func (l *Log) boltDirect(from head, tr *tree, lk *linker, recs []record) error {
	if err := l.applyPending(); err != nil {
		return err
	}
	l.ap.mu.Lock()
	defer l.ap.mu.Unlock()
	if err := l.boltWrite(from, tr, lk, recs, nil); err != nil { // the hook ran before the journal write
		return err
	}
	l.headMu.Lock()
	l.ap.applied = head{seq: from.seq + uint64(len(recs)), hash: recs[len(recs)-1].hash}
	l.ap.tree = tr.clone()
	l.headMu.Unlock()
	return nil
}

// replay opens the journal of the log at path and applies the entries it
// holds beyond the head *hd (from a run that stopped without applying
// them), advancing *hd, *tr and hds; then it starts a new epoch.
func replay(db *bolt.DB, path string, size int64, hd *head, tr **tree, hds heads, h hooks, log *slog.Logger) (*journal, error) {
	jr, live, err := openJournal(JournalPath(path), size)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*journal, error) {
		_ = jr.f.Close()
		return nil, err
	}
	next, prev := hd.seq+1, hd.hash
	var recs []record
	var seen uint64 // the last seq of the records before r
	for _, r := range live {
		if r.first <= seen {
			// Each seq is written once in an epoch: a record whose sync
			// failed is erased before its seqs are given again.
			return fail(tampered(r.first, "two records in the journal %s hold entry %d", jr.path, r.first))
		}
		seen = r.last()
		if r.last() < next {
			continue // applied before the stop
		}
		if r.first > next {
			return fail(tampered(next, "missing: the journal %s holds entries %d to %d but the log file ends at %d "+
				"(an older log file beside a newer journal: a restore must remove the journal)",
				jr.path, r.first, live[len(live)-1].last(), next-1))
		}
		for i, v := range r.vals {
			seq := r.first + uint64(i)
			if seq < next {
				continue
			}
			e, err := decodeEntry(seq, v)
			if err != nil {
				return fail(fmt.Errorf("journal %s: %w", jr.path, err))
			}
			if e.PrevHash != prev {
				return fail(tampered(seq, "the journal's entry does not chain to entry %d: prev_hash %s, want %s", seq-1, e.PrevHash, prev))
			}
			if err := relink(hds, e, seq); err != nil {
				return fail(err)
			}
			recs = append(recs, record{entry: e, val: v, hash: e.Hash, leaf: leafHash(v)})
			prev = e.Hash
			next++
		}
	}
	if len(recs) > 0 {
		trc := (*tr).clone()
		to, err := appendTx(db, *hd, trc, func(uint64) heads { return hds }, recs, h.beforeApply)
		if err != nil {
			return fail(fmt.Errorf("apply the journal %s: %w", jr.path, err))
		}
		log.Warn("audit journal replayed: the log was not closed cleanly; entries answered before the stop applied to the log file",
			"journal", jr.path, "entries", len(recs), "from_seq", hd.seq+1, "to_seq", to.seq)
		*hd, *tr = to, trc
	}
	if want := max(size/journalBlock*journalBlock, minJournalSize); jr.area+journalBlock != want {
		if err := preallocate(jr.f, want); err != nil {
			return fail(fmt.Errorf("journal %s: %w", jr.path, err))
		}
		jr.area = want - journalBlock
	}
	if err := jr.newEpoch(); err != nil {
		return fail(err)
	}
	return jr, nil
}

// relink checks the chain links of e, entry seq read back from the
// journal, against hds and records it in them.
func relink(hds heads, e *Entry, seq uint64) error {
	for _, c := range []struct {
		dim  byte
		v    string
		prev uint64
	}{{chainSubject, e.Subject, e.PrevSubject}, {chainPractitioner, e.Practitioner, e.PrevPractitioner}} {
		if c.v == "" {
			continue
		}
		k := chainKey(c.dim, c.v)
		if hds[k] != c.prev {
			return tampered(seq, "the journal's entry links to entry %d for its %s chain, but the last entry with that value is %d",
				c.prev, map[byte]string{chainSubject: "subject", chainPractitioner: "practitioner"}[c.dim], hds[k])
		}
		hds[k] = seq
	}
	return nil
}

// closeJournal applies everything queued and starts a new epoch, so that
// the log file alone is the whole log; the journal keeps what could not
// be applied, for the next open.
func (l *Log) closeJournal() error {
	close(l.ap.stop)
	<-l.ap.done
	if err := l.applyPending(); err != nil {
		_ = l.jr.f.Close()
		return fmt.Errorf("audit: close %s: the journal keeps the entries not applied, for the next open: %w", l.path, err)
	}
	if err := l.jr.newEpoch(); err != nil {
		_ = l.jr.f.Close()
		return fmt.Errorf("audit: close %s: %w", l.path, err)
	}
	if err := l.jr.f.Close(); err != nil {
		return fmt.Errorf("audit: close %s: %w", l.path, err)
	}
	return nil
}

// checkApplied refuses a read-only open of a log file whose journal holds
// entries beyond its head seq.
func checkApplied(path string, seq uint64) error {
	from, to, err := liveBeyond(JournalPath(path), seq)
	if err != nil {
		return fmt.Errorf("read the journal %s: %w", JournalPath(path), err)
	}
	if from != 0 {
		return fmt.Errorf("%w: entries %d to %d are in the journal %s and not yet in the log file: "+
			"the gateway stopped without applying them (start it once, or open the log for writing, to apply them)",
			ErrUnapplied, from, to, JournalPath(path))
	}
	return nil
}
