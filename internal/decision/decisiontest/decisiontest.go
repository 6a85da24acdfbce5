// Package decisiontest holds what the tests of the decision path share: a
// copy of the demo Trust to build revisions from and edit, and a
// generator of plausible decision inputs (requests drawn from the Trust's
// real traffic, children with and without consent histories, overrides,
// times spread over a period). It is imported only by tests and
// benchmarks.
package decisiontest

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/childrens-trust/trustgate/internal/revision"
	"github.com/childrens-trust/trustgate/policies"
)

// The test Trust is the demo Trust, copied so that a test can propose
// edits to its protocols and policies.

var (
	demoOnce sync.Once
	demoDir  string
	demoErr  error
)

// Trust is a copy of the demo Trust (protocols, signatures, policies) in a
// test's temporary directory: Src builds revisions from it, and a test may
// edit its files.
type Trust struct {
	Dir string
	Src revision.Sources
}

// NewTrust copies the demo Trust (prepared once per process) for t.
func NewTrust(t testing.TB) Trust {
	t.Helper()
	demoOnce.Do(func() {
		demoDir, demoErr = os.MkdirTemp("", "trustgate-whatif-demo-")
		if demoErr == nil {
			demoErr = demo.Init(demoDir, demo.Options{})
		}
	})
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "protocols"), os.DirFS(filepath.Join(demoDir, "protocols"))); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "policies"), policies.FS); err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			err = os.Chmod(p, 0o755)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return Trust{Dir: dir, Src: revision.Sources{
		ProtocolsDir: filepath.Join(dir, "protocols"), PoliciesDir: filepath.Join(dir, "policies"),
		Settings: policy.Settings{OverrideReviewDays: 5},
	}}
}

