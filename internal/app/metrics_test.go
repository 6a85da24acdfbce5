package app_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/provider"
)

// scrape reads the gateway's separate metrics listener, as Prometheus does.
func scrape(t *testing.T, g *gateway) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + g.app.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %s", resp.StatusCode, raw)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("exposition: %v", err)
	}
	return families
}

// labelled finds the series of family whose labels include want.
func labelled(f *dto.MetricFamily, want map[string]string) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		n := 0
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
				n++
			}
		}
		if n == len(want) {
			out = append(out, m)
		}
	}
	return out
}

func counterSum(f *dto.MetricFamily, want map[string]string) float64 {
	s := 0.0
	for _, m := range labelled(f, want) {
		s += m.GetCounter().GetValue()
	}
	return s
}

// Label values a hostile request may try to smuggle into a label: an NHS
// number (any run of ten digits), a pseudonym (a long hex run), a
// practitioner id.
var (
	tenDigits = regexp.MustCompile(`[0-9]{10}`)
	longHex   = regexp.MustCompile(`[0-9a-f]{16}`)
	idLabel   = regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`) // partner ids
	wordLabel = regexp.MustCompile(`^[a-z_]+$`)          // purposes, kinds, outcomes, stages
)

// TestMetricsUnderLoad scrapes a loaded gateway over real HTTP: concurrent
// share requests and decisions, with hostile traffic among them (NHS
// numbers in paths, purposes, providers, issuers, practitioner ids and
// request ids). The stage latencies move, the commit batch size, the
// outbox and its delivery failures and successes are reported, and no
// label value anywhere holds an NHS number, a pseudonym or a practitioner.
func TestMetricsUnderLoad(t *testing.T) {
	e := startShareGateway(t, nil)
	g := e.g
	if g.app.MetricsAddr() == "" || g.app.MetricsAddr() == g.app.Addr() {
		t.Fatalf("metrics address %q beside API %q", g.app.MetricsAddr(), g.app.Addr())
	}
	// The API listener does not serve metrics.
	if r := g.do(http.MethodGet, "/metrics", "", nil); r.Status == http.StatusOK {
		t.Errorf("the API listener serves /metrics")
	}
	police := startProvider(t, "exley-police", g)
	hook := freePort(t) // the police's webhook: down until the test listens there
	e.route(map[string]string{"exley-police": police.url}, map[string]string{"exley-police": "http://" + hook + "/exley-police"})
	for _, p := range []string{"exley-csc", "exley-academy", "exley-police", "riverside-gp"} {
		g.key(p) // the key cache and the contract are filled before the load
	}
	g.loadContract()

	before := scrape(t, g)

	const workers, rounds = 8, 6
	hostileTok := func() string { // a practitioner id that is an NHS number
		tok, err := identity.Mint(g.key("exley-csc"), identity.MintClaims{Issuer: "exley-csc", Subject: "sw-9990000034", Role: "social_worker", IssuedAt: g.clock.Now(), Lifetime: time.Minute})
		if err != nil {
			t.Error(err)
		}
		return tok
	}
	forged := func() string { // an issuer that is an NHS number
		tok, _ := identity.Mint(g.key("exley-csc"), identity.MintClaims{Issuer: "9990000042", Subject: "prac-9990000050", Role: "social_worker", IssuedAt: g.clock.Now(), Lifetime: time.Minute})
		return tok
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				var r response
				switch (w + i) % 8 {
				case 0, 1:
					r = e.share("exley-csc", "social_worker", policeShare())
				case 2:
					r = g.decide("exley-academy", "teacher", map[string]any{"subject": "9990000026", "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"}})
				case 3:
					r = g.decide("exley-csc", "social_worker", map[string]any{"subject": "9990000018", "provider": "exley-police", "purpose": "9990000018", "categories": []string{"police_concerns"}})
				case 4:
					r = g.decide("exley-csc", "social_worker", map[string]any{"subject": "9990000018", "provider": "sw-0042-9990000026", "purpose": "safeguarding", "categories": []string{"police_concerns"}})
				case 5:
					b := mustJSON(map[string]any{"subject": "9990000018", "provider": "exley-police", "purpose": "safeguarding", "categories": []string{"police_concerns"}})
					r = g.doHeader(http.MethodPost, "/v1/decisions", hostileTok(), b, http.Header{"X-Request-Id": {"9990000069"}})
				case 6:
					r = g.do(http.MethodGet, "/v1/subjects/9990000018/consents", forged(), nil)
				case 7:
					r = g.do(http.MethodGet, "/v1/no-such/9990000077/"+strings.Repeat("ab", 32), g.token("exley-csc", "social_worker"), nil)
				}
				mu.Lock()
				statuses[r.Status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	g.do(http.MethodPatch, "/v1/decisions", g.token("exley-csc", "social_worker"), nil) // 405
	if statuses[200] < workers || statuses[400] == 0 || statuses[401] == 0 || statuses[404] == 0 {
		t.Fatalf("the load's answers: %v", statuses)
	}

	// Deliveries fail while the webhook is down; once it is up they succeed.
	waitUntil(t, "a failed delivery", 10*time.Second, func() bool {
		return counterSum(scrape(t, g)["trustgate_notification_deliveries_total"], map[string]string{"partner": "exley-police", "outcome": "failed"}) > 0
	})
	set, _ := e.gatewaySigner().PublicKeys(context.Background())
	rc := &hookReceiver{t: t, keys: provider.StaticKeys{Set: set}, iss: g.cfg.GatewayID, got: map[string]*provider.Notification{}, copies: map[string]int{}}
	stop := rc.up(t, hook)
	defer stop()
	waitUntil(t, "the notifications delivered", 15*time.Second, func() bool { n, _ := g.app.Outbox().Pending(context.Background()); return n == 0 })

	after := scrape(t, g)

	// The stage latencies moved: more observations, more time.
	stage := func(fs map[string]*dto.MetricFamily, name string) (uint64, float64) {
		for _, m := range labelled(fs["trustgate_stage_duration_seconds"], map[string]string{"stage": name}) {
			return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		}
		return 0, 0
	}
	for _, st := range []string{"token", "key_store", "policy", "audit_append"} {
		n0, s0 := stage(before, st)
		n1, s1 := stage(after, st)
		if n1 <= n0 || s1 <= s0 {
			t.Errorf("stage %s did not move: %d observations (%.6fs) before the load, %d (%.6fs) after", st, n0, s0, n1, s1)
		}
	}
	// The whole request's latency, by route template.
	var share *dto.Metric
	for _, m := range labelled(after["trustgate_request_duration_seconds"], map[string]string{"route": "/v1/share-requests"}) {
		share = m
	}
	if share == nil || share.GetHistogram().GetSampleCount() < uint64(statuses[200])/2 {
		t.Errorf("share request latency: %v", share)
	}
	// Every answered request appended at least one entry, in batches.
	var batch0, batch1 *dto.Histogram
	if f := before["trustgate_audit_commit_batch_entries"]; f != nil {
		batch0 = f.GetMetric()[0].GetHistogram()
	}
	batch1 = after["trustgate_audit_commit_batch_entries"].GetMetric()[0].GetHistogram()
	if entries := batch1.GetSampleSum() - batch0.GetSampleSum(); entries < float64(workers*rounds) || batch1.GetSampleCount() <= batch0.GetSampleCount() {
		t.Errorf("commit batches: %d commits of %.0f entries during a load of %d requests", batch1.GetSampleCount()-batch0.GetSampleCount(), entries, workers*rounds)
	}
	// Decisions by outcome, purpose and partner.
	d := after["trustgate_decisions_total"]
	if counterSum(d, map[string]string{"outcome": "allow", "purpose": "safeguarding", "partner": "exley-csc"}) < float64(statuses[200])/2 ||
		counterSum(d, map[string]string{"outcome": "deny", "purpose": "safeguarding", "partner": "exley-academy"}) == 0 {
		t.Errorf("decisions: %v", d)
	}
	// Requests by status; deliveries by outcome; the outbox drained.
	if counterSum(after["trustgate_requests_total"], map[string]string{"status": "401"}) == 0 ||
		counterSum(after["trustgate_requests_total"], map[string]string{"status": "405"}) == 0 {
		t.Errorf("requests: %v", after["trustgate_requests_total"])
	}
	if counterSum(after["trustgate_notification_deliveries_total"], map[string]string{"partner": "exley-police", "outcome": "delivered"}) == 0 {
		t.Errorf("deliveries: %v", after["trustgate_notification_deliveries_total"])
	}
	if v := after["trustgate_notifications_pending"].GetMetric()[0].GetGauge().GetValue(); v != 0 {
		t.Errorf("outbox depth %v after delivery", v)
	}
	for _, f := range []string{"trustgate_audit_file_bytes", "trustgate_decision_memo_hits_total", "trustgate_decision_memo_misses_total",
		"trustgate_reloads_total", "trustgate_reloads_rejected_total", "go_gc_scan_heap_bytes", "go_gc_scan_total_bytes"} {
		if after[f] == nil {
			t.Errorf("no %s in the scrape", f)
		}
	}
	if v := after["go_gc_scan_heap_bytes"].GetMetric()[0].GetGauge().GetValue(); v <= 0 {
		t.Errorf("go_gc_scan_heap_bytes %v: the collector scans the compiled policy at least", v)
	}
	if v := after["trustgate_reloads_total"].GetMetric()[0].GetCounter().GetValue(); v < 1 {
		t.Errorf("reloads: %v (the test reloaded the registry)", v)
	}

	// No label value holds what identifies a child or a practitioner.
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "other"}
	for name, f := range after {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				if tenDigits.MatchString(v) || longHex.MatchString(v) || strings.Contains(v, "prac-") || strings.Contains(v, "sw-") {
					t.Errorf("%s{%s=%q}: a label value that identifies someone", name, l.GetName(), v)
				}
				if !strings.HasPrefix(name, "trustgate_") {
					continue
				}
				ok := true
				switch l.GetName() {
				case "partner":
					ok = idLabel.MatchString(v)
				case "purpose", "kind", "outcome", "stage":
					ok = wordLabel.MatchString(v) || v == ""
				case "method":
					ok = slices.Contains(methods, v)
				case "status":
					ok = regexp.MustCompile(`^[1-5][0-9][0-9]$`).MatchString(v)
				case "route":
					rest, v1 := strings.CutPrefix(v, "/v1")
					ok = v == "unmatched" || (v1 && !strings.ContainsAny(rest, "0123456789"))
				default:
					t.Errorf("%s: unexpected label %s", name, l.GetName())
				}
				if !ok {
					t.Errorf("%s{%s=%q}: not a value of its vocabulary", name, l.GetName(), v)
				}
			}
		}
	}
}
