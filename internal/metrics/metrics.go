// Package metrics is the gateway's Prometheus instrumentation
// (prometheus/client_golang), served on its own listen address
// (metrics.listen), apart from the API.
//
// Labels name routes (path templates such as /v1/subjects/{nhs}/consents,
// never a path as requested), methods, statuses, audit kinds, decisions,
// purposes, partner agencies and stages: never an NHS number, a pseudonym,
// a practitioner or a request id. Label values that come from a request
// are bounded by the registry's vocabularies (the server only reports a
// purpose or partner it validated) and by the routes.
package metrics

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the gateway's collectors in a registry of its own.
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	stages    *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	batches   prometheus.Histogram
	delivery  *prometheus.CounterVec
}

// Sources are read at each scrape; any may be nil.
type Sources struct {
	AuditFile string                                 // its size
	Memo      func() (hits, misses uint64)           // the decision memo of the active revision
	Reloads   func() (total, rejected int64)         // revision reloads
	Outbox    func(ctx context.Context) (int, error) // access notifications not yet delivered
}

// gcScan adds to the Go collector's metrics what a garbage collection
// may have to scan (go_gc_scan_heap_bytes: the pointer-bearing part of
// the live heap and of what was allocated since the last collection;
// _stack_bytes, _globals_bytes, _total_bytes): the bound on a mark
// phase's work, which the requests overlapping it wait behind
// (docs/performance.md).
var gcScan = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/scan/`)}

// New returns the collectors, registered with the Go and process
// collectors.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trustgate_requests_total", Help: "API requests answered, by route template, method, status and audit kind.",
	}, []string{"route", "method", "status", "kind"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "trustgate_request_duration_seconds", Help: "Whole request latency, arrival to answer, by route template.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route"})
	m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "trustgate_stage_duration_seconds", Help: "Latency of each stage of a request: token, key_store, policy, audit_append.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"stage"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trustgate_decisions_total", Help: "Decisions by outcome (allow, deny), purpose and requesting partner agency.",
	}, []string{"outcome", "purpose", "partner"})
	m.batches = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "trustgate_audit_commit_batch_entries", Help: "Entries committed to the audit log in one transaction (group commit).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
	})
	m.delivery = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trustgate_notification_deliveries_total", Help: "Access notification delivery attempts by receiving partner agency and outcome (delivered, failed).",
	}, []string{"partner", "outcome"})
	m.reg.MustRegister(m.requests, m.latency, m.stages, m.decisions, m.batches, m.delivery,
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(gcScan)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src.AuditFile != "" {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "trustgate_audit_file_bytes", Help: "Size of the audit log file.",
		}, func() float64 {
			st, err := os.Stat(src.AuditFile)
			if err != nil {
				return -1
			}
			return float64(st.Size())
		}))
	}
	if src.Memo != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "trustgate_decision_memo_hits_total", Help: "Decisions answered from the active revision's memo (resets with a new revision).",
		}, func() float64 { h, _ := src.Memo(); return float64(h) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "trustgate_decision_memo_misses_total", Help: "Decisions evaluated and remembered by the active revision's memo.",
			}, func() float64 { _, mi := src.Memo(); return float64(mi) }))
	}
	if src.Reloads != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "trustgate_reloads_total", Help: "Revision reloads attempted (SIGHUP, file watch, POST /v1/admin/reload).",
		}, func() float64 { t, _ := src.Reloads(); return float64(t) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "trustgate_reloads_rejected_total", Help: "Reloads whose candidate failed a check (the previous revision kept serving).",
			}, func() float64 { _, r := src.Reloads(); return float64(r) }))
	}
	if src.Outbox != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "trustgate_notifications_pending", Help: "Access notifications not yet delivered (the outbox depth); -1 when the outbox cannot be read.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			n, err := src.Outbox(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// CommitBatch records the size of one audit commit (audit.Options.OnCommit).
// A nil Metrics records nothing.
func (m *Metrics) CommitBatch(entries int) {
	if m != nil {
		m.batches.Observe(float64(entries))
	}
}

// Delivery records one notification delivery attempt to a partner agency
// (notify.DispatchOptions.OnAttempt). A nil Metrics records nothing.
func (m *Metrics) Delivery(partner string, delivered bool) {
	if m == nil {
		return
	}
	outcome := "failed"
	if delivered {
		outcome = "delivered"
	}
	m.delivery.WithLabelValues(partner, outcome).Inc()
}

// Stage records one stage's latency (server.Observer).
func (m *Metrics) Stage(stage string, d time.Duration) {
	m.stages.WithLabelValues(stage).Observe(d.Seconds())
}

// Request records one answered request (server.Observer). decision,
// purpose and partner are empty unless the request was decided.
func (m *Metrics) Request(route, method string, status int, kind, decision, purpose, partner string, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status), kind).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
	if decision != "" {
		m.decisions.WithLabelValues(decision, purpose, partner).Inc()
	}
}
