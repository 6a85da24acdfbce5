package audit

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Recovery after a failed commit (disk full, an I/O error).
//
// A failed commit leaves the Log refusing appends (ErrUnavailable, so the
// gateway answers 503 and discloses nothing) and starts a prober: every
// ProbeInterval it writes and fsyncs a probe file of probeBytes beside
// the log (is there room again?), then runs a write transaction on the
// log itself that re-reads the committed head, Merkle state and chain
// heads from the file (initTx, loadHeads: the checks Open makes) and
// commits — bbolt writes and fsyncs a fresh freelist and meta page, so
// the probe is a real append-and-sync through the file, adding no entry.
// When both succeed the Log adopts the state it read and takes appends
// again: the chain and the tree continue from the last committed entry,
// and nothing acknowledged is lost (a failed commit acknowledged
// nothing; if its pages reached the file after all, the state read back
// includes them, and those entries record requests that were answered
// 503). Each transition is logged, and Health reports the state.

// DefaultProbeInterval is how often a failed Log probes for recovery.
const DefaultProbeInterval = 500 * time.Millisecond

// probeBytes is the size of the probe file: more than a large commit
// needs, so that room for the probe is room for the next commit.
const probeBytes = 1 << 20

// Health is the state of a Log, for readiness and metrics.
type Health struct {
	// State is "ok" (taking appends), "failed" (refusing appends after a
	// failed commit, probing for recovery), "closed" or "read-only".
	State string `json:"state"`
	// Since is when the Log entered State (for "ok", the last recovery
	// or the open).
	Since time.Time `json:"since"`
	// Cause is the failure that put the Log in "failed".
	Cause string `json:"cause,omitempty"`
	// Failures and Recoveries count the transitions since Open.
	Failures   uint64 `json:"failures"`
	Recoveries uint64 `json:"recoveries"`
}

// recovery is the Log's failure state beside l.failed (under l.headMu).
type recovery struct {
	since      time.Time
	failures   uint64
	recoveries uint64
	interval   time.Duration
	log        *slog.Logger

	probing bool
	stop    chan struct{} // closed by Close
	wg      sync.WaitGroup
}

// Health reports the Log's state.
func (l *Log) Health() Health {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	l.headMu.Lock()
	defer l.headMu.Unlock()
	h := Health{State: "ok", Since: l.rec.since, Failures: l.rec.failures, Recoveries: l.rec.recoveries}
	switch {
	case closed:
		h.State = "closed"
	case l.readOnly:
		h.State = "read-only"
	case l.failed != nil:
		h.State, h.Cause = "failed", l.failed.Error()
	}
	return h
}

// fail records a failed commit (err wraps ErrUnavailable) and starts the
// prober if it is not running.
func (l *Log) fail(err error) {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	if l.failed != nil {
		return
	}
	l.failed = err
	l.rec.since = time.Now()
	l.rec.failures++
	l.rec.log.Error("audit log unavailable: refusing appends (503) and probing for recovery",
		"path", l.path, "probe_every", l.rec.interval, "err", err)
	if !l.rec.probing {
		l.rec.probing = true
		l.rec.wg.Go(l.probe)
	}
}

// probe runs until a probe succeeds or the Log is closed.
func (l *Log) probe() {
	t := time.NewTicker(l.rec.interval)
	defer t.Stop()
	for {
		select {
		case <-l.rec.stop:
			return
		case <-t.C:
		}
		if err := l.tryRecover(); err != nil {
			continue
		}
		return
	}
}

func (l *Log) tryRecover() error {
	if err := probeDisk(l.path + ".probe"); err != nil {
		return err
	}
	if l.jr != nil {
		// A record whose write or sync failed may be on disk after all:
		// erase it, so that it is never replayed (its requests were
		// answered 503, and its seqs will be given to other entries).
		l.ap.wmu.Lock()
		if l.ap.bad.n > 0 {
			if err := l.jr.erase(l.ap.bad.off, l.ap.bad.n); err != nil {
				l.ap.wmu.Unlock()
				return err
			}
			l.ap.bad.n = 0
		}
		l.ap.wmu.Unlock()
		// The entries in the journal were answered: into bbolt with them
		// (from where the file is, if a failed apply reached it).
		if err := l.resync(); err != nil { // apply.go
			return err
		}
		if err := l.applyPending(); err != nil {
			return err
		}
	}
	var (
		hd  head
		tr  *tree
		hds heads
	)
	err := l.db.Update(func(tx *bolt.Tx) error {
		var err error
		if hd, tr, err = initTx(tx); err != nil {
			return err
		}
		hds, err = loadHeads(tx, hd.seq)
		return err
	})
	if err != nil {
		return err
	}
	l.headMu.Lock()
	defer l.headMu.Unlock()
	if l.jr != nil && len(l.ap.pending) > 0 {
		// An append raced the probe: the next probe settles it.
		return fmt.Errorf("audit: recovery: the log file is at %d, the journal at %d", hd.seq, l.head.seq)
	}
	down := time.Since(l.rec.since)
	l.head, l.tree, l.heads = hd, tr, hds
	if l.jr != nil {
		l.ap.applied, l.ap.tree = hd, tr.clone()
	}
	l.failed = nil
	l.rec.probing = false
	l.rec.recoveries++
	l.rec.since = time.Now()
	l.rec.log.Warn("audit log recovered: a probe append and sync succeeded; taking appends again",
		"path", l.path, "head_seq", hd.seq, "unavailable_for", down.Round(time.Millisecond))
	return nil
}

// probeDisk writes and fsyncs probeBytes to path, then removes it.
func probeDisk(path string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(path)
	}()
	buf := make([]byte, 64<<10)
	for n := 0; n < probeBytes; n += len(buf) {
		if _, err := f.Write(buf); err != nil {
			return fmt.Errorf("probe write: %w", err)
		}
	}
	return f.Sync()
}
