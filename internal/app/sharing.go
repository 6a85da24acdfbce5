package app

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"time"

	"github.com/childrens-trust/trustgate/internal/fetch"
	"github.com/childrens-trust/trustgate/internal/notify"
)

// OutboxPath is where access notifications and lead professionals live.
func OutboxPath(dataDir string) string { return filepath.Join(dataDir, "outbox.db") }

// sharing is record mediation's part of the gateway: the client that
// fetches records from providers, the notification store, and the
// dispatcher that delivers notifications to webhooks.
type sharing struct {
	fetch *fetch.Client
	notes *notify.Store
	disp  *notify.Dispatcher
}

// openSharing opens the notification store and builds the fetch client
// and the dispatcher. Both sign with the gateway's key and keep time on
// the wall clock: providers and receivers check token times on theirs.
func (a *App) openSharing() error {
	var roots *x509.CertPool
	if f := a.cfg.Providers.CAFile; f != "" {
		var err error
		if roots, err = fetch.LoadCA(f); err != nil {
			return err
		}
	}
	notes, err := notify.Open(OutboxPath(a.cfg.DataDir), notify.Options{OpenTimeout: a.cfg.Audit.OpenTimeout.Duration})
	if err != nil {
		return err
	}
	p, n := a.cfg.Providers, a.cfg.Notifications
	a.share.notes = notes
	a.share.fetch = fetch.New(fetch.Options{
		Issuer:           a.cfg.GatewayID,
		Timeout:          p.Timeout.Duration,
		MaxResponseBytes: p.MaxResponseBytes,
		MaxInFlight:      p.MaxInFlight,
		QueueWait:        p.QueueWait.Duration,
		BreakerFailures:  p.BreakerFailures,
		BreakerCooldown:  p.BreakerCooldown.Duration,
		TokenLifetime:    p.TokenLifetime.Duration,
		RootCAs:          roots,
		Now:              time.Now,
		Logger:           a.log,
	}, a.keys)
	a.share.disp = notify.NewDispatcher(notes, a.keys, notify.DispatchOptions{
		Issuer: a.cfg.GatewayID,
		Webhook: func(partner string) (string, bool) {
			p, ok := a.holder.Current().Registry.Partner(partner)
			if !ok || p.Webhook == "" {
				return "", false
			}
			return p.Webhook, true
		},
		Timeout:   n.Timeout.Duration,
		RetryMin:  n.RetryMin.Duration,
		RetryMax:  n.RetryMax.Duration,
		Retention: n.Retention.Duration,
		RootCAs:   roots,
		Now:       time.Now,
		Logger:    a.log,
		OnAttempt: a.metrics.Delivery, // metrics.go
	})
	return nil
}

// startSharing runs the notification dispatcher until the returned stop
// is called (it waits for the delivery attempts in flight).
func (a *App) startSharing(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.share.disp.Run(ctx); err != nil {
			a.log.Error("notification dispatcher stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}

func (a *App) closeSharing() error {
	if a.share.fetch != nil {
		a.share.fetch.Close()
	}
	if a.share.notes != nil {
		return a.share.notes.Close()
	}
	return nil
}

// Outbox gives the notification store (tests).
func (a *App) Outbox() *notify.Store { return a.share.notes }
