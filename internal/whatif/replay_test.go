package whatif

import (
	"context"
	"encoding/json"
	"hash/maphash"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/decision"
	"github.com/childrens-trust/trustgate/internal/decision/decisiontest"

	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/revision"
)

var (
	periodFrom = time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	periodTo   = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
)

// bruteForce is the reference: every recorded input evaluated against the
// proposed revision, one after another, with no memo.
func bruteForce(t *testing.T, rev *policy.Revision, recs []Record, examples int) *Report {
	t.Helper()
	rep := &Report{ByChange: map[string]int{}}
	groups := map[groupKey]*Group{}
	for _, r := range recs {
		if len(r.Input) == 0 {
			rep.Unrecorded++
			continue
		}
		var in policy.Input
		if err := json.Unmarshal(r.Input, &in); err != nil {
			t.Fatal(err)
		}
		if at := time.Unix(0, in.TimeNS); at.Before(periodFrom) || !at.Before(periodTo) {
			continue
		}
		rep.Decisions++
		var now Outcome
		if d, err := rev.Decide(context.Background(), &in); err != nil {
			now = Outcome{Error: true}
		} else {
			now = OutcomeOf(d)
		}
		kind, rule := Change(r.Was, now)
		if kind == "" {
			continue
		}
		rep.Changed++
		rep.ByChange[kind]++
		k := groupKey{kind, rule, in.Purpose}
		g := groups[k]
		if g == nil {
			g = &Group{Change: kind, Rule: rule, Purpose: in.Purpose}
			groups[k] = g
		}
		g.Count++
		if len(g.Examples) < examples {
			g.Examples = append(g.Examples, r.Seq) // records come in seq order
		}
	}
	rep.Unchanged = rep.Decisions - rep.Changed
	for _, g := range groups {
		rep.Groups = append(rep.Groups, *g)
	}
	return rep
}

func sameReport(t *testing.T, got, want *Report) {
	t.Helper()
	sortGroups := func(gs []Group) []Group {
		gs = slices.Clone(gs)
		slices.SortFunc(gs, func(a, b Group) int {
			return strings.Compare(a.Change+a.Rule+a.Purpose, b.Change+b.Rule+b.Purpose)
		})
		return gs
	}
	if got.Decisions != want.Decisions || got.Changed != want.Changed || got.Unchanged != want.Unchanged ||
		got.Unrecorded != want.Unrecorded || !maps.Equal(got.ByChange, want.ByChange) {
		t.Fatalf("totals: got %d decisions %d changed %v, want %d %d %v", got.Decisions, got.Changed, got.ByChange, want.Decisions, want.Changed, want.ByChange)
	}
	if g, w := sortGroups(got.Groups), sortGroups(want.Groups); !reflect.DeepEqual(g, w) {
		t.Fatalf("groups differ:\ngot  %+v\nwant %+v", g, w)
	}
}

