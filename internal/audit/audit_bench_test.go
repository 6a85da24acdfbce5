package audit_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/audit"
)

var verifyEntries = flag.Int("audit.verify-entries", 100_000, "entries in the log BenchmarkVerify checks")

// appenders is the number of concurrent appenders in the append
// benchmarks: requests in flight at a busy gateway (TestBenchAudit uses
// the same; docs/performance.md).
const appenders = 256

// reportRate reports entries/s over the timed part of the benchmark.
func reportRate(b *testing.B, entries int64, elapsed time.Duration) {
	b.ReportMetric(float64(entries)/elapsed.Seconds(), "entries/s")
}

// reportSize reports the size of the file at path per entry it holds.
func reportSize(b *testing.B, path string, entries int64) {
	b.Helper()
	info, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(info.Size())/float64(max(entries, 1)), "B/entry")
}

// BenchmarkAppendGroupCommit measures Append from many concurrent
// requests: entries share fsyncs.
func BenchmarkAppendGroupCommit(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.db")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(appenders / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			e := audit.TypicalEntry(int(n.Add(1)))
			if _, _, err := l.Append(ctx, &e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	commits := l.Commits()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	reportRate(b, n.Load(), elapsed)
	reportSize(b, path, n.Load())
	b.ReportMetric(float64(n.Load())/float64(max(commits, 1)), "entries/commit")
}

// BenchmarkAppendOneFsyncPerEntry is the baseline: the same entries and
// concurrency, but one bbolt transaction (one fsync) per entry on a plain
// bbolt file.
func BenchmarkAppendOneFsyncPerEntry(b *testing.B) {
	path := filepath.Join(b.TempDir(), "plain.db")
	p := openPlainLog(b, path)
	var n atomic.Int64
	b.SetParallelism(appenders / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.append(int(n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if err := p.db.Close(); err != nil {
		b.Fatal(err)
	}
	reportRate(b, n.Load(), elapsed)
	reportSize(b, path, n.Load())
}

// BenchmarkVerify verifies a log of -audit.verify-entries entries (built
// once with BuildLog) per iteration.
func BenchmarkVerify(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.db")
	audit.BuildLog(b, path, *verifyEntries)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		rep, err := audit.Verify(context.Background(), path, audit.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Entries != uint64(*verifyEntries) {
			b.Fatalf("verified %d entries, want %d", rep.Entries, *verifyEntries)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, int64(b.N)*int64(*verifyEntries), elapsed)
	reportSize(b, path, int64(*verifyEntries))
}

// plainLog is the peer of the group-committed log in the benchmarks: the
// same entries, each in its own bbolt transaction (one fsync each),
// chained as the log chains them (a mutex orders seqs with commits), with
// no Merkle tree and no index.
type plainLog struct {
	db   *bolt.DB
	mu   sync.Mutex
	seq  uint64
	prev string
}

var plainBucket = []byte("entries")

func openPlainLog(tb testing.TB, path string) *plainLog {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(plainBucket); return err }); err != nil {
		tb.Fatal(err)
	}
	return &plainLog{db: db, prev: audit.GenesisHash}
}

// append appends audit.TypicalEntry(i) in a transaction of its own.
func (p *plainLog) append(i int) error {
	e := audit.TypicalEntry(i)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.db.Update(func(tx *bolt.Tx) error {
		e.Seq, e.PrevHash = p.seq+1, p.prev
		v, err := json.Marshal(&e)
		if err != nil {
			return err
		}
		b := tx.Bucket(plainBucket)
		b.FillPercent = 1.0
		if err := b.Put(key(e.Seq), v); err != nil {
			return err
		}
		p.seq, p.prev = e.Seq, sha256Hex(v)
		return nil
	})
}
