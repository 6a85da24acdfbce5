package vault

import (
	"context"
	"sync"
	"time"
)

// batcher gathers concurrent requests for the same transit operation and
// key version into one call with batch_input: the first request of a batch
// waits at most window for others, and a batch that reaches max items is
// sent at once. Each call gets its own deadline (timeout) from the store's
// lifetime context, not from any one caller's, because many callers share
// it; a caller whose own context ends first stops waiting and fails.
type batcher struct {
	window  time.Duration
	max     int
	timeout time.Duration
	base    context.Context
	// run performs one transit call for inputs under version. It returns
	// one result per input (per-item errors inside), or an error for the
	// whole call.
	run func(ctx context.Context, version int, inputs [][]byte) ([]result, error)

	mu      sync.Mutex
	pending map[int]*batch // by key version
	wg      sync.WaitGroup // batches in flight
}

type batch struct {
	calls []*call
	timer *time.Timer
}

type call struct {
	ctx   context.Context
	input []byte
	done  chan struct{}
	res   result
}

type result struct {
	out string
	err error
}

func newBatcher(base context.Context, window time.Duration, max int, timeout time.Duration,
	run func(ctx context.Context, version int, inputs [][]byte) ([]result, error)) *batcher {
	return &batcher{window: window, max: max, timeout: timeout, base: base, run: run, pending: map[int]*batch{}}
}

// do submits input and waits for its result or for ctx to end.
func (b *batcher) do(ctx context.Context, version int, input []byte) (string, error) {
	c := &call{ctx: ctx, input: input, done: make(chan struct{})}
	b.mu.Lock()
	bt := b.pending[version]
	if bt == nil {
		bt = &batch{}
		b.pending[version] = bt
		b.wg.Add(1)
		bt.timer = time.AfterFunc(b.window, func() { b.flush(version, bt) })
	}
	bt.calls = append(bt.calls, c)
	if len(bt.calls) >= b.max && bt.timer.Stop() {
		delete(b.pending, version)
		go b.send(version, bt.calls)
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.res.out, c.res.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// flush sends the batch when its window ends, unless it was sent full.
func (b *batcher) flush(version int, bt *batch) {
	b.mu.Lock()
	if b.pending[version] == bt {
		delete(b.pending, version)
	}
	calls := bt.calls
	b.mu.Unlock()
	b.send(version, calls)
}

// send performs one call for the batch and hands every caller its result.
// Callers that have already given up are left out of the call.
func (b *batcher) send(version int, calls []*call) {
	defer b.wg.Done()
	live := calls[:0:0]
	inputs := make([][]byte, 0, len(calls))
	for _, c := range calls {
		if c.ctx.Err() != nil {
			c.res = result{err: c.ctx.Err()}
			close(c.done)
			continue
		}
		live = append(live, c)
		inputs = append(inputs, c.input)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(b.base, b.timeout)
	defer cancel()
	res, err := b.run(ctx, version, inputs)
	for i, c := range live {
		switch {
		case err != nil:
			c.res = result{err: err}
		case i < len(res):
			c.res = res[i]
		default:
			c.res = result{err: errShortBatch}
		}
		close(c.done)
	}
}

// wait blocks until every batch in flight has been answered.
func (b *batcher) wait() { b.wg.Wait() }
