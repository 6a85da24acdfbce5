package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/childrens-trust/trustgate/internal/metrics"
	"github.com/childrens-trust/trustgate/internal/server"
)

// openMetrics prepares the Prometheus endpoint on its own listener
// (metrics.listen; empty: off), first of all the parts so that each part
// opened after it reports to it (a.metrics; nil when off: its methods
// then record nothing). Its sources are read at each scrape, from the
// parts as they are by then.
func (a *App) openMetrics() error {
	if a.cfg.Metrics.Listen == "" {
		return nil
	}
	m := metrics.New(metrics.Sources{
		AuditFile: AuditPath(a.cfg.DataDir),
		Memo: func() (uint64, uint64) {
			if a.api == nil {
				return 0, 0
			}
			return a.api.MemoStats()
		},
		Reloads: func() (int64, int64) {
			if a.loader == nil {
				return 0, 0
			}
			st := a.loader.Status()
			return st.Reloads, st.Rejected
		},
		Outbox: func(ctx context.Context) (int, error) {
			if a.share.notes == nil {
				return 0, errors.New("the outbox is not open")
			}
			return a.share.notes.Pending(ctx)
		},
	})
	ln, err := net.Listen("tcp", a.cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics: listen %s: %w", a.cfg.Metrics.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	a.metrics = m
	a.metricsLn = ln
	a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	return nil
}

// observer is the server's Observer: the metrics, or none.
func (a *App) observer() server.Observer {
	if a.metrics == nil {
		return nil
	}
	return a.metrics
}

// MetricsAddr is where /metrics is served, or "" when metrics are off.
func (a *App) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// serveMetrics serves /metrics until the returned stop is called.
func (a *App) serveMetrics() (stop func()) {
	if a.metricsSrv == nil {
		return func() {}
	}
	a.log.Info("metrics listening", "addr", a.MetricsAddr())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.metricsSrv.Serve(a.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = a.metricsSrv.Shutdown(ctx)
		<-done
	}
}
