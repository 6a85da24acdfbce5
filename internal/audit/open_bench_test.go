//go:build bench

package audit_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// TestBenchOpen (make bench): how long audit.Open takes on a log of
// AUDIT_BENCH_OPEN_ENTRIES (200,000) decision entries shaped as the
// gateway writes them, beside Open of an empty log in the same run. The
// start-up cost of the audit log in TestBenchRestart (internal/app).
// AUDIT_BENCH_OPEN_FILE keeps the log between runs; AUDIT_BENCH_OPEN_PROFILE
// writes a CPU profile of the opens.
func TestBenchOpen(t *testing.T) {
	n := envInt("AUDIT_BENCH_OPEN_ENTRIES", 200_000)
	path := os.Getenv("AUDIT_BENCH_OPEN_FILE")
	if path == "" {
		path = filepath.Join(t.TempDir(), "audit.db")
	}
	if _, err := os.Stat(path); err != nil {
		fill(t, path, n)
	}
	empty := filepath.Join(t.TempDir(), "empty.db")
	l, err := audit.Open(empty, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if p := os.Getenv("AUDIT_BENCH_OPEN_PROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	open := func(path string) time.Duration {
		best := time.Hour
		for range 5 {
			t0 := time.Now()
			l, err := audit.Open(path, audit.Options{})
			d := time.Since(t0)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			best = min(best, d)
		}
		return best
	}
	fi, _ := os.Stat(path)
	te, tf := open(empty), open(path)
	t.Logf("BENCH open: %d entries (%d MB): %v; empty log: %v (best of 5)", n, fi.Size()>>20, tf.Round(time.Millisecond), te.Round(time.Microsecond))
}

// fill appends n gateway-shaped decision entries from 64 appenders.
func fill(t *testing.T, path string, n int) {
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	const workers = 64
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				e := audit.TypicalEntry(i)
				e.Practitioner = fmt.Sprintf("sw-%04d", i%500)
				e.Subject = fmt.Sprintf("%064x", uint64(i%20000+1)*0x9e3779b97f4a7c15)
				e.TokenID = fmt.Sprintf("bench-%d", i)
				if _, _, err := l.Append(t.Context(), &e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
