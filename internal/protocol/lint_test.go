package protocol

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/registry"
)

func parsed(t *testing.T) *Protocol {
	t.Helper()
	p, err := Parse(testDoc(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLintCleanProtocol(t *testing.T) {
	tt := newTrust(t)
	if got := Lint(parsed(t), tt.reg, now); len(got) != 0 {
		t.Errorf("Lint = %v, want no problems", got)
	}
}

func TestLint(t *testing.T) {
	tt := newTrust(t)
	tests := []struct {
		name string
		f    func(p *Protocol)
		now  time.Time
		want []Problem // exactly these, in order
	}{
		{"unknown signatory", func(p *Protocol) { p.Signatories = append(p.Signatories, "exley-fire") }, now,
			[]Problem{{"signatories[4]", `unknown partner "exley-fire"`, SeverityError}}},
		{"signatory without keys", func(p *Protocol) { p.Signatories = append(p.Signatories, "riverside-gp") }, now,
			[]Problem{{"signatories[4]", `partner "riverside-gp" has no registered signing keys and cannot sign`, SeverityWarning}}},
		{"review overdue", nil, time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
			[]Problem{{"review_by", "review overdue since 2026-12-31", SeverityWarning}}},
		{"unknown purpose", func(p *Protocol) {
			p.Purposes = append(p.Purposes, "marketing")
		}, now, []Problem{{"purposes[2]", `unknown purpose "marketing"`, SeverityError}}},
		{"unknown provider partner", func(p *Protocol) { p.Rules[1].Providers.Partners = []string{"exley-csc", "exley-fire"} }, now,
			[]Problem{{"rules[1].providers.partners[1]", `unknown partner "exley-fire"`, SeverityError}}},
		{"requester partner not a signatory", func(p *Protocol) { p.Rules[2].Requesters.Partners = []string{"exley-csc", "oak-academy"} }, now,
			[]Problem{{"rules[2].requesters.partners[1]", `partner "oak-academy" is not a signatory`, SeverityError}}},
		{"unknown partner type", func(p *Protocol) { p.Rules[0].Providers.Types = []string{"health", "hospital"} }, now,
			[]Problem{{"rules[0].providers.types[1]", `unknown partner type "hospital"`, SeverityError}}},
		{"type no signatory has", func(p *Protocol) { p.Rules[0].Providers.Types = []string{"health", "gp"} }, now,
			[]Problem{{"rules[0].providers.types[1]", `no signatory is of type "gp"`, SeverityWarning}}},
		{"no signatory can provide", func(p *Protocol) { p.Rules[0].Providers.Types = []string{"voluntary"} }, now,
			[]Problem{
				{"rules[0].providers.types[0]", `no signatory is of type "voluntary"`, SeverityWarning},
				{"rules[0].providers", "no signatory can act as a provider under this rule", SeverityError},
			}},
		{"only a non-signatory can request", func(p *Protocol) { p.Rules[2].Requesters.Partners = []string{"safe-families"} }, now,
			[]Problem{
				{"rules[2].requesters.partners[0]", `partner "safe-families" is not a signatory`, SeverityError},
				{"rules[2].requesters", "no signatory can act as a requester under this rule", SeverityError},
			}},
		{"unknown requester role", func(p *Protocol) { p.Rules[1].Requesters.Roles = []string{"headteacher"} }, now,
			[]Problem{{"rules[1].requesters.roles[0]", `unknown role "headteacher"`, SeverityError}}},
		{"unknown override role", func(p *Protocol) { p.Rules[0].OverrideRoles = []string{"team_manager", "director"} }, now,
			[]Problem{{"rules[0].override_roles[1]", `unknown role "director"`, SeverityError}}},
		{"override ground the API does not accept", func(p *Protocol) {
			p.Rules[0].OverrideGrounds = []string{"risk_of_significant_harm", "court_order"}
		}, now, []Problem{{"rules[0].override_grounds[1]", `"court_order" is not an override ground the gateway accepts (risk_of_significant_harm, section_47_enquiry, emergency_medical): this rule can never be overridden on it`, SeverityError}}},
		{"sensitive signatory under a type-only rule", func(p *Protocol) { p.Signatories = append(p.Signatories, "exley-camhs") }, now,
			[]Problem{{"rules[0].providers", `signatory "exley-camhs" is a sensitive service: this rule's provider types take it in, but the policy discloses a sensitive service's data only under a rule that names it in providers.partners; name it, or expect every such request to be refused`, SeverityWarning}}},
		{"sensitive signatory named by the rule", func(p *Protocol) {
			p.Signatories = append(p.Signatories, "exley-camhs")
			p.Rules[0].Providers.Partners = []string{"exley-camhs"}
		}, now, nil},
		{"unknown category", func(p *Protocol) { p.Rules[2].Categories = []string{"police_concerns", "intelligence"} }, now,
			[]Problem{{"rules[2].categories[1]", `unknown category "intelligence"`, SeverityError}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := parsed(t)
			if tc.f != nil {
				tc.f(p)
			}
			got := Lint(p, tt.reg, tc.now)
			if len(got) != len(tc.want) {
				t.Fatalf("Lint = %v\nwant   %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("problem %d = %v\nwant        %v", i, got[i], tc.want[i])
				}
			}
			if HasErrors(got) != HasErrors(tc.want) {
				t.Errorf("HasErrors = %v", HasErrors(got))
			}
		})
	}
}

// TestLintErrorKeepsOutOfForce: a fully signed, current protocol with a lint
// error is not in force, and the reason names the problem and the field.
func TestLintErrorKeepsOutOfForce(t *testing.T) {
	tt := newTrust(t)
	doc := []byte(strings.Replace(string(testDoc(t)), "categories: [police_concerns]", "categories: [police_concerns, intelligence]", 1))
	st := Evaluate("x.yaml", doc, tt.signAll(t, doc, signers...), tt.reg, now)
	want := []string{`unknown category "intelligence" (rules[2].categories[1])`}
	if st.InForce || !equalStrings(st.Reasons, want) {
		t.Errorf("InForce = %v, Reasons = %q, want %q", st.InForce, st.Reasons, want)
	}
}

// TestDemoProtocols keeps the demo protocols in the repository's protocols/
// directory in step with this package: each parses and lints without errors
// against the demo registry.
func TestDemoProtocols(t *testing.T) {
	dir := filepath.Join("..", "..", "protocols")
	reg, err := registry.Load(context.Background(), filepath.Join(dir, RegistryFile))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if filepath.Base(f) == RegistryFile {
			continue
		}
		n++
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		at := p.EffectiveFrom.Time()
		for _, pr := range Lint(p, reg, at) {
			if pr.Severity == SeverityError {
				t.Errorf("%s: %v", f, pr)
			}
		}
	}
	if n == 0 {
		t.Fatal("no demo protocols found")
	}
}

// TestDocsExample keeps the example in docs/protocols.md valid: the first
// YAML block there parses.
func TestDocsExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "protocols.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	block, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatal("no YAML block in docs/protocols.md")
	}
	p, err := Parse([]byte(block))
	if err != nil {
		t.Fatalf("docs example: %v", err)
	}
	if p.ID != "isp-safeguarding" || len(p.Rules) != 3 {
		t.Errorf("docs example = %s with %d rules", p.ID, len(p.Rules))
	}
}

