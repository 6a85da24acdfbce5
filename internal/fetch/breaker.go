package fetch

import (
	"sync"
	"time"
)

// outcome is how one fetch bears on the provider's health.
type outcome int

const (
	succeeded outcome = iota // the provider answered well (a record, or "no record")
	failed                   // the provider failed (Reason.countsAsFailure)
	neutral                  // says nothing about the provider (the caller gave up, signing failed)
)

// breaker is a consecutive-failure circuit breaker. Closed: every fetch
// goes ahead. After threshold consecutive failures it opens: fetches fail
// fast until cooldown has passed; then exactly one fetch (the probe) goes
// ahead while the others keep failing fast. A probe that succeeds closes
// the breaker; one that fails opens it for another cooldown.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
}

// allow says whether a fetch may start at now, and whether it is the probe.
// A caller that was allowed must call done exactly once.
func (b *breaker) allow(now time.Time) (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return true, false
	}
	if now.Before(b.openUntil) || b.probing {
		return false, false
	}
	b.probing = true
	return true, true
}

// done records the outcome of a fetch allow let through.
func (b *breaker) done(now time.Time, probe bool, o outcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch o {
	case succeeded:
		b.failures = 0
	case failed:
		b.failures++
		if b.failures >= b.threshold {
			b.openUntil = now.Add(b.cooldown)
		}
	}
}

// retryAt is when the next probe may go (zero when closed).
func (b *breaker) retryAt() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return time.Time{}
	}
	return b.openUntil
}