// Proposal builds a what-if proposal from tr at now (signatures assumed).
func (tr Trust) Proposal(t testing.TB, now time.Time) *revision.Revision {
	t.Helper()
	rev, err := revision.Proposal(context.Background(), tr.Src, now, true)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// Generator makes plausible decision inputs for the demo Trust: requests
// drawn from templates (a requester and role, a provider, a purpose and
// categories that some protocol rule is about, or not), about children
// drawn from a pool, each child with a fixed consent history, at times
// spread over the period.
type Generator struct {
	reg       *registry.Registry
	rng       *rand.Rand
	templates []template
	children  [][]policy.Consent
	from, to  time.Time
	practs    int
}

type template struct {
	in policy.Input
}

// NewGenerator returns a generator of inputs about children children (three
// in ten with a consent history), at times in [from, to), seeded.
func NewGenerator(reg *registry.Registry, seed uint64, children int, from, to time.Time) *Generator {
	g := &Generator{reg: reg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), from: from, to: to, practs: 400}
	partner := func(id string) policy.Provider {
		p, _ := reg.Partner(id)
		return policy.Provider{Partner: p.ID, Type: string(p.Type), Sensitive: p.Sensitive}
	}
	type req struct{ partner, role string }
	asks := []struct {
		r          req
		provider   string
		purpose    string
		categories [][]string
	}{
		{req{"exley-csc", "social_worker"}, "exley-police", "safeguarding", [][]string{{"police_concerns", "household"}, {"police_concerns"}, {"household", "offending"}}},
		{req{"exley-csc", "team_manager"}, "exley-police", "child_protection", [][]string{{"police_concerns"}, {"household"}}},
		{req{"exley-csc", "social_worker"}, "riverside-gp", "safeguarding", [][]string{{"health_summary"}, {"identity", "health_summary", "immunisations"}}},
		{req{"exley-csc", "team_manager"}, "exley-community-health", "safeguarding", [][]string{{"health_summary"}, {"immunisations"}}},
		{req{"exley-csc", "early_help_worker"}, "exley-community-health", "early_help", [][]string{{"immunisations"}, {"identity", "health_summary"}}},
		{req{"exley-csc", "early_help_worker"}, "st-annes-primary", "early_help", [][]string{{"school_attendance", "sen"}, {"identity"}}},
		{req{"exley-csc", "early_help_worker"}, "exley-district", "early_help", [][]string{{"household"}}},
		{req{"safe-families", "support_worker"}, "exley-academy", "early_help", [][]string{{"school_attendance"}}},
		{req{"st-annes-primary", "designated_safeguarding_lead"}, "exley-csc", "safeguarding", [][]string{{"cp_status", "involvement"}, {"cp_status"}}},
		{req{"exley-academy", "teacher"}, "riverside-gp", "safeguarding", [][]string{{"health_summary"}}},
		{req{"exley-yos", "yot_officer"}, "exley-police", "youth_justice", [][]string{{"offending"}, {"identity", "offending", "police_concerns"}}},
		{req{"exley-yos", "yot_officer"}, "exley-education", "education_welfare", [][]string{{"school_attendance", "exclusions"}}},
		{req{"exley-education", "education_welfare_officer"}, "st-annes-primary", "education_welfare", [][]string{{"school_attendance"}}},
		{req{"exley-probation", "probation_officer"}, "exley-yos", "youth_justice", [][]string{{"offending"}}},
		{req{"exley-csc", "team_manager"}, "exley-sexual-health", "child_protection", [][]string{{"sexual_health"}}},
		{req{"exley-csc", "social_worker"}, "exley-camhs", "child_protection", [][]string{{"mental_health"}}},
		{req{"exley-jcp", "connexions_adviser"}, "exley-csc", "safeguarding", [][]string{{"cp_status"}}},
	}
	for _, a := range asks {
		rq, _ := reg.Partner(a.r.partner)
		for _, cats := range a.categories {
			g.templates = append(g.templates, template{in: policy.Input{
				Requester:  policy.Requester{Partner: rq.ID, Type: string(rq.Type), Role: a.r.role},
				Provider:   partner(a.provider),
				Purpose:    a.purpose,
				Categories: cats,
			}})
		}
	}
	// Consent is recorded on the Trust's standard forms: each covers set
	// purposes and categories.
	forms := []struct{ purposes, categories []string }{
		{[]string{"early_help"}, []string{"identity", "school_attendance", "sen", "immunisations", "health_summary", "household", "early_help_assessment", "involvement"}},
		{[]string{"early_help", "safeguarding"}, []string{"identity", "health_summary", "immunisations"}},
		{[]string{"health_assessment"}, []string{"health_summary", "immunisations", "gp_registration"}},
		{[]string{"youth_justice", "education_welfare"}, []string{"school_attendance", "exclusions", "sen", "involvement"}},
		{[]string{"safeguarding"}, []string{"health_summary", "mental_health"}},
	}
	recipients := []policy.Recipients{
		{Partners: []string{"exley-csc"}, Types: []string{}, Protocols: []string{}},
		{Partners: []string{}, Types: []string{"local_authority", "school"}, Protocols: []string{}},
		{Partners: []string{}, Types: []string{}, Protocols: []string{"isp-early-help"}},
	}
	span := to.Sub(from)
	for c := range children {
		var cs []policy.Consent
		if g.rng.IntN(10) < 3 { // three children in ten have a consent history
			records := 1
			if g.rng.IntN(4) == 0 { // one in four, a second record
				records = 2
			}
			for i := range records {
				f := forms[g.rng.IntN(len(forms))]
				from := from.Add(-time.Duration(g.rng.Int64N(int64(90 * 24 * time.Hour)))).Add(time.Duration(g.rng.Int64N(int64(span))))
				c := policy.Consent{
					ID:          fmt.Sprintf("cons-%06d-%d", c, i),
					Outcome:     pick(g.rng, []string{"given", "given", "given", "given", "given", "refused"}),
					GivenBy:     pick(g.rng, []string{"parent", "parent", "parent", "self", "carer"}),
					Purposes:    f.purposes,
					Categories:  f.categories,
					Recipients:  pick(g.rng, recipients),
					ValidFromNS: from.UnixNano(),
				}
				c.Competent = c.GivenBy == "self" && g.rng.IntN(3) != 0
				if g.rng.IntN(3) == 0 {
					c.ValidUntilNS = from.Add(time.Duration(g.rng.Int64N(int64(span)))).UnixNano()
				}
				if g.rng.IntN(10) == 0 {
					c.WithdrawnNS = from.Add(time.Duration(g.rng.Int64N(int64(span)))).UnixNano()
				}
				cs = append(cs, c)
			}
		}
		g.children = append(g.children, cs)
	}
	return g
}

