package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/childrens-trust/trustgate/internal/provider"
)

// Defaults for DispatchOptions' zero fields.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultRetryMin    = time.Second
	DefaultRetryMax    = 5 * time.Minute
	DefaultRetention   = 30 * 24 * time.Hour
	DefaultMaxParallel = 8
)

// DispatchOptions tune a Dispatcher.
type DispatchOptions struct {
	// Issuer is the gateway id (the signed notification's iss).
	Issuer string
	// Webhook returns a partner's webhook URL from the current registry.
	Webhook func(partner string) (string, bool)
	// Timeout bounds one delivery attempt.
	Timeout time.Duration
	// RetryMin is the first backoff after a failure; it doubles up to
	// RetryMax.
	RetryMin, RetryMax time.Duration
	// Retention: delivered notifications older than this are purged.
	Retention time.Duration
	// MaxParallel bounds the partners delivered to at once.
	MaxParallel int
	// RootCAs verifies https webhooks; nil: the system roots.
	RootCAs *x509.CertPool
	// Now is the wall clock (backoff, retention). Default time.Now.
	Now func() time.Time
	// Logger; default discards.
	Logger *slog.Logger
	// OnAttempt, if set, is told the outcome of each delivery attempt
	// (the gateway's delivery metrics). It must not block.
	OnAttempt func(partner string, delivered bool)
}

// Dispatcher delivers queued notifications to webhooks.
type Dispatcher struct {
	s      *Store
	signer provider.Signer
	o      DispatchOptions
	http   *http.Client

	mu       sync.Mutex
	inflight map[string]bool
	finished chan struct{}
	wg       sync.WaitGroup
}

// NewDispatcher returns a Dispatcher over s signing with signer; it panics
// without a Webhook function (a wiring mistake).
func NewDispatcher(s *Store, signer provider.Signer, o DispatchOptions) *Dispatcher {
	if o.Webhook == nil {
		panic("notify: NewDispatcher needs a webhook lookup")
	}
	if o.Issuer == "" {
		o.Issuer = "trustgate"
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(DefaultRetryMax, o.RetryMin)
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxParallel <= 0 {
		o.MaxParallel = DefaultMaxParallel
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: o.Timeout}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs},
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
	}
	return &Dispatcher{
		s: s, signer: signer, o: o,
		http: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		inflight: map[string]bool{},
		finished: make(chan struct{}, 1),
	}
}

// Run delivers until ctx ends, then waits for the attempts in flight
// (each bounded by Timeout) and returns nil. Notifications not delivered
// stay queued for the next Run.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.wg.Wait()
	defer d.http.CloseIdleConnections()
	nextPurge := time.Time{}
	for {
		now := d.o.Now()
		if !now.Before(nextPurge) {
			if n, err := d.s.purge(now.Add(-d.o.Retention)); err != nil {
				d.o.Logger.Error("notification purge failed", "err", err)
			} else if n > 0 {
				d.o.Logger.Info("old notifications purged", "count", n)
			}
			nextPurge = now.Add(time.Hour)
		}
		wait := d.round(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-d.s.Added():
		case <-d.finished:
		case <-t.C:
		}
		t.Stop()
	}
}

// round starts delivery to every partner with a notification due and
// returns how long to wait before the next round (at most a minute).
func (d *Dispatcher) round(ctx context.Context) time.Duration {
	wait := time.Minute
	heads, err := d.s.heads()
	if err != nil {
		d.o.Logger.Error("notification queue unreadable", "err", err)
		return d.o.RetryMin
	}
	now := d.o.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for partner, h := range heads {
		if d.inflight[partner] || h.d.Held {
			continue // a release wakes the loop
		}
		if due := time.Unix(0, h.d.NextNS); h.d.NextNS != 0 && due.After(now) {
			wait = min(wait, due.Sub(now))
			continue
		}
		if len(d.inflight) >= d.o.MaxParallel {
			continue // a finishing partner wakes the loop
		}
		d.inflight[partner] = true
		d.wg.Add(1)
		go d.deliver(ctx, partner)
	}
	return max(wait, time.Millisecond)
}

// deliver sends partner's queued notifications in order until the queue
// is empty, one is not yet due, or an attempt fails.
func (d *Dispatcher) deliver(ctx context.Context, partner string) {
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		delete(d.inflight, partner)
		d.mu.Unlock()
		select {
		case d.finished <- struct{}{}:
		default:
		}
	}()
	for ctx.Err() == nil {
		n, st, ok, err := d.s.first(partner)
		if err != nil {
			d.o.Logger.Error("notification queue unreadable", "partner", partner, "err", err)
			return
		}
		if !ok || st.Held || (st.NextNS != 0 && time.Unix(0, st.NextNS).After(d.o.Now())) {
			return
		}
		err = d.post(ctx, partner, n)
		if ctx.Err() != nil {
			return // shutting down: the attempt does not count
		}
		if d.o.OnAttempt != nil {
			d.o.OnAttempt(partner, err == nil)
		}
		if err == nil {
			if err := d.s.delivered(partner, n.Seq); err != nil {
				d.o.Logger.Error("notification delivered but not marked; it will be sent again", "id", n.ID, "err", err)
				return
			}
			d.o.Logger.Info("notification delivered", "partner", partner, "id", n.ID, "attempts", st.Attempts+1)
			continue
		}
		st.Attempts++
		delay := d.backoff(st.Attempts)
		st.NextNS = d.o.Now().Add(delay).UnixNano()
		st.LastError = err.Error()
		if err := d.s.retryLater(partner, n.Seq, st); err != nil {
			d.o.Logger.Error("notification retry not recorded", "id", n.ID, "err", err)
		}
		d.o.Logger.Warn("notification delivery failed; will retry", "partner", partner, "id", n.ID,
			"attempts", st.Attempts, "retry_in", delay.Round(time.Millisecond), "err", err)
		return
	}
}

// backoff is RetryMin·2^(attempts−1), at most RetryMax, less up to 20%
// jitter so that many partners recovering at once do not retry in step.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	delay := d.o.RetryMin
	for i := 1; i < attempts && delay < d.o.RetryMax; i++ {
		delay *= 2
	}
	delay = min(delay, d.o.RetryMax)
	return delay - time.Duration(rand.Int64N(int64(delay)/5+1))
}

// post signs n and sends it to partner's webhook; nil means a 2xx answer.
func (d *Dispatcher) post(ctx context.Context, partner string, n *provider.Notification) error {
	url, ok := d.o.Webhook(partner)
	if !ok || url == "" {
		return fmt.Errorf("partner %s has no webhook in the registry", partner)
	}
	if err := provider.CheckURL(url); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	body, err := provider.SignNotification(actx, d.signer, d.o.Issuer, n, d.o.Now())
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	req, err := http.NewRequestWithContext(actx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/jwt")
	req.Header.Set("X-Trustgate-Notification-Id", n.ID)
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}
