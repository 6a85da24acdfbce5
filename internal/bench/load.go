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
	Elapsed  time.Duration
	P50, P99 time.Duration
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
// answer has status want.
func Drive(ctx context.Context, name string, clients int, d, warmup time.Duration, want int, mk Request) Result {
	tr := &http.Transport{MaxIdleConns: clients * 2, MaxIdleConnsPerHost: clients * 2, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var seq atomic.Int64
	one := func() (time.Duration, bool) {
		req, err := mk(seq.Add(1))
		if err != nil {
			return 0, false
		}
		start := time.Now()
		resp, err := hc.Do(req.WithContext(ctx))
		if err != nil {
			return 0, false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), resp.StatusCode == want
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
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(float64(len(lat)-1)*p)]
	}
	return Result{Name: name, Requests: n.Load(), Errors: errs.Load(), Elapsed: elapsed, P50: pct(0.50), P99: pct(0.99)}
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
