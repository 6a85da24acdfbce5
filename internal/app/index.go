package app

import (
	"context"
	"path/filepath"
	"time"

	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/involvement"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/revision"
	"github.com/childrens-trust/trustgate/internal/server"
)

// IndexPath is where the involvement index lives under the data directory.
func IndexPath(dataDir string) string { return filepath.Join(dataDir, "index.db") }

// openIndex opens the involvement index with the configured retention.
func (a *App) openIndex() error {
	x := a.cfg.Index
	var err error
	a.index, err = involvement.Open(IndexPath(a.cfg.DataDir), involvement.Options{
		OpenTimeout: a.cfg.Audit.OpenTimeout.Duration,
		ActiveFor:   x.ActiveFor.Duration,
		VisibleFor:  x.VisibleFor.Duration,
	})
	return err
}

// startRetention runs the index's retention sweep at start and every
// index.sweep_every until the returned stop is called. A failed sweep is
// logged and tried again at the next tick: nothing is erased unrecorded.
func (a *App) startRetention(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(a.cfg.Index.SweepEvery.Duration)
		defer t.Stop()
		for {
			res, err := a.api.SweepIndex(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				a.log.Error("index retention sweep failed; retrying at the next sweep", "err", err)
			case err == nil && (res.Lapsed > 0 || res.Erased > 0):
				a.log.Info("index retention", "lapsed", res.Lapsed, "children", res.Children, "erased", res.Erased)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (a *App) closeIndex() error {
	if a.index != nil {
		return a.index.Close()
	}
	return nil
}

// Index gives the involvement index (tests).
func (a *App) Index() *involvement.Store { return a.index }

// Keys gives the key store (tests).
func (a *App) Keys() keys.Store { return a.keys }

// leadBasis answers the authorisation rule "only an agency involved with
// the child may be its lead professional" (docs/security.md): an agency is
// involved when the involvement index knows an active involvement of its
// own or its membership of an open early help team (involvement.Store.Basis),
// or when a protocol in force has a rule under which it receives
// (authz.ReceivesUnderProtocols, the answer from the Trust's rules alone).
type leadBasis struct{ index *involvement.Store }

func (b leadBasis) Involved(ctx context.Context, rev *revision.Revision, partner, subject string, at time.Time) (bool, error) {
	if authz.ReceivesUnderProtocols(rev.Protocols, rev.Registry, partner, at) {
		return true, nil
	}
	if b.index == nil || subject == "" {
		return false, nil
	}
	return b.index.Basis(ctx, partner, subject, at)
}

var _ server.Involvement = leadBasis{}
