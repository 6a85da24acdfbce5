package policy_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/revision"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// demoRevision builds the real demo Trust (signed protocols) with the
// embedded policies, through the real engine.
func demoRevision(tb testing.TB) *revision.Revision {
	tb.Helper()
	dir := tb.TempDir()
	if err := demo.Init(dir, demo.Options{}); err != nil {
		tb.Fatal(err)
	}
	rev, err := revision.Build(context.Background(), revision.Sources{
		ProtocolsDir: filepath.Join(dir, "protocols"),
		Settings:     policy.Settings{OverrideReviewDays: 5},
	}, testNow, "test")
	if err != nil {
		tb.Fatal(err)
	}
	return rev
}

func input(requester, rtype, role, provider, ptype, purpose string, cats ...string) *policy.Input {
	return &policy.Input{
		TimeNS:     testNow.UnixNano(),
		Requester:  policy.Requester{Partner: requester, Type: rtype, Practitioner: "p1", Role: role},
		Provider:   policy.Provider{Partner: provider, Type: ptype},
		Purpose:    purpose,
		Categories: cats,
	}
}

func TestDecideThroughTheRealEngine(t *testing.T) {
	rev := demoRevision(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		in     *policy.Input
		allow  bool
		cats   []string
		rule   string
		reason string
	}{
		{"police to social care", input("exley-csc", "local_authority", "social_worker", "exley-police", "police", "safeguarding", "police_concerns", "household"),
			true, []string{"household", "police_concerns"}, "police-to-social-care", "allowed by isp-safeguarding"},
		{"social care to GP (CP-IS)", input("riverside-gp", "gp", "gp", "exley-csc", "local_authority", "child_protection", "cp_status"),
			true, []string{"cp_status"}, "social-care-to-health", ""},
		{"police to YOS", input("exley-yos", "youth_offending", "yot_officer", "exley-police", "police", "youth_justice", "offending"),
			true, []string{"offending"}, "police-to-yos", ""},
		{"school to GP refused", input("exley-academy", "school", "teacher", "riverside-gp", "gp", "safeguarding", "health_summary"),
			false, nil, "", "no rule of"},
		{"not a signatory", input("safe-families", "voluntary", "support_worker", "exley-police", "police", "safeguarding", "police_concerns"),
			false, nil, "", "no protocol in force is signed by both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := rev.Policy.Decide(ctx, c.in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != c.allow {
				t.Fatalf("allow=%v reasons=%v", d.Allow, d.Reasons)
			}
			if c.allow && (!slices.Equal(d.Categories, c.cats) || d.Protocol.Rule != c.rule) {
				t.Fatalf("got %+v", d)
			}
			if c.reason != "" && !strings.Contains(strings.Join(d.Reasons, ";"), c.reason) {
				t.Fatalf("reasons %v", d.Reasons)
			}
		})
	}
}

func TestExpiryTakesEffectWithoutReload(t *testing.T) {
	rev := demoRevision(t)
	in := input("exley-csc", "local_authority", "early_help_worker", "exley-district", "district_council", "early_help", "household")
	in.Consents = []policy.Consent{{ID: "c1", Outcome: "given", GivenBy: "parent", Purposes: []string{"early_help"}, Categories: []string{"household"},
		Recipients: policy.Recipients{Partners: []string{"exley-csc"}}}}
	d, err := rev.Policy.Decide(context.Background(), in)
	if err != nil || !d.Allow {
		t.Fatalf("before expiry: %+v %v", d, err)
	}
	// isp-early-help expires 2027-08-01: the same revision denies after it.
	in.TimeNS = time.Date(2027, 8, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	d, err = rev.Policy.Decide(context.Background(), in)
	if err != nil || d.Allow {
		t.Fatalf("after expiry: %+v %v", d, err)
	}
}

func TestRevisionHashCoversPoliciesAndData(t *testing.T) {
	ctx := context.Background()
	src, err := policy.LoadDir(filepath.Join("..", "..", "policies"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := policy.Prepare(ctx, src, policy.Data{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := policy.Prepare(ctx, src, policy.Data{})
	c, _ := policy.Prepare(ctx, src, policy.Data{Settings: policy.Settings{OverrideReviewDays: 9}})
	src.Modules["extra.rego"] = "package trustgate.extra\n"
	d, err := policy.Prepare(ctx, src, policy.Data{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash() != b.Hash() || a.Hash() == c.Hash() || a.Hash() == d.Hash() {
		t.Fatalf("hashes %s %s %s %s", a.Hash(), b.Hash(), c.Hash(), d.Hash())
	}
}

func TestCompileErrorsAreReported(t *testing.T) {
	_, err := policy.Prepare(context.Background(), policy.Sources{Modules: map[string]string{"bad.rego": "package trustgate.sharing\ndecision := {\n"}}, policy.Data{})
	if err == nil || !strings.Contains(err.Error(), "bad.rego") {
		t.Fatalf("err = %v", err)
	}
	_, err = policy.LoadDir(t.TempDir())
	if err == nil {
		t.Fatal("an empty policy directory loaded")
	}
}

func BenchmarkDecide(b *testing.B) {
	rev := demoRevision(b)
	in := input("exley-csc", "local_authority", "social_worker", "exley-police", "police", "safeguarding", "police_concerns", "household")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := rev.Policy.Decide(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestOverrideDecisionDecodesObligations(t *testing.T) {
	rev := demoRevision(t)
	in := input("exley-csc", "local_authority", "team_manager", "exley-sexual-health", "health", "child_protection", "sexual_health")
	in.Provider.Sensitive = true
	in.Override = policy.Override{Ground: "risk_of_significant_harm", Justified: true}
	d, err := rev.Policy.Decide(context.Background(), in)
	if err != nil || !d.Allow || !d.Override {
		t.Fatalf("%+v %v", d, err)
	}
	want := policy.Obligation{Type: "ig_review", WithinDays: 5}
	if !slices.Contains(d.Obligations, want) {
		t.Fatalf("obligations %+v lack %+v", d.Obligations, want)
	}
}