func pick[T any](rng *rand.Rand, s []T) T { return s[rng.IntN(len(s))] }

func pickSome(rng *rand.Rand, s []string, n int) []string {
	out := slices.Clone(s)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	out = out[:min(n, len(out))]
	slices.Sort(out)
	return out
}

// Next returns a fresh input: a template, a child (skewed: a few children
// are asked about often), a practitioner, a time; one in twenty invokes a
// safeguarding override.
func (g *Generator) Next() policy.Input {
	in := g.templates[g.rng.IntN(len(g.templates))].in
	n := len(g.children)
	child := int(float64(n) * g.rng.Float64() * g.rng.Float64())
	in.Consents = g.children[child]
	if in.Consents == nil {
		in.Consents = []policy.Consent{}
	}
	in.Requester.Practitioner = fmt.Sprintf("prac-%03d", g.rng.IntN(g.practs))
	in.TimeNS = g.from.Add(time.Duration(g.rng.Int64N(int64(g.to.Sub(g.from))))).UnixNano()
	if g.rng.IntN(20) == 0 {
		in.Override = policy.Override{Ground: "risk_of_significant_harm", Justified: g.rng.IntN(4) != 0}
		in.Requester.Role = "team_manager"
	}
	return in
}

// DemoDir is the demo Trust NewTrust copies from (its keys/ hold every
// demo agency's private key).
func DemoDir(t testing.TB) string {
	NewTrust(t)
	return demoDir
}

// Edit replaces the first old in tr's file name (relative to tr.Dir) by new.
func (tr Trust) Edit(t testing.TB, name, old, new string) {
	t.Helper()
	path := filepath.Join(tr.Dir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", name, old)
	}
	tr.Write(t, name, strings.Replace(string(b), old, new, 1))
}

// Write replaces tr's file name with text.
func (tr Trust) Write(t testing.TB, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(tr.Dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// NextWide returns a fresh input like Next, but half of the time a
// request drawn from the whole registry instead of the Trust's usual
// traffic: any requester and role, any other partner, any purpose, one to
// four of any categories, an override one time in ten (justified or not,
// on any ground) — mostly denials, of every kind.
func (g *Generator) NextWide() policy.Input {
	in := g.Next()
	if g.rng.IntN(2) == 0 {
		return in
	}
	ps := g.reg.Partners()
	rq := pick(g.rng, ps)
	pv := pick(g.rng, ps)
	for pv.ID == rq.ID {
		pv = pick(g.rng, ps)
	}
	terms := func(ts []registry.Term) []string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = t.ID
		}
		return out
	}
	in.Requester = policy.Requester{Partner: rq.ID, Type: string(rq.Type), Practitioner: in.Requester.Practitioner, Role: pick(g.rng, roleIDs(g.reg.Roles()))}
	in.Provider = policy.Provider{Partner: pv.ID, Type: string(pv.Type), Sensitive: pv.Sensitive}
	in.Purpose = pick(g.rng, terms(g.reg.Purposes()))
	in.Categories = pickSome(g.rng, terms(g.reg.Categories()), 1+g.rng.IntN(4))
	in.Override = policy.Override{}
	if g.rng.IntN(10) == 0 {
		in.Override = policy.Override{Ground: pick(g.rng, []string{"risk_of_significant_harm", "section_47_enquiry", "emergency_medical"}), Justified: g.rng.IntN(3) != 0}
	}
	return in
}

// roleIDs lists the ids of the registry's roles.
func roleIDs(rs []registry.Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}
