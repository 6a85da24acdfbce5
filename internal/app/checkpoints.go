package app

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/witness"
)

// checkpoints runs the audit log's checkpointer (docs/auditing.md): a
// signed checkpoint every audit.checkpoint_every entries or
// audit.checkpoint_interval, pushed outside the gateway, and a last one
// at shutdown; and their C2SP note form with the witnesses' cosignatures
// (internal/witness), kept in data_dir/witness.db.
type checkpoints struct {
	cp     *audit.Checkpointer
	notary *witness.Notary
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

func (a *App) openCheckpoints(ctx context.Context) error {
	c := a.cfg.Audit
	cp, err := audit.NewCheckpointer(ctx, a.audit, a.keys, audit.CheckpointOptions{
		LogID:          a.cfg.GatewayID,
		Every:          uint64(c.CheckpointEvery),
		Interval:       c.CheckpointInterval.Duration,
		Dir:            c.CheckpointDir,
		Webhook:        c.CheckpointWebhook,
		WebhookTimeout: c.WebhookTimeout.Duration,
		SignTimeout:    a.cfg.Keys.Timeout.Duration,
		Now:            a.now,
		Logger:         a.log.With("component", "audit-checkpoints"),
	})
	if err != nil {
		return fmt.Errorf("audit checkpoints: %w", err)
	}
	a.ckpt.cp = cp
	n, err := witness.Open(a.keys, a.audit, witness.Options{
		Origin:      a.cfg.CheckpointOrigin(),
		Witnesses:   c.Witnesses,
		Path:        WitnessPath(a.cfg.DataDir),
		OpenTimeout: c.OpenTimeout.Duration,
	})
	if err != nil {
		return fmt.Errorf("audit.witnesses: %w", err)
	}
	a.ckpt.notary = n
	return nil
}

// WitnessPath is where the witnesses' cosignatures live under the data
// directory.
func WitnessPath(dataDir string) string { return filepath.Join(dataDir, "witness.db") }

// startCheckpoints runs the checkpointer until the returned stop is
// called or ctx ends.
func (a *App) startCheckpoints(ctx context.Context) (stop func()) {
	if a.ckpt.cp == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	a.ckpt.stop = cancel
	a.ckpt.wg.Go(func() { _ = a.ckpt.cp.Run(ctx) })
	return func() {
		cancel()
		a.ckpt.wg.Wait()
	}
}

// closeCheckpoints signs the shutdown checkpoint and pushes it, within
// the shutdown timeout. It runs before the keys and the log are closed.
func (a *App) closeCheckpoints() error {
	if a.ckpt.notary != nil {
		defer a.ckpt.notary.Close()
	}
	if a.ckpt.cp == nil || a.audit == nil || a.keys == nil {
		return nil
	}
	if a.ckpt.stop != nil {
		a.ckpt.stop()
		a.ckpt.wg.Wait()
	}
	if err := a.audit.Err(); err != nil {
		// Failed closed already: nothing more can be committed to it.
		a.log.Error("no shutdown checkpoint: the audit log is unavailable", "err", err)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(a.cfg.HTTP.ShutdownTimeout.Duration, time.Second))
	defer cancel()
	if err := a.ckpt.cp.Close(ctx); err != nil {
		a.log.Error("shutdown checkpoint", "err", err)
		return fmt.Errorf("audit: shutdown checkpoint: %w", err)
	}
	return nil
}

// Checkpoints gives the audit checkpointer (tests).
func (a *App) Checkpoints() *audit.Checkpointer { return a.ckpt.cp }
