package app_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/config"
)

type memoStatus struct {
	Revision string `json:"policy_revision"`
	Enabled  bool   `json:"enabled"`
	Off      string `json:"off"`
	Hits     uint64 `json:"hits"`
	Misses   uint64 `json:"misses"`
	Parts    int    `json:"trust_parts"`
	Prefill  string `json:"trust_prefill"`
}

func (g *gateway) memoStatus() memoStatus {
	g.t.Helper()
	r := g.do(http.MethodGet, "/v1/admin/status", g.token("exley-csc", "ig_lead"), nil)
	var st struct {
		Memo memoStatus `json:"decision_memo"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(r.Raw, &st) != nil {
		g.t.Fatalf("status %d %s", r.Status, r.Raw)
	}
	return st.Memo
}

// A request like an earlier one (another practitioner, another child, a
// moment later) is answered from the active revision's decision memo with
// exactly the decision an evaluation gives; a child with a consent record
// on file is always evaluated; with the memo turned off, every decision is
// evaluated and the answers are the same.
func TestDecisionMemoEndToEnd(t *testing.T) {
	g := startGateway(t, nil)
	if m := g.memoStatus(); !m.Enabled || m.Hits != 0 {
		t.Fatalf("at start: %+v", m)
	}
	share := func(subject string) map[string]any {
		s := policeShare()
		s["subject"] = subject
		return s
	}
	var decisions []map[string]any
	for i, subject := range []string{child, "9990000034", child} {
		r := g.decide("exley-csc", "social_worker", share(subject))
		d := decisionOf(t, r)
		if d["allow"] != true || r.Body["policy_revision"] != g.serving() {
			t.Fatalf("decision %d: %s", i, r.Raw)
		}
		decisions = append(decisions, d)
		g.clock.Set(g.clock.Now().Add(1500 * time.Millisecond))
	}
	if !reflect.DeepEqual(decisions[0], decisions[1]) || !reflect.DeepEqual(decisions[0], decisions[2]) {
		t.Fatalf("the answers differ: %v", decisions)
	}
	m := g.memoStatus()
	if m.Revision != g.serving() || m.Off != "" || m.Misses != 1 || m.Hits != 2 {
		t.Fatalf("after three alike: %+v", m)
	}

	// A consent on file: remembered too, keyed on the records exactly
	// (their ids included): evaluated once, then answered alike.
	mustStatus(t, g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(consentChild)), http.StatusCreated)
	for range 2 {
		if d := decisionOf(t, g.decide("exley-csc", "social_worker", share(consentChild))); !reflect.DeepEqual(d, decisions[0]) {
			t.Fatalf("with a consent on file: %v", d)
		}
	}
	if after := g.memoStatus(); after.Hits != m.Hits+1 || after.Misses != m.Misses+1 {
		t.Fatalf("a decision with a consent on file: %+v", after)
	}

	// Every Trust-level part computed ahead (policy.trust_prefill): the
	// same answers, and the first request of a kind computes nothing.
	pre := startGateway(t, func(c *config.Config) { c.Policy.TrustPrefill = true })
	deadline := time.Now().Add(2 * time.Minute)
	for pre.memoStatus().Prefill != "done" {
		if time.Now().After(deadline) {
			t.Fatalf("the Trust-level parts were not computed ahead within two minutes: %+v", pre.memoStatus())
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := pre.memoStatus()
	if before.Parts < 1000 || before.Hits+before.Misses != 0 {
		t.Fatalf("after the prefill: %+v", before)
	}
	if d := decisionOf(t, pre.decide("exley-csc", "social_worker", share(child))); !reflect.DeepEqual(d, decisions[0]) {
		t.Fatalf("with the parts computed ahead: %v", d)
	}
	if after := pre.memoStatus(); after.Parts != before.Parts || after.Misses != 1 {
		t.Fatalf("a first request after the prefill computed a part: %+v, before %+v", after, before)
	}

	// The memo turned off: the same answers, all evaluated.
	off := startGateway(t, func(c *config.Config) { c.Policy.DecisionMemo = 0 })
	for range 2 {
		if d := decisionOf(t, off.decide("exley-csc", "social_worker", share(child))); !reflect.DeepEqual(d, decisions[0]) {
			t.Fatalf("without the memo: %v", d)
		}
	}
	if m := off.memoStatus(); m.Enabled || m.Hits != 0 || m.Misses != 0 {
		t.Fatalf("memo off: %+v", m)
	}
}
