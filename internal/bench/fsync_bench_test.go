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
// of one entry (eight 16 KiB pages written at random places, fdatasync,
// the meta page written, fdatasync: bbolt's two syncs), the same with the
// pages side by side and with fifteen 4 KiB pages, and for comparison the
// entry appended to a file written ahead (one sequential 2 KiB write, one
// fdatasync), each repeated at about 600 a second on a file in the
// benchmarks' temporary directory (the same file system as the gateway's
// data directory in the other benchmarks), while
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
	datasync := func() error { return syscall.Fdatasync(int(f.Fd())) } // as bbolt syncs on Linux
	// bbolt's commit of one entry: its n pages of size bytes, a sync, the
	// meta page, a sync. The pages are at random places, or with together
	// side by side (as if the free list had handed out neighbours).
	bboltCommit := func(n, size int, together bool) func() error {
		return func() error {
			first := 1 + rand.IntN(slots-n)
			for i := range n {
				at := first + i
				if !together {
					at = 1 + rand.IntN(slots-1)
				}
				if _, err := f.WriteAt(buf[:size], int64(at)*int64(size)); err != nil {
					return err
				}
			}
			if err := datasync(); err != nil {
				return err
			}
			if _, err := f.WriteAt(buf[:size], 0); err != nil {
				return err
			}
			return datasync()
		}
	}
	// The same entry appended to a log file written ahead: one
	// sequential write of 2 KiB and one sync.
	var off int64
	appendCommit := func() error {
		if _, err := f.WriteAt(buf[:2048], off); err != nil {
			return err
		}
		off = (off + 2048) % (slots * page)
		return datasync()
	}
	cpus := runtime.NumCPU()
	prev := runtime.GOMAXPROCS(cpus + 1)
	defer runtime.GOMAXPROCS(prev)
	for _, c := range []struct {
		name     string
		spinners int
	}{{"idle", 0}, {fmt.Sprintf("%d of %d CPUs busy", cpus-1, cpus), cpus - 1}, {fmt.Sprintf("all %d CPUs busy", cpus), cpus}} {
		for _, shape := range []struct {
			name   string
			commit func() error
		}{
			{"bbolt commit (8 x 16 KiB, sync, meta, sync)", bboltCommit(pages, page, false)},
			{"the same, the 8 pages side by side", bboltCommit(pages, page, true)},
			{"bbolt commit (15 x 4 KiB, sync, meta, sync)", bboltCommit(15, 4096, false)},
			{"append (2 KiB, sync)", appendCommit},
		} {
			lat, err := spinWhile(c.spinners, iters, shape.commit)
			if err != nil {
				t.Fatal(err)
			}
			over5 := 0
			for _, d := range lat {
				if d > 5*time.Millisecond {
					over5++
				}
			}
			fmt.Printf("fsync floor, %-18s %-44s %d: p50 %5.2f ms  p99 %5.2f ms  p99.9 %5.2f ms  max %5.2f ms  over 5 ms: %d\n",
				c.name+":", shape.name, len(lat), ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(lat, 0.999)), ms(lat[len(lat)-1]), over5)
		}
	}
}

// spinWhile runs commit n times, about 600 a second, while spinners
// goroutines each spin on a thread of their own, and returns the times it
// took, sorted.
func spinWhile(spinners, n int, commit func() error) ([]time.Duration, error) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer func() { stop.Store(true); wg.Wait() }()
	for range spinners {
		wg.Go(func() {
			runtime.LockOSThread()
			for !stop.Load() {
			}
		})
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := commit(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
		time.Sleep(time.Millisecond)
	}
	slices.Sort(lat)
	return lat, nil
}
