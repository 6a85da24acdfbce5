package app

import (
	"context"
	"time"

	"github.com/childrens-trust/trustgate/internal/revision"
	"github.com/childrens-trust/trustgate/internal/whatif"
)

// startRevisions creates the revision loader and publishes the first
// revision, checked exactly as every reload is: the gateway does not start
// on a policy that does not compile, whose tests fail, or whose samples
// get the wrong answer.
func (a *App) startRevisions(ctx context.Context) error {
	a.loader = revision.NewLoader(a.holder, a.sources(), revision.LoaderOptions{
		Now:     a.now,
		Log:     a.log,
		Recent:  whatif.RecentInputs(a.audit, a.cfg.Policy.RecheckRecent),
		Timeout: a.cfg.Policy.ReloadTimeout.Duration,
	})
	_, err := a.loader.Start(ctx)
	return err
}

// Reload loads a new revision from the configured sources beside the
// serving one and publishes it only if every check passes; otherwise the
// previous revision keeps serving and the error (a *revision.RejectedError)
// names every problem. SIGHUP, the file watch and POST /v1/admin/reload all
// come here.
func (a *App) Reload(ctx context.Context, source string) (*revision.Revision, error) {
	if err := a.loader.Reload(ctx, source).Err(); err != nil {
		return nil, err
	}
	return a.holder.Current(), nil
}

// whatIf replays recorded decisions against proposals made over the
// serving sources (POST /v1/admin/whatif). A run must answer before the
// HTTP write timeout.
func (a *App) whatIf() *whatif.Runner {
	return &whatif.Runner{Log: a.audit, Sources: a.sources(), Now: a.now,
		Timeout: max(a.cfg.HTTP.WriteTimeout.Duration-5*time.Second, 5*time.Second)}
}

// Loader gives the revision loader (tests, admin).
func (a *App) Loader() *revision.Loader { return a.loader }

// startWatch runs the file watch (config policy.watch) until ctx ends; the
// returned function stops it and waits.
func (a *App) startWatch(ctx context.Context) (stop func()) {
	if !a.cfg.Policy.Watch {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.loader.Watch(ctx, a.cfg.Policy.WatchDebounce.Duration); err != nil {
			a.log.Error("the file watch is unavailable; reload with SIGHUP or POST /v1/admin/reload", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}
