package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/consent"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/involvement"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/metrics"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/revision"
	"github.com/childrens-trust/trustgate/internal/server"
)

// App is a wired gateway.
type App struct {
	cfg    config.Config
	log    *slog.Logger
	now    func() time.Time
	audit  *audit.Log
	keys   keys.Store
	state  *consent.Store
	share  sharing
	index  *involvement.Store // index.go
	api    *server.Server
	holder *revision.Holder
	replay *identity.MemoryReplayCache
	srv    *http.Server
	ln     net.Listener
	loader *revision.Loader // reload.go
	ckpt   checkpoints      // checkpoints.go
	// metrics: Prometheus on its own listener (metrics.go); nil when off.
	metrics    *metrics.Metrics
	metricsSrv *http.Server
	metricsLn  net.Listener
}

// Option adjusts wiring, for tests.
type Option func(*App)

// WithClock injects the clock (tests).
func WithClock(now func() time.Time) Option { return func(a *App) { a.now = now } }

// AuditPath is where the audit log lives under the data directory.
func AuditPath(dataDir string) string { return filepath.Join(dataDir, "audit.db") }

// StatePath is where the state store (consents, review queue) lives.
func StatePath(dataDir string) string { return filepath.Join(dataDir, "state.db") }

// New opens every part. On error everything opened so far is closed.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (a *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a = &App{cfg: cfg, log: log, now: time.Now, holder: &revision.Holder{}}
	for _, o := range opts {
		o(a)
	}
	opened := a // the error returns below set a to nil
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := a.openMetrics(); err != nil { // metrics.go
		return nil, err
	}
	a.audit, err = audit.Open(AuditPath(cfg.DataDir), audit.Options{OpenTimeout: cfg.Audit.OpenTimeout.Duration, MaxBatch: cfg.Audit.MaxBatch, CommitDelay: commitDelay(cfg.Audit.CommitDelay.Duration), Logger: log.With("component", "audit"),
		OnCommit: a.metrics.CommitBatch, JournalSize: journalSize(cfg.Audit.JournalMiB)})
	if err != nil {
		return nil, err
	}
	a.state, err = consent.Open(StatePath(cfg.DataDir), consent.Options{OpenTimeout: cfg.Audit.OpenTimeout.Duration})
	if err != nil {
		return nil, err
	}
	warnCheckpointKey(cfg, log) // keywarn.go
	switch cfg.Keys.Backend {
	case "local":
		dir := cfg.Keys.LocalDir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "keys")
		}
		a.keys, err = keys.OpenLocal(dir)
	case "vault":
		a.keys, err = openVault(ctx, cfg, log)
	default:
		err = fmt.Errorf("keys: backend %q is not available in this build", cfg.Keys.Backend)
	}
	if err != nil {
		return nil, err
	}
	if err := a.openSharing(); err != nil {
		return nil, err
	}
	if err := a.openIndex(); err != nil { // index.go
		return nil, err
	}
	if err := a.openCheckpoints(ctx); err != nil { // checkpoints.go
		return nil, err
	}
	if err := a.startRevisions(ctx); err != nil {
		return nil, err
	}

	a.replay = identity.NewMemoryReplayCache(a.now, cfg.Auth.ReplayCacheSize)
	idCfg := identity.Config{
		Audience:      cfg.GatewayID,
		MaxLifetime:   cfg.Auth.MaxTokenLifetime.Duration,
		Skew:          cfg.Auth.ClockSkew.Duration,
		MaxTokenBytes: cfg.Auth.MaxTokenBytes,
		Now:           a.now,
	}
	if n, err := a.seedReplay(ctx, idCfg); err != nil {
		return nil, fmt.Errorf("seed replay cache from the audit log: %w", err)
	} else if n > 0 {
		log.Info("replay cache seeded from the audit log", "tokens", n)
	}
	verifier := identity.NewVerifier(idCfg, func() identity.Directory { return a.holder.Current().Registry }, a.replay)

	srv := server.New(server.Options{
		MaxBodyBytes:     cfg.HTTP.MaxBodyBytes,
		KeyTimeout:       cfg.Keys.Timeout.Duration,
		EvalTimeout:      cfg.Policy.EvalTimeout.Duration,
		DecisionMemo:     cfg.Policy.DecisionMemo,
		MinJustification: cfg.Policy.MinJustification,
		GatewayID:        cfg.GatewayID,
		SnapshotTimeout:  cfg.Audit.SnapshotTimeout.Duration,
		ReviewWithin:     time.Duration(cfg.Policy.OverrideReviewDays) * 24 * time.Hour,
		MaxCaseloadBytes: cfg.Index.MaxCaseloadBytes,
		ActiveFor:        cfg.Index.ActiveFor.Duration,
		Now:              a.now,
		Logger:           log,
		Observer:         a.observer(), // metrics.go
	}, server.Deps{
		Auth:         verifier,
		Audit:        a.audit,
		Keys:         a.keys,
		Revisions:    a.holder,
		Consents:     a.state,
		Signer:       a.keys,
		ConsentStore: a.state,
		Reviews:      a.state,
		Records:      a.share.fetch,
		Notices:      a.share.notes,
		Lifecycle:    a.loader,   // reload.go
		WhatIf:       a.whatIf(), // reload.go
		AuditQuery:   a.audit,
		Checkpoints:  a.ckpt.cp,
		Notary:       a.ckpt.notary, // checkpoints.go
		Index:        a.index,
		Involvement:  leadBasis{index: a.index},
		Backup:       a.backupFiles(), // backup.go
		Ready: []server.Check{
			{Name: "keys", Fn: a.keys.Ready},
			{Name: "audit", Fn: func(context.Context) error { return a.audit.Err() }},
			{Name: "state", Fn: a.state.Ready},
			{Name: "index", Fn: a.index.Ready},
		},
	})
	a.api = srv
	handler, err := a.withConsole(srv.Handler(), idCfg) // console.go
	if err != nil {
		return nil, err
	}
	a.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout.Duration,
		ReadTimeout:       cfg.HTTP.ReadTimeout.Duration,
		WriteTimeout:      cfg.HTTP.WriteTimeout.Duration,
		IdleTimeout:       cfg.HTTP.IdleTimeout.Duration,
		MaxHeaderBytes:    cfg.HTTP.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext:       server.ConnContext,
	}
	if cfg.TLS.CertFile != "" {
		a.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	a.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if cfg.TLS.CertFile == "" {
		a.ln = server.GuardListener(a.ln)
	}
	return a, nil
}