func TestLintRoleNoSignatoryMayHold(t *testing.T) {
	reg, err := registry.Parse(context.Background(), []byte(`
id: t
name: T
purposes: [{id: safeguarding, description: s}]
categories: [{id: police_concerns, description: p}]
roles:
  - {id: social_worker, description: s, held_by: {types: [local_authority]}}
  - {id: police_officer, description: p, held_by: {types: [police]}}
partners:
  - {id: exley-csc, name: C, type: local_authority}
  - {id: exley-police, name: P, type: police}
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte(`id: isp-x
version: "1"
title: X
signatories: [exley-csc, exley-police]
effective_from: 2026-01-01
review_by: 2027-01-01
expires: 2028-01-01
purposes: [safeguarding]
rules:
  - id: r-1
    providers: {partners: [exley-police]}
    requesters: {partners: [exley-csc], roles: [social_worker, police_officer]}
    purposes: [safeguarding]
    categories: [police_concerns]
    lawful_basis: x
    consent: not_required
`)
	p, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pr := range Lint(p, reg, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)) {
		got = append(got, pr.String())
	}
	want := `rules[0].requesters.roles[1]: no signatory that may receive under this rule may hold role "police_officer" (the registry's held_by)`
	if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, want) }) {
		t.Fatalf("lint %q, want %q", got, want)
	}
}
