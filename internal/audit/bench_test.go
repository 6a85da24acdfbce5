//go:build bench

package audit_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/keys"
)

// TestBenchAudit measures the figures of issue 5 for docs/performance.md,
// each beside a peer measured in the same run (`make bench`):
//
//   - durable appends with group commit, from AUDIT_BENCH_APPENDERS
//     concurrent appenders, beside one bbolt transaction (one fsync) per
//     entry with the same appenders;
//   - file growth per typical entry on the group-committed log and on a
//     log of AUDIT_BENCH_ENTRIES (1,000,000) entries;
//   - a subject query on that log (the first page, newest first), beside
//     a scan of the whole log for the same child;
//   - `audit verify` of that log, beside SHA-256 over the file's bytes
//     (the floor for any check that reads everything).
func TestBenchAudit(t *testing.T) {
	appenders := envInt("AUDIT_BENCH_APPENDERS", 256)
	appends := envInt("AUDIT_BENCH_APPENDS", 200_000)
	baseline := envInt("AUDIT_BENCH_BASELINE_APPENDS", 5_000)
	n := envInt("AUDIT_BENCH_ENTRIES", 1_000_000)
	dir := t.TempDir()
	ctx := context.Background()

	typical := audit.TypicalEntry(123_456)
	typical.Seq, typical.PrevHash, typical.PrevSubject, typical.PrevPractitioner = 123_457, audit.GenesisHash, 101_000, 118_000
	stored := storedSize(t, typical)
	noConsent := typical
	noConsent.InputResidual = audit.Residual(typicalResidualWithoutConsent)
	t.Logf("typical entry (a gateway decision with its input residual, one consent record on file): %d bytes stored (%d with no consent record on file)",
		stored, storedSize(t, noConsent))

	// 1. Appends.
	gcPath := filepath.Join(dir, "group.db")
	gcRate, perCommit, gcFile, gcUsed := groupCommit(t, gcPath, appenders, appends)
	fsRate := oneFsyncPerEntry(t, filepath.Join(dir, "plain.db"), appenders, baseline)
	t.Logf("appends: group commit %.0f entries/s (%.1f entries/commit, %d appenders) vs one fsync per entry %.0f entries/s: %.1fx",
		gcRate, perCommit, appenders, fsRate, gcRate/fsRate)
	t.Logf("file growth, group-committed log of %d entries: %.0f B/entry (file), %.0f B/entry (pages in use)", appends, gcFile, gcUsed)

	// 2. A log of n entries.
	path := filepath.Join(dir, "million.db")
	start := time.Now()
	audit.BuildLog(t, path, n)
	set := signCheckpoint(t, path)
	built := time.Since(start)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	perEntry := float64(info.Size()) / float64(n)
	t.Logf("log of %d entries built in %v: %.1f MB, %.0f B/entry", n, built.Round(time.Millisecond), float64(info.Size())/1e6, perEntry)

	// 3. Subject queries.
	l, err := audit.Open(path, audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	var lat []time.Duration
	found := 0
	for range 500 {
		child := audit.TypicalEntry(r.IntN(audit.TypicalChildren)).Subject
		s := time.Now()
		p, err := l.Query(ctx, audit.Query{Filter: audit.Filter{Subject: child}, Limit: 100})
		lat = append(lat, time.Since(s))
		if err != nil {
			t.Fatal(err)
		}
		found += len(p.Entries)
	}
	slices.Sort(lat)
	p50, p99, worst := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	child := audit.TypicalEntry(7).Subject
	s := time.Now()
	scanned := 0
	if err := l.ReverseScan(ctx, func(e *audit.Entry) (bool, error) {
		if e.Subject == child {
			scanned++
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	scan := time.Since(s)
	l.Close()
	t.Logf("subject query on %d entries (first page, newest first; %.0f entries per child): p50 %v, p99 %v, max %v; a scan of the whole log for one child: %v",
		n, float64(found)/500, p50.Round(time.Microsecond), p99.Round(time.Microsecond), worst.Round(time.Microsecond), scan.Round(time.Millisecond))

	// 4. Verify.
	s = time.Now()
	rep, err := audit.VerifyFile(ctx, path, audit.VerifyOptions{Keys: set})
	verify := time.Since(s)
	if err != nil {
		t.Fatal(err)
	}
	s = time.Now()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	hashAll := time.Since(s)
	t.Logf("audit verify of %d entries (chain, Merkle tree, %d postings, %d checkpoint(s) with signatures): %v; SHA-256 over the file: %v",
		rep.Entries, rep.Postings, rep.Checkpoints, verify.Round(time.Millisecond), hashAll.Round(time.Millisecond))

	// The targets of issue 5.
	check := func(ok bool, what string) {
		if ok {
			t.Logf("target met: %s", what)
		} else {
			t.Errorf("target MISSED: %s", what)
		}
	}
	check(gcRate >= 20_000, fmt.Sprintf("group commit %.0f entries/s >= 20,000", gcRate))
	check(p99 < 50*time.Millisecond, fmt.Sprintf("subject query p99 %v < 50ms", p99.Round(time.Microsecond)))
	check(verify < 10*time.Second, fmt.Sprintf("verify of %d entries %v < 10s", n, verify.Round(time.Millisecond)))
	check(perEntry < 1024 && gcFile < 1024, fmt.Sprintf("file growth %.0f and %.0f B/entry < 1024", perEntry, gcFile))
}

// typicalResidualWithoutConsent is TypicalEntry's input residual for a
// child with no consent record on file.
const typicalResidualWithoutConsent = `["local_authority","police"]`

func storedSize(t *testing.T, e audit.Entry) int {
	t.Helper()
	b := canonical(t, e)
	return len(b)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// groupCommit appends total typical entries from appenders goroutines and
// returns entries/s, entries per commit, and bytes of file (and of pages
// in use) per entry.
func groupCommit(t *testing.T, path string, appenders, total int) (rate, perCommit, fileB, usedB float64) {
	l, err := audit.Open(path, audit.Options{PageSize: envInt("AUDIT_BENCH_PAGESIZE", 0)})
	if err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range appenders {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				e := audit.TypicalEntry(int(i))
				if _, _, err := l.Append(context.Background(), &e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	commits := l.Commits()
	var used int64
	_ = l.DB().View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return float64(total) / elapsed.Seconds(), float64(total) / float64(commits), float64(info.Size()) / float64(total), float64(used) / float64(total)
}

// oneFsyncPerEntry is the peer: the same entries from the same number of
// appenders, each in its own bbolt transaction (one fsync each), chained
// as the log chains them, without the tree or the index.
func oneFsyncPerEntry(t *testing.T, path string, appenders, total int) float64 {
	p := openPlainLog(t, path)
	defer p.db.Close()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range appenders {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				if err := p.append(int(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// signCheckpoint signs a checkpoint of the log at path with a fresh local
// key store and returns its public keys.
func signCheckpoint(t *testing.T, path string) jwk.Set {
	t.Helper()
	k, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := audit.NewCheckpointer(context.Background(), l, k, audit.CheckpointOptions{LogID: "trustgate"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	set, err := k.PublicKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return set
}
