package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsScrape: after real decisions, a scrape of the separate
// metrics listener shows the stage latencies, decisions by outcome,
// purpose and partner, and no NHS number, pseudonym or practitioner.
func TestMetricsScrape(t *testing.T) {
	g := startGateway(t, nil)
	if g.app.MetricsAddr() == "" || g.app.MetricsAddr() == g.app.Addr() {
		t.Fatalf("metrics address %q beside API %q", g.app.MetricsAddr(), g.app.Addr())
	}
	for range 3 {
		decisionOf(t, g.decide("exley-csc", "social_worker", map[string]any{"subject": "9990000018", "provider": "exley-police", "purpose": "safeguarding", "categories": []string{"police_concerns"}}))
	}
	decisionOf(t, g.decide("exley-academy", "teacher", map[string]any{"subject": "9990000026", "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"}}))
	g.do(http.MethodGet, "/v1/subjects/9990000018/consents", g.token("exley-csc", "social_worker"), nil)
	// The API listener does not serve metrics.
	if r := g.do(http.MethodGet, "/metrics", "", nil); r.Status == http.StatusOK {
		t.Errorf("the API listener serves /metrics")
	}

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
	stages := map[string]uint64{}
	for _, m := range families["trustgate_stage_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "stage" {
				stages[l.GetValue()] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	for _, st := range []string{"token", "key_store", "policy", "audit_append"} {
		if stages[st] < 4 {
			t.Errorf("stage %s: %d observations, want at least 4 (%v)", st, stages[st], stages)
		}
	}
	decisions := map[string]float64{}
	for _, m := range families["trustgate_decisions_total"].GetMetric() {
		key := ""
		for _, l := range m.GetLabel() {
			key += l.GetName() + "=" + l.GetValue() + " "
		}
		decisions[strings.TrimSpace(key)] = m.GetCounter().GetValue()
	}
	if decisions["outcome=allow partner=exley-csc purpose=safeguarding"] != 3 || decisions["outcome=deny partner=exley-academy purpose=safeguarding"] != 1 {
		t.Errorf("decisions: %v", decisions)
	}
	text := string(raw)
	for _, f := range []string{"trustgate_request_duration_seconds", "trustgate_requests_total", "trustgate_audit_file_bytes", "trustgate_decision_memo_hits_total", "trustgate_reloads_total", "trustgate_notifications_pending"} {
		if families[f] == nil {
			t.Errorf("no %s in the scrape", f)
		}
	}
	if !strings.Contains(text, `route="/v1/subjects/{nhs}/consents"`) {
		t.Errorf("routes are not labelled by template")
	}
	for _, secret := range []string{"9990000018", "9990000026", "prac-", "sw-"} {
		if strings.Contains(text, secret) {
			t.Errorf("the scrape contains %q", secret)
		}
	}
}
