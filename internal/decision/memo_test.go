package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/decision/decisiontest"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/revision"
)

var (
	periodFrom = time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	periodTo   = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
)

// exactnessTrust is the demo Trust with a withdrawal that ends a protocol
// in the middle of the period and a protocol whose signatures are gone
// (lapsed: signature_missing), so that every kind of reason occurs.
func exactnessTrust(t *testing.T) *revision.Revision {
	t.Helper()
	tr := decisiontest.NewTrust(t)
	key, partner, err := protocol.ReadPrivateKey(filepath.Join(decisiontest.DemoDir(t), "keys", "exley-police.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.WithdrawFile(filepath.Join(tr.Dir, "protocols", "youth-justice.yaml"), key, partner, periodFrom.Add(30*24*time.Hour), periodFrom); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(tr.Dir, "protocols", "education-welfare.yaml"+protocol.SignatureSuffix)); err != nil {
		t.Fatal(err)
	}
	rev, err := revision.Build(context.Background(), tr.Src, periodFrom, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(rev.Policy.Data().Lapsed) == 0 {
		t.Fatal("no lapsed protocol in the test Trust")
	}
	return rev
}

// The exactness test: a large generated stream (the Trust's usual traffic
// and requests drawn from the whole registry; children with and without
// consent histories; overrides; times over the period and at, just before
// and just after every protocol date) answered through the optimised path
// (decision memo, remembered Trust-level parts) and by plain evaluation
// gives the same answer in every word: the JSON of each decision is the
// same byte for byte. The tripwire is disabled, so that it cannot mask a
// difference by answering plainly.
func TestMemoAnswersAsThePlainEvaluation(t *testing.T) {
	rev := exactnessTrust(t)
	m := NewMemo(rev.Policy, rev.PolicySources(), 4_000)
	if off, why := m.Off(); off || m.trusts == nil || m.decisions == nil {
		t.Fatalf("the demo policy should be memoisable with a Trust-level part: off %t %s", off, why)
	}
	m.checkEvery = math.MaxUint64
	var breaks []int64
	for _, p := range rev.Policy.Data().Protocols {
		breaks = append(breaks, p.EffectiveFromNS, p.ExpiresNS)
	}
	g := decisiontest.NewGenerator(rev.Registry, 11, 300, periodFrom.Add(-24*time.Hour), periodTo.Add(24*time.Hour))
	ctx := context.Background()
	n, withConsents, allows, codes := 0, 0, 0, map[string]int{}
	check := func(in policy.Input) {
		t.Helper()
		n++
		want, werr := rev.Policy.Decide(ctx, &in)
		got, tripped, gerr := m.Decide(ctx, &in)
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		if (werr != nil) != (gerr != nil) || tripped || !bytes.Equal(wj, gj) {
			t.Fatalf("input %+v:\noptimised %s (%v, tripped %t)\nplain     %s (%v)", in, gj, gerr, tripped, wj, werr)
		}
		if want.Allow {
			allows++
		}
		for _, r := range want.Reasons {
			code, _, _ := strings.Cut(r, ": ")
			codes[code]++
		}
	}
	for i := range 12_000 {
		in := g.NextWide()
		if len(in.Consents) > 0 {
			withConsents++
		}
		check(in)
		in.Requester.Practitioner += "-again"
		in.TimeNS += int64(time.Minute)
		check(in) // alike: from the memo, unless the minute crossed a date
		if i%100 == 0 {
			for _, b := range breaks {
				for _, at := range []int64{b - 1, b, b + 1} {
					v := in
					v.TimeNS = at
					check(v)
				}
			}
		}
	}
	hits, misses := m.Stats()
	t.Logf("%d answers (%d allows), %d about children with consent records; memo %d hits, %d misses; reason codes %v", n, allows, withConsents, hits, misses, codes)
	if withConsents < 1000 || allows < 1000 || hits < 5000 || misses < 5000 {
		t.Fatalf("the stream did not exercise the memo: %d with consents, %d allows, %d hits, %d misses", withConsents, allows, hits, misses)
	}
	for _, c := range []string{"allowed", "category_not_in_rule", "no_shared_protocol", "no_rule_matches", "protocol_withdrawn", "signature_missing",
		"consent_missing", "consent_expired", "consent_withdrawn", "consent_refused", "override_unjustified", "categories_not_in_rule"} {
		if codes[c] == 0 {
			t.Errorf("no answer had a reason %s", c)
		}
	}
	if off, why := m.Off(); off {
		t.Fatalf("the memo turned itself off: %s", why)
	}
}

// A remembered answer that differs from the plain evaluation turns the
// memo off for good; the request gets the plain decision.
func TestMemoTripwire(t *testing.T) {
	tr := decisiontest.NewTrust(t)
	rev, err := revision.Build(context.Background(), tr.Src, periodFrom, "test")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMemo(rev.Policy, rev.PolicySources(), 100)
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
	for i := range m.decisions.shards {
		for _, d := range m.decisions.shards[i].m {
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

// A remembered Trust-level part that is wrong is caught the same way.
func TestMemoTripwireOnTheTrustLevelPart(t *testing.T) {
	tr := decisiontest.NewTrust(t)
	rev, err := revision.Build(context.Background(), tr.Src, periodFrom, "test")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMemo(rev.Policy, rev.PolicySources(), 0)
	m.checkEvery = 1
	police := policy.Input{
		TimeNS:    periodFrom.Add(time.Hour).UnixNano(),
		Requester: policy.Requester{Partner: "exley-csc", Type: "local_authority", Practitioner: "sw-1", Role: "social_worker"},
		Provider:  policy.Provider{Partner: "exley-police", Type: "police"},
		Purpose:   "safeguarding", Categories: []string{"household"},
	}
	ctx := context.Background()
	if d, tripped, err := m.Decide(ctx, &police); err != nil || tripped || !d.Allow {
		t.Fatalf("%+v %t %v", d, tripped, err)
	}
	// Remember the police request's part under a teacher's key.
	teacher := police
	teacher.Requester = policy.Requester{Partner: "exley-academy", Type: "school", Practitioner: "t-1", Role: "teacher"}
	pt, _ := m.trusts.Get(m.trustKey(&police))
	m.trusts.Put(m.trustKey(&teacher), pt)
	got, tripped, err := m.Decide(ctx, &teacher)
	want, _ := rev.Policy.Decide(ctx, &teacher)
	if err != nil || !tripped || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v tripped %t %v; want %+v", got, tripped, err, want)
	}
}

// A policy the analysis cannot memoise never answers from the memo.
func TestMemoOffForAPolicyThatReadsTheClock(t *testing.T) {
	tr := decisiontest.NewTrust(t)
	tr.Edit(t, "policies/sharing.rego", "override_requested if input.override.ground != \"\"", "override_requested if {\n\tinput.override.ground != \"\"\n\ttime.now_ns() > 0\n}")
	rev, err := revision.Build(context.Background(), tr.Src, periodFrom, "test")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMemo(rev.Policy, rev.PolicySources(), 100)
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
