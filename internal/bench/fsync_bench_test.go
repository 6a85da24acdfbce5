//go:build bench

package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestBenchFsyncFloor measures what this machine's disk gives the audit
// log's commit, whatever the gateway does: the shape of one bbolt commit
// of one entry (eight 16 KiB pages written, fdatasync, the meta page
// written, fdatasync: bbolt's two syncs), repeated at about 600 a second
// on a file in the benchmarks' temporary directory (the same file system
// as the gateway's data directory in the other benchmarks), while
//
//   - nothing else runs,
//   - one goroutine per CPU but one spins (one CPU left idle), and
//   - one goroutine per CPU spins (every CPU busy, as when a load and a
//     garbage collection's mark phase take every CPU at once).
//
// It is the floor under the gateway's audit append: the open-loop tails
// of TestBenchTrafficVsOPA cannot be shorter than the commit's fsyncs
// while the machine is that busy (docs/performance.md). BENCH_FSYNC_ITERS
// sets the commits per condition (default 3,000).
func TestBenchFsyncFloor(t *testing.T) {
	iters := 3000
	if v, err := strconv.Atoi(os.Getenv("BENCH_FSYNC_ITERS")); err == nil && v > 0 {
		iters = v
	}
	const page, pages, slots = 16 << 10, 8, 4096
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "fsync.db"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Written in full first, as a bbolt file's pages below its high-water
	// mark are: no block is allocated during the measurement.
	zero := make([]byte, 1<<20)
	for range slots * page / len(zero) {
		if _, err := f.Write(zero); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, page)
	commit := func() (time.Duration, error) {
		start := time.Now()
		for range pages {
			if _, err := f.WriteAt(buf, int64(1+rand.IntN(slots-1))*page); err != nil {
				return 0, err
			}
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil { // as bbolt syncs on Linux
			return 0, err
		}
		if _, err := f.WriteAt(buf[:4096], 0); err != nil {
			return 0, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	cpus := runtime.NumCPU()
	prev := runtime.GOMAXPROCS(cpus + 1)
	defer runtime.GOMAXPROCS(prev)
	for _, c := range []struct {
		name     string
		spinners int
	}{{"idle", 0}, {fmt.Sprintf("%d of %d CPUs busy", cpus-1, cpus), cpus - 1}, {fmt.Sprintf("all %d CPUs busy", cpus), cpus}} {
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range c.spinners {
			wg.Go(func() {
				runtime.LockOSThread()
				for x := 0; !stop.Load(); x++ {
				}
			})
		}
		lat := make([]time.Duration, 0, iters)
		for range iters {
			d, err := commit()
			if err != nil {
				stop.Store(true)
				wg.Wait()
				t.Fatal(err)
			}
			lat = append(lat, d)
			time.Sleep(time.Millisecond)
		}
		stop.Store(true)
		wg.Wait()
		slices.Sort(lat)
		over5 := 0
		for _, d := range lat {
			if d > 5*time.Millisecond {
				over5++
			}
		}
		fmt.Printf("fsync floor, %-18s %d commits (8 pages + meta, two syncs): p50 %5.2f ms  p99 %5.2f ms  p99.9 %5.2f ms  max %5.2f ms  over 5 ms: %d\n",
			c.name+":", len(lat), ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(lat, 0.999)), ms(lat[len(lat)-1]), over5)
	}
}
