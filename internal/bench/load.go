package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the outcome of one load run.
type Result struct {
	Name     string
	Requests int64
	Errors   int64
	// FirstError describes the first failed request (warm-up included).
	FirstError string
	Elapsed    time.Duration
	P50, P99   time.Duration
	latencies  []time.Duration // sorted
}

// Combine merges runs of the same server (rounds of an alternating
// measurement) into one result: requests, errors and time add up, and the
// percentiles are those of all the requests together.
func Combine(rs ...Result) Result {
	var out Result
	for _, r := range rs {
		out.Name = r.Name
		out.Requests += r.Requests
		out.Errors += r.Errors
		if out.FirstError == "" {
			out.FirstError = r.FirstError
		}
		out.Elapsed += r.Elapsed
		out.latencies = append(out.latencies, r.latencies...)
	}
	sort.Slice(out.latencies, func(i, j int) bool { return out.latencies[i] < out.latencies[j] })
	out.P50, out.P99 = percentile(out.latencies, 0.50), percentile(out.latencies, 0.99)
	return out
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p)]
}

// PerSecond is the completed-request rate.
func (r Result) PerSecond() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

func (r Result) String() string {
	return fmt.Sprintf("%-28s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  (%d requests, %d errors, %s)",
		r.Name, r.PerSecond(), ms(r.P50), ms(r.P99), r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Request builds the i-th request of a run.
type Request func(i int64) (*http.Request, error)

// Drive sends requests from clients goroutines for duration d, after a
// short warm-up, and measures. A request counts as an error unless the
// answer has status want. Each hook is called as the measured run starts
// and the function it returns as it ends (to measure something else over
// exactly that run).
func Drive(ctx context.Context, name string, clients int, d, warmup time.Duration, want int, mk Request, hooks ...func() func()) Result {
	tr := &http.Transport{MaxIdleConns: clients * 2, MaxIdleConnsPerHost: clients * 2, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var seq atomic.Int64
	var firstErr atomic.Value // string: what went wrong with the first failed request
	one := func() (time.Duration, bool) {
		req, err := mk(seq.Add(1))
		if err != nil {
			firstErr.CompareAndSwap(nil, err.Error())
			return 0, false
		}
		start := time.Now()
		resp, err := hc.Do(req.WithContext(ctx))
		if err != nil {
			firstErr.CompareAndSwap(nil, err.Error())
			return 0, false
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != want {
			firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d: %.300s", resp.StatusCode, body))
			return 0, false
		}
		return time.Since(start), true
	}
	// Warm-up: connections open, caches warm.
	warmEnd := time.Now().Add(warmup)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(warmEnd) {
				one()
			}
		}()
	}
	wg.Wait()

	var mu sync.Mutex
	var lat []time.Duration
	var n, errs atomic.Int64
	var ends []func()
	for _, h := range hooks {
		ends = append(ends, h())
	}
	start := time.Now()
	end := start.Add(d)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(end) {
				l, ok := one()
				if !ok {
					errs.Add(1)
					continue
				}
				n.Add(1)
				local = append(local, l)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, e := range ends {
		e()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fe, _ := firstErr.Load().(string)
	return Result{Name: name, Requests: n.Load(), Errors: errs.Load(), FirstError: fe, Elapsed: elapsed,
		P50: percentile(lat, 0.50), P99: percentile(lat, 0.99), latencies: lat}
}

// JSONPost is a request factory for a fixed JSON body and per-request
// headers.
func JSONPost(url string, body []byte, header func(i int64) http.Header) Request {
	return func(i int64) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if header != nil {
			for k, v := range header(i) {
				req.Header[k] = v
			}
		}
		return req, nil
	}
}

// OpenResult is the outcome of an open-loop run: requests sent at a fixed
// rate whatever the answers, each timed from the instant it was due (so
// that a slow answer cannot hide the requests queued behind it).
type OpenResult struct {
	Name           string
	Rate           int
	Sent, Errors   int64
	FirstError     string
	P50, P99, P999 time.Duration
}

func (r OpenResult) String() string {
	return fmt.Sprintf("%-28s open loop %5d/s  p50 %6.2f ms  p99 %6.2f ms  p99.9 %6.2f ms  (%d requests, %d errors)",
		r.Name, r.Rate, ms(r.P50), ms(r.P99), ms(r.P999), r.Sent, r.Errors)
}

// DriveOpen sends rate requests a second for d, each from a goroutine of
// its own, and measures each from the instant it was due.
func DriveOpen(ctx context.Context, name string, rate int, d time.Duration, want int, mk Request) OpenResult {
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	n := int(d.Seconds() * float64(rate))
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	var firstErr atomic.Value
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		req, err := mk(int64(i))
		if err != nil {
			firstErr.CompareAndSwap(nil, err.Error())
			continue
		}
		wg.Go(func() {
			resp, err := hc.Do(req.WithContext(ctx))
			if err != nil {
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode != want {
				firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d: %.300s", resp.StatusCode, body))
				return
			}
			lat[i], ok[i] = time.Since(due), true
		})
	}
	wg.Wait()
	var good []time.Duration
	for i, l := range lat {
		if ok[i] {
			good = append(good, l)
		}
	}
	sort.Slice(good, func(i, j int) bool { return good[i] < good[j] })
	fe, _ := firstErr.Load().(string)
	return OpenResult{Name: name, Rate: rate, Sent: int64(n), Errors: int64(n - len(good)), FirstError: fe,
		P50: percentile(good, 0.5), P99: percentile(good, 0.99), P999: percentile(good, 0.999)}
}