// TestReplayMatchesBruteForce proposes edits of every kind to the demo
// Trust and checks that the what-if report over a recorded log is exactly
// what evaluating every recorded input would give.
func TestReplayMatchesBruteForce(t *testing.T) {
	base := decisiontest.NewTrust(t)
	serving, err := revision.Build(context.Background(), base.Src, periodFrom, "test")
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, serving.Policy, decisiontest.NewGenerator(serving.Registry, 7, 300, periodFrom.Add(-24*time.Hour), periodTo.Add(24*time.Hour)), 3000)
	recs = append(recs, Record{Seq: 3001}) // an entry without a recorded input

	cases := []struct {
		name   string
		edit   func(t *testing.T, tr decisiontest.Trust)
		expect []string // change kinds that must appear
	}{
		{"unchanged", func(*testing.T, decisiontest.Trust) {}, nil},
		{"add a purpose to a rule", func(t *testing.T, tr decisiontest.Trust) {
			tr.Edit(t, "protocols/early-help.yaml", "purposes: [early_help]\nrules:", "purposes: [early_help, safeguarding]\nrules:")
			tr.Edit(t, "protocols/early-help.yaml", "    requesters: {types: [local_authority], roles: [early_help_worker]}\n    purposes: [early_help]", "    requesters: {types: [local_authority], roles: [early_help_worker, social_worker]}\n    purposes: [early_help, safeguarding]")
		}, []string{DenyToAllow}},
		{"narrow a rule", func(t *testing.T, tr decisiontest.Trust) {
			tr.Edit(t, "protocols/safeguarding.yaml", "categories: [police_concerns, household]", "categories: [police_concerns]")
			tr.Edit(t, "protocols/safeguarding.yaml", "      household: [members, risks]\n", "")
		}, []string{Narrowed, AllowToDeny}},
		{"a withdrawal in the middle of the period", func(t *testing.T, tr decisiontest.Trust) {
			key, partner, err := protocol.ReadPrivateKey(filepath.Join(decisiontest.DemoDir(t), "keys", "exley-police.jwk"))
			if err != nil {
				t.Fatal(err)
			}
			if err := protocol.WithdrawFile(filepath.Join(tr.Dir, "protocols", "youth-justice.yaml"), key, partner, periodFrom.Add(30*24*time.Hour), periodFrom); err != nil {
				t.Fatal(err)
			}
		}, []string{AllowToDeny}},
		{"no more overrides", func(t *testing.T, tr decisiontest.Trust) {
			tr.Edit(t, "policies/sharing.rego", "override_ok(r) if {\n\toverride_requested", "override_ok(r) if {\n\tfalse\n\toverride_requested")
		}, []string{AllowToDeny}},
		{"a policy that fails for one partner", func(t *testing.T, tr decisiontest.Trust) {
			tr.Write(t, "policies/conflict.rego", "package trustgate.sharing\n\nimport rego.v1\n\ndecision := {\"allow\": false} if input.provider.partner == \"exley-police\"\n")
		}, []string{Fails}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := decisiontest.NewTrust(t)
			c.edit(t, tr)
			prop := tr.Proposal(t, periodFrom)
			rep, err := Replay(context.Background(), prop.Policy, prop.PolicySources(), memorySource(recs), Options{From: periodFrom, To: periodTo, Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			sameReport(t, rep, bruteForce(t, prop.Policy, recs, 5))
			for _, k := range c.expect {
				if rep.ByChange[k] == 0 {
					t.Errorf("no %s change: %s", k, rep.Summary())
				}
			}
			if c.expect == nil && rep.Changed != 0 {
				// The demo's unsigned protocol, assumed signed, may come
				// into force; nothing else may change.
				for _, g := range rep.Groups {
					if !strings.Contains(g.Rule, "isp-education-welfare") {
						t.Errorf("an unchanged proposal changes %+v", g)
					}
				}
			}
			if !strings.HasPrefix(rep.Method, "decisions memoised") || rep.Evaluations >= int64(rep.Decisions)/2 {
				t.Errorf("the memo did not work: %s, %d evaluations for %d decisions", rep.Method, rep.Evaluations, rep.Decisions)
			}
			t.Logf("%s (%d evaluations)", rep.Summary(), rep.Evaluations)
		})
	}
}

// A policy that reads the time other than through date comparisons is not
// memoised, and the report is still exact.
func TestReplayWithoutMemoWhenThePolicyReadsTheTime(t *testing.T) {
	tr := decisiontest.NewTrust(t)
	serving := tr.Proposal(t, periodFrom)
	recs := records(t, serving.Policy, decisiontest.NewGenerator(serving.Registry, 11, 50, periodFrom, periodTo), 400)
	tr.Write(t, "policies/weekday.rego", `package trustgate.sharing

import rego.v1

weekend if time.weekday(input.time_ns) in {"Saturday", "Sunday"}
`)
	tr.Edit(t, "policies/sharing.rego", "decision := allow_decision if best\n", "decision := allow_decision if {\n\tbest\n\tnot weekend\n}\n")
	tr.Edit(t, "policies/sharing.rego", "decision := deny_decision if not best\n", "decision := deny_decision if not best\n\ndecision := deny_decision if {\n\tbest\n\tweekend\n}\n")
	prop := tr.Proposal(t, periodFrom)
	rep, err := Replay(context.Background(), prop.Policy, prop.PolicySources(), memorySource(recs), Options{From: periodFrom, To: periodTo})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Method, "every decision evaluated: weekday.rego uses input.time_ns") || rep.Evaluations != int64(rep.Decisions) {
		t.Fatalf("method %q, %d evaluations for %d decisions", rep.Method, rep.Evaluations, rep.Decisions)
	}
	sameReport(t, rep, bruteForce(t, prop.Policy, recs, 5))
	if rep.ByChange[AllowToDeny] == 0 {
		t.Fatalf("weekend denials not reported: %s", rep.Summary())
	}
}

