package whatif

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/revision"
)

// The live memo answers exactly what evaluating would: every decision of
// a generated mix of requests (with and without consents on file,
// overrides, every demo requester and provider), and of each of them again
// at, just before and just after every protocol date of the revision —
// including a withdrawal that ends a protocol in the middle of the period.
func TestDecisionMemoAnswersAsTheEvaluation(t *testing.T) {
	tr := newTrust(t)
	key, partner, err := protocol.ReadPrivateKey(filepath.Join(demoDir, "keys", "exley-police.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.WithdrawFile(filepath.Join(tr.dir, "protocols", "youth-justice.yaml"), key, partner, periodFrom.Add(30*24*time.Hour), periodFrom); err != nil {
		t.Fatal(err)
	}
	rev, err := revision.Build(context.Background(), tr.src, periodFrom, "test")
	if err != nil {
		t.Fatal(err)
	}
	m := NewDecisionMemo(rev.Policy, rev.PolicySources(), 1_000)
	if off, why := m.Off(); off {
		t.Fatalf("the demo policy should be memoisable: %s", why)
	}
	m.checkEvery = 7 // the tripwire runs too, and must never trip
	var breaks []int64
	for _, p := range rev.Policy.Data().Protocols {
		breaks = append(breaks, p.EffectiveFromNS, p.ExpiresNS)
	}
	g := newGenerator(rev.Registry, 11, 200, periodFrom.Add(-24*time.Hour), periodTo.Add(24*time.Hour))
	ctx := context.Background()
	check := func(in policy.Input) {
		t.Helper()
		want, werr := rev.Policy.Decide(ctx, &in)
		got, tripped, gerr := m.Decide(ctx, &in)
		if (werr != nil) != (gerr != nil) || tripped || !reflect.DeepEqual(got, want) {
			t.Fatalf("input %+v:\nmemo      %+v (%v, tripped %t)\nevaluated %+v (%v)", in, got, gerr, tripped, want, werr)
		}
	}
	withConsents := 0
	for i := range 3000 {
		in := g.next()
		if len(in.Consents) > 0 {
			withConsents++
			if i%2 == 0 {
				in.Consents = nil // the same request about a child with nothing on file
			}
		}
		check(in)
		check(in) // now from the memo, for a no-consent input
		if i%50 == 0 {
			for _, b := range breaks {
				for _, at := range []int64{b - 1, b, b + 1} {
					v := in
					v.TimeNS = at
					check(v)
					check(v)
				}
			}
		}
	}
	hits, misses := m.Stats()
	if withConsents == 0 || hits < 2500 || misses == 0 {
		t.Fatalf("the mix did not exercise the memo: %d with consents, %d hits, %d misses", withConsents, hits, misses)
	}
	if off, why := m.Off(); off {
		t.Fatalf("the memo turned itself off: %s", why)
	}
}

// A hit that differs from the evaluation turns the memo off for good; the
// request gets the evaluated decision.
func TestDecisionMemoTripwire(t *testing.T) {
	tr := newTrust(t)
	rev, err := revision.Build(context.Background(), tr.src, periodFrom, "test")
	if err != nil {
		t.Fatal(err)
	}
	m := NewDecisionMemo(rev.Policy, rev.PolicySources(), 100)
	m.checkEvery = 1
	in := policy.Input{
		TimeNS:    periodFrom.Add(time.Hour).UnixNano(),
		Requester: policy.Requester{Partner: "exley-csc", Type: "local_authority", Practitioner: "sw-1", Role: "social_worker"},
		Provider:  policy.Provider{Partner: "exley-police", Type: "police"},
		Purpose:   "safeguarding", Categories: []string{"household"},
	}
	ctx := context.Background()
	first, _, err := m.Decide(ctx, &in)
	if err != nil || !first.Allow {
		t.Fatalf("%+v %v", first, err)
	}
	// Corrupt what the memo remembers (the caller's copy is its own).
	first.Allow = false
	for i := range m.memo.shards {
		for _, d := range m.memo.shards[i].m {
			d.Reasons = []string{"tampered"}
		}
	}
	got, tripped, err := m.Decide(ctx, &in)
	if err != nil || !tripped || !got.Allow || got.Reasons[0] == "tampered" {
		t.Fatalf("got %+v tripped %t %v", got, tripped, err)
	}
	if off, why := m.Off(); !off || !strings.Contains(why, "differed") {
		t.Fatalf("off %t %q", off, why)
	}
	again, tripped, err := m.Decide(ctx, &in)
	if err != nil || tripped || !again.Allow || again.Reasons[0] == "tampered" {
		t.Fatalf("after tripping: %+v %t %v", again, tripped, err)
	}
	if hits, _ := m.Stats(); hits != 0 {
		t.Fatalf("%d hits counted", hits)
	}
}

// A policy the analysis cannot memoise never answers from the memo.
func TestDecisionMemoOffForAPolicyThatReadsTheClock(t *testing.T) {
	tr := newTrust(t)
	edit(t, tr, "policies/sharing.rego", "override_requested if input.override.ground != \"\"", "override_requested if {\n\tinput.override.ground != \"\"\n\ttime.now_ns() > 0\n}")
	rev, err := revision.Build(context.Background(), tr.src, periodFrom, "test")
	if err != nil {
		t.Fatal(err)
	}
	m := NewDecisionMemo(rev.Policy, rev.PolicySources(), 100)
	if off, why := m.Off(); !off || !strings.Contains(why, "time.now_ns") {
		t.Fatalf("off %t %q", off, why)
	}
	in := policy.Input{TimeNS: periodFrom.UnixNano(), Requester: policy.Requester{Partner: "exley-csc", Type: "local_authority", Role: "social_worker"},
		Provider: policy.Provider{Partner: "exley-police", Type: "police"}, Purpose: "safeguarding", Categories: []string{"household"}}
	for range 3 {
		if _, _, err := m.Decide(context.Background(), &in); err != nil {
			t.Fatal(err)
		}
	}
	if hits, misses := m.Stats(); hits != 0 || misses != 0 {
		t.Fatalf("hits %d misses %d", hits, misses)
	}
}