func (a *App) sources() revision.Sources {
	return revision.Sources{
		Registry:     a.cfg.Registry,
		ProtocolsDir: a.cfg.ProtocolsDir,
		PoliciesDir:  a.cfg.PoliciesDir,
		Settings:     policy.Settings{OverrideReviewDays: a.cfg.Policy.OverrideReviewDays},
	}
}

// seedReplay re-marks as used every token seen in the audit log within the
// replay horizon, so a token cannot be replayed across a restart.
func (a *App) seedReplay(ctx context.Context, c identity.Config) (int, error) {
	horizon := c.ReplayHorizon()
	cutoff := a.now().Add(-horizon)
	after, n, err := a.loadReplayState(ctx) // replaystate.go: the log is read only after seq `after`
	if err != nil {
		return n, err
	}
	// Entries are in append order; times are request arrival times, which
	// may be slightly out of order under concurrency: scan a margin past
	// the cutoff before stopping.
	stopAt := cutoff.Add(-time.Minute)
	err = a.audit.ReverseScan(ctx, func(e *audit.Entry) (bool, error) {
		if e.Time.Before(stopAt) || e.Seq <= after {
			return false, nil
		}
		// Only tokens whose signature held: an unverified failure's
		// claimed (iss, jti) is the caller's invention, and seeding from a
		// flood of them would fill the cache and refuse real tokens after
		// the restart.
		if e.TokenID != "" && e.Requester != "" && !strings.HasPrefix(e.Requester, "unverified:") && !e.Time.Before(cutoff) {
			a.replay.Seed(identity.ReplayKey(e.Requester, e.TokenID), e.Time.Add(horizon))
			n++
		}
		return true, nil
	})
	return n, err
}

// Addr is the address the gateway listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Revisions gives the revision holder (tests, admin).
func (a *App) Revisions() *revision.Holder { return a.holder }

// Audit gives the audit log (tests).
func (a *App) Audit() *audit.Log { return a.audit }

// State gives the state store: consents and the review queue (tests).
func (a *App) State() *consent.Store { return a.state }

// Run serves until ctx ends, then shuts down gracefully.
func (a *App) Run(ctx context.Context) error {
	stopSharing := a.startSharing(ctx)
	defer stopSharing()
	stopCheckpoints := a.startCheckpoints(ctx) // checkpoints.go
	defer stopCheckpoints()
	stopWatch := a.startWatch(ctx) // reload.go
	defer stopWatch()
	stopRetention := a.startRetention(ctx) // index.go
	defer stopRetention()
	stopMetrics := a.serveMetrics() // metrics.go
	defer stopMetrics()
	stopReplayState := a.startReplayState(ctx) // replaystate.go
	defer stopReplayState()
	if a.cfg.Policy.TrustPrefill {
		a.api.PrefillTrust(ctx) // until ctx ends
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if a.cfg.TLS.CertFile != "" {
			err = a.srv.ServeTLS(a.ln, a.cfg.TLS.CertFile, a.cfg.TLS.KeyFile)
		} else {
			err = a.srv.Serve(a.ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.HTTP.ShutdownTimeout.Duration)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return <-errc
}

// Close releases everything, in reverse order of opening.
func (a *App) Close() error {
	var errs []error
	if a.ln != nil {
		a.ln.Close()
	}
	if a.metricsLn != nil {
		a.metricsLn.Close()
	}
	errs = append(errs, a.closeCheckpoints()) // before the keys and the log
	if a.keys != nil {
		errs = append(errs, a.keys.Close())
	}
	if a.state != nil {
		errs = append(errs, a.state.Close())
	}
	errs = append(errs, a.closeSharing())
	errs = append(errs, a.closeIndex())
	if a.audit != nil {
		errs = append(errs, a.audit.Close())
	}
	return errors.Join(errs...)
}

// commitDelay maps the configured commit delay (0: no wait) onto
// audit.Options (0: the default; negative: no wait).
func commitDelay(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// journalSize maps audit.journal_mib (0: no journal) onto
// audit.Options.JournalSize (negative: no journal).
func journalSize(mib int) int64 {
	if mib == 0 {
		return -1
	}
	return int64(mib) << 20
}