// A policy that hides a date from the static reading (here: in an object
// of its own) makes a spot check fail; the replay then runs again without
// the memo, and the report is exact.
func TestReplaySpotChecksTheMemo(t *testing.T) {
	tr := decisiontest.NewTrust(t)
	serving := tr.Proposal(t, periodFrom)
	cut := periodFrom.Add(10 * 24 * time.Hour)
	in := policy.Input{
		Requester: policy.Requester{Partner: "exley-csc", Type: "local_authority", Practitioner: "p", Role: "social_worker"},
		Provider:  policy.Provider{Partner: "exley-police", Type: "police"}, Purpose: "safeguarding",
		Categories: []string{"police_concerns"}, Consents: []policy.Consent{},
	}
	var recs []Record
	for i := range 1100 {
		in.TimeNS = cut.Add(time.Duration(i-100) * time.Minute).UnixNano()
		d, err := serving.Policy.Decide(context.Background(), &in)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(in)
		recs = append(recs, Record{Seq: uint64(i + 1), Input: raw, Was: OutcomeOf(d)})
	}
	tr.Write(t, "policies/hidden.rego", "package trustgate.sharing\n\nimport rego.v1\n\nhidden := {\"expires_ns\": "+itoa(cut.UnixNano())+"}\n\nclosed if input.time_ns >= hidden.expires_ns\n")
	tr.Edit(t, "policies/sharing.rego", "binding_ix contains i if {\n\tsome i in in_force_ix\n", "binding_ix contains i if {\n\tnot closed\n\tsome i in in_force_ix\n")
	prop := tr.Proposal(t, periodFrom)
	rep, err := Replay(context.Background(), prop.Policy, prop.PolicySources(), memorySource(recs), Options{From: periodFrom, To: periodTo, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Method, "memoised outcome differs from a direct evaluation") {
		t.Fatalf("method %q", rep.Method)
	}
	sameReport(t, rep, bruteForce(t, prop.Policy, recs, 5))
	if rep.ByChange[AllowToDeny] != 1000 {
		t.Fatalf("%s", rep.Summary())
	}
}

func TestChange(t *testing.T) {
	allow := func(rule string, cats ...string) Outcome {
		return Outcome{Allow: true, Protocol: "isp", Version: "1", Rule: rule, Categories: cats}
	}
	deny := Outcome{}
	for _, c := range []struct {
		was, now   Outcome
		kind, rule string
	}{
		{deny, deny, "", ""},
		{allow("r", "a"), allow("r", "a"), "", ""},
		{allow("r", "a"), deny, AllowToDeny, "isp v1 r"},
		{deny, allow("s", "a"), DenyToAllow, "isp v1 s"},
		{allow("r", "a"), allow("r", "a", "b"), Widened, "isp v1 r"},
		{allow("r", "a", "b"), allow("r", "b"), Narrowed, "isp v1 r"},
		{allow("r", "a"), allow("r", "b"), Recomposed, "isp v1 r"},
		{allow("r", "a"), allow("s", "a"), RuleChanged, "isp v1 r → isp v1 s"},
		{allow("r", "a"), Outcome{Allow: true, Protocol: "isp", Version: "2", Rule: "r", Categories: []string{"a"}}, "", ""},
		{allow("r", "a"), Outcome{Error: true}, Fails, "isp v1 r"},
		{deny, Outcome{Error: true}, Fails, "(none)"},
	} {
		if k, r := Change(c.was, c.now); k != c.kind || r != c.rule {
			t.Errorf("Change(%+v, %+v) = %q %q, want %q %q", c.was, c.now, k, r, c.kind, c.rule)
		}
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// Equal raw keys (the recorded bytes without the time and the
// practitioner) must mean equal memo keys: the raw memo may answer only
// what the memo would.
func TestRawKeyRefinesTheMemoKey(t *testing.T) {
	tr := decisiontest.NewTrust(t)
	rev := tr.Proposal(t, periodFrom)
	a := decision.Analyze(rev.PolicySources())
	r := &replayer{rev: rev.Policy, a: a, breaks: decision.Breakpoints(rev.Policy, &a), seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	g := decisiontest.NewGenerator(rev.Registry, 3, 200, periodFrom, periodTo)
	seen := map[[2]uint64]string{}
	hits := 0
	for range 20000 {
		in := g.Next()
		raw, _ := json.Marshal(in)
		rk, purpose, ok := r.rawKey(raw)
		if !ok || purpose != in.Purpose {
			t.Fatalf("rawKey(%s) = %v %q", raw, ok, purpose)
		}
		k := r.key(&in)
		if prev, found := seen[rk]; found {
			hits++
			if prev != k {
				t.Fatalf("equal raw keys, different memo keys for %s", raw)
			}
		}
		seen[rk] = k
	}
	if hits < 10000 {
		t.Fatalf("only %d raw hits", hits)
	}
	for _, bad := range []string{`{"requester":{}}`, `{"time_ns":12x`, `{"time_ns":1,"requester":{"partner":"a"}}`} {
		if _, _, ok := r.rawKey([]byte(bad)); ok {
			t.Errorf("rawKey accepted %s", bad)
		}
	}
}
