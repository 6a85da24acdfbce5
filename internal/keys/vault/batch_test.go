package vault

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo is a transit stand-in for the batcher alone: it answers each input
// with "VERSION:INPUT" and counts the calls and their sizes.
type echo struct {
	calls atomic.Int64
	mu    sync.Mutex
	sizes []int
	block chan struct{} // if set, calls wait on it
}

func (e *echo) run(ctx context.Context, v int, in [][]byte) ([]result, error) {
	e.calls.Add(1)
	e.mu.Lock()
	e.sizes = append(e.sizes, len(in))
	e.mu.Unlock()
	if e.block != nil {
		select {
		case <-e.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	out := make([]result, len(in))
	for i, b := range in {
		out[i].out = strconv.Itoa(v) + ":" + string(b)
	}
	return out, nil
}

func TestBatcherGathersConcurrentRequests(t *testing.T) {
	e := &echo{}
	b := newBatcher(context.Background(), 20*time.Millisecond, 1000, time.Second, e.run)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := b.do(context.Background(), 3, []byte(fmt.Sprint(i)))
			if err != nil || out != fmt.Sprintf("3:%d", i) {
				errs <- fmt.Errorf("request %d: %q %v", i, out, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c := e.calls.Load(); c > 5 {
		t.Fatalf("%d concurrent requests made %d calls, want a few batches", n, c)
	}
	b.wait()
}

func TestBatcherSendsAFullBatchAtOnce(t *testing.T) {
	e := &echo{}
	// A window far longer than the test: only fullness can send.
	b := newBatcher(context.Background(), time.Hour, 8, time.Second, e.run)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.do(context.Background(), 1, []byte{byte(i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if e.calls.Load() != 1 || e.sizes[0] != 8 {
		t.Fatalf("calls %d sizes %v, want one call of 8", e.calls.Load(), e.sizes)
	}
}

func TestBatcherKeepsVersionsApart(t *testing.T) {
	e := &echo{}
	b := newBatcher(context.Background(), 5*time.Millisecond, 100, time.Second, e.run)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := 1 + i%2
			out, err := b.do(context.Background(), v, []byte("x"))
			if err != nil || out != fmt.Sprintf("%d:x", v) {
				t.Errorf("version %d: %q %v", v, out, err)
			}
		}()
	}
	wg.Wait()
	b.wait()
}

func TestBatcherCallerDeadlineAndCallDeadline(t *testing.T) {
	e := &echo{block: make(chan struct{})}
	b := newBatcher(context.Background(), time.Millisecond, 10, 100*time.Millisecond, e.run)
	// The caller's own deadline ends its wait.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := b.do(ctx, 1, []byte("a")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the caller's deadline", err)
	}
	// A caller without a deadline is bounded by the call's.
	start := time.Now()
	if _, err := b.do(context.Background(), 1, []byte("b")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the call's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("call deadline not honoured: %s", d)
	}
	close(e.block)
	b.wait()
}

func TestBatcherLeavesOutCallersThatGaveUp(t *testing.T) {
	e := &echo{}
	b := newBatcher(context.Background(), 50*time.Millisecond, 10, time.Second, e.run)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.do(ctx, 1, []byte("gone")); err == nil {
		t.Fatal("a cancelled caller got an answer")
	}
	b.wait()
	if e.calls.Load() != 0 {
		t.Fatalf("a batch of callers who all gave up still made %d calls", e.calls.Load())
	}
}
