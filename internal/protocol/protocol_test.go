package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseExample(t *testing.T) {
	p, err := Parse(testDoc(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "isp-test-safeguarding" || p.Version != "3" || p.Title != "Exley test safeguarding protocol" {
		t.Errorf("id/version/title = %q/%q/%q", p.ID, p.Version, p.Title)
	}
	if !equalStrings(p.Signatories, signers) {
		t.Errorf("signatories = %v", p.Signatories)
	}
	if got, want := p.EffectiveFrom.Time(), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("effective_from = %v, want %v", got, want)
	}
	if len(p.Rules) != 3 {
		t.Fatalf("rules = %d", len(p.Rules))
	}
	r := p.Rules[0]
	if r.Consent != ConsentOverridable || !equalStrings(r.OverrideRoles, []string{"team_manager"}) ||
		!equalStrings(r.Fields["health_summary"], []string{"conditions", "medication"}) {
		t.Errorf("rule 0 = %+v", r)
	}
	// Lists that the YAML leaves out are empty, never null, for the policy.
	b, err := json.Marshal(p.Rules[1])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "null") {
		t.Errorf("JSON carries null: %s", b)
	}
	for _, want := range []string{`"providers":{"partners":["exley-csc"],"types":[],"roles":[]}`, `"override_roles":[]`, `"fields":{}`, `"lawful_basis":"UK GDPR 6(1)(e); Children Act 2004 s11"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
}

func TestParseVersionAndDates(t *testing.T) {
	base := string(testDoc(t))
	tests := []struct {
		name, from, to string
		check          func(*testing.T, *Protocol)
	}{
		{"integer version", "version: 3", "version: 3", func(t *testing.T, p *Protocol) {
			if p.Version != "3" {
				t.Errorf("version = %q", p.Version)
			}
		}},
		{"dotted version as written", "version: 3", "version: 3.10", func(t *testing.T, p *Protocol) {
			if p.Version != "3.10" {
				t.Errorf("version = %q", p.Version)
			}
		}},
		{"quoted version", "version: 3", `version: "3.1"`, func(t *testing.T, p *Protocol) {
			if p.Version != "3.1" {
				t.Errorf("version = %q", p.Version)
			}
		}},
		{"quoted date", "effective_from: 2026-01-01", `effective_from: "2026-01-01"`, func(t *testing.T, p *Protocol) {
			if !p.EffectiveFrom.Time().Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("effective_from = %v", p.EffectiveFrom.Time())
			}
		}},
		{"RFC 3339 with offset", "effective_from: 2026-01-01", "effective_from: 2026-01-01T09:30:00+01:00", func(t *testing.T, p *Protocol) {
			want := time.Date(2026, 1, 1, 8, 30, 0, 0, time.UTC)
			if !p.EffectiveFrom.Time().Equal(want) {
				t.Errorf("effective_from = %v, want %v", p.EffectiveFrom.Time(), want)
			}
			if got := p.EffectiveFrom.String(); got != "2026-01-01T08:30:00Z" {
				t.Errorf("String() = %q", got)
			}
			b, _ := json.Marshal(p.EffectiveFrom)
			if string(b) != `"2026-01-01T08:30:00Z"` {
				t.Errorf("JSON = %s", b)
			}
		}},
		{"date JSON is RFC 3339", "expires: 2028-01-01", "expires: 2028-01-01", func(t *testing.T, p *Protocol) {
			b, _ := json.Marshal(p.Expires)
			if string(b) != `"2028-01-01T00:00:00Z"` {
				t.Errorf("JSON = %s", b)
			}
			var d Date
			if err := json.Unmarshal(b, &d); err != nil || !d.Time().Equal(p.Expires.Time()) {
				t.Errorf("round trip = %v, %v", d.Time(), err)
			}
			if p.Expires.String() != "2028-01-01" {
				t.Errorf("String() = %q", p.Expires.String())
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("base lacks %q", tc.from)
			}
			p, err := Parse([]byte(strings.Replace(base, tc.from, tc.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}

// mutate parses the test document into a generic tree, lets f change it and
// returns the YAML again.
func mutate(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(testDoc(t), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rule(m map[string]any, i int) map[string]any { return m["rules"].([]any)[i].(map[string]any) }

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		f      func(m map[string]any)
		field  string
		reason string // exact; a suffix when field is empty
	}{
		{"bad id", func(m map[string]any) { m["id"] = "ISP Safeguarding" }, "id",
			`"ISP Safeguarding" does not match ^[a-z0-9][a-z0-9_.-]{1,63}$`},
		{"missing id", func(m map[string]any) { delete(m, "id") }, "id", "is required"},
		{"missing version", func(m map[string]any) { delete(m, "version") }, "version", "is required"},
		{"blank title", func(m map[string]any) { m["title"] = "  " }, "title", "is required"},
		{"one signatory", func(m map[string]any) { m["signatories"] = []any{"exley-csc"} }, "signatories", "at least 2 are required"},
		{"duplicate signatory", func(m map[string]any) { m["signatories"] = []any{"exley-csc", "exley-health", "exley-csc"} },
			"signatories[2]", `"exley-csc" appears twice`},
		{"bad signatory id", func(m map[string]any) { m["signatories"] = []any{"exley-csc", "Exley Health"} },
			"signatories[1]", `"Exley Health" is not a valid identifier`},
		{"missing effective_from", func(m map[string]any) { delete(m, "effective_from") }, "effective_from", "is required"},
		{"not a date", func(m map[string]any) { m["review_by"] = "next spring" }, "review_by",
			`"next spring" is not a date (YYYY-MM-DD or RFC 3339)`},
		{"expires before effective_from", func(m map[string]any) { m["expires"] = "2025-12-31" }, "expires",
			"2025-12-31 is not after effective_from 2026-01-01"},
		{"expires equal to effective_from", func(m map[string]any) { m["expires"] = "2026-01-01"; m["review_by"] = "2026-01-01" }, "expires",
			"2026-01-01 is not after effective_from 2026-01-01"},
		{"review_by after expires", func(m map[string]any) { m["review_by"] = "2028-01-02" }, "review_by",
			"2028-01-02 is after expires 2028-01-01"},
		{"no purposes", func(m map[string]any) { delete(m, "purposes") }, "purposes", "at least one is required"},
		{"no rules", func(m map[string]any) { m["rules"] = []any{} }, "rules", "at least one is required"},
		{"duplicate rule id", func(m map[string]any) { rule(m, 2)["id"] = "health-to-social-care" }, "rules[2].id",
			`"health-to-social-care" appears twice`},
		{"rule without providers", func(m map[string]any) { delete(rule(m, 1), "providers") }, "rules[1].providers",
			"name at least one partner or partner type"},
		{"rule with empty requesters", func(m map[string]any) { rule(m, 0)["requesters"] = map[string]any{"roles": []any{"social_worker"}} },
			"rules[0].requesters", "name at least one partner or partner type"},
		{"roles on providers", func(m map[string]any) {
			rule(m, 0)["providers"] = map[string]any{"types": []any{"health"}, "roles": []any{"gp"}}
		},
			"rules[0].providers.roles", "roles restrict requesters only"},
		{"rule purpose outside protocol", func(m map[string]any) { rule(m, 1)["purposes"] = []any{"safeguarding", "early_help"} },
			"rules[1].purposes[1]", `"early_help" is not one of the protocol's purposes`},
		{"rule without purposes", func(m map[string]any) { delete(rule(m, 1), "purposes") }, "rules[1].purposes", "at least one is required"},
		{"rule without categories", func(m map[string]any) { rule(m, 2)["categories"] = []any{} }, "rules[2].categories", "at least one is required"},
		{"fields for a category not in the rule", func(m map[string]any) {
			rule(m, 0)["fields"] = map[string]any{"police_concerns": []any{"summary"}}
		}, "rules[0].fields.police_concerns", `"police_concerns" is not one of the rule's categories`},
		{"empty field list", func(m map[string]any) { rule(m, 0)["fields"] = map[string]any{"identity": []any{}} },
			"rules[0].fields.identity", "list at least one field, or remove the entry to pass the category on whole"},
		{"missing lawful basis", func(m map[string]any) { delete(rule(m, 2), "lawful_basis") }, "rules[2].lawful_basis", "is required"},
		{"consent not a mode", func(m map[string]any) { rule(m, 2)["consent"] = "sometimes" }, "rules[2].consent",
			`"sometimes" is not one of required, not_required, overridable`},
		{"consent missing", func(m map[string]any) { delete(rule(m, 2), "consent") }, "rules[2].consent",
			"is required (one of required, not_required, overridable)"},
		{"override roles without overridable", func(m map[string]any) { rule(m, 1)["override_roles"] = []any{"team_manager"} },
			"rules[1].override_roles", "only allowed with consent: overridable"},
		{"override grounds without overridable", func(m map[string]any) { rule(m, 0)["consent"] = "required" },
			"rules[0].override_grounds", "only allowed with consent: overridable"},
		{"overridable without roles", func(m map[string]any) { delete(rule(m, 0), "override_roles") },
			"rules[0].override_roles", "at least one is required"},
		{"overridable without grounds", func(m map[string]any) { delete(rule(m, 0), "override_grounds") },
			"rules[0].override_grounds", "at least one is required"},
		// Whole-document errors carry no field; the reason names the line.
		{"unknown top-level key", func(m map[string]any) { m["retention"] = "6 years" }, "", `unknown field "retention"`},
		{"unknown rule key", func(m map[string]any) { rule(m, 0)["consnt"] = "required" }, "", `unknown field "consnt"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(mutate(t, tc.f))
			if err == nil {
				t.Fatal("Parse accepted the document")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			var found []string
			for _, fe := range FieldErrors(err) {
				found = append(found, fe.Error())
				if fe.Field == tc.field && (fe.Reason == tc.reason ||
					tc.field == "" && strings.HasPrefix(fe.Reason, "line ") && strings.HasSuffix(fe.Reason, tc.reason)) {
					return
				}
			}
			t.Errorf("want %s: %s; got %q", tc.field, tc.reason, found)
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	doc := mutate(t, func(m map[string]any) {
		m["title"] = ""
		rule(m, 0)["consent"] = "sometimes"
		rule(m, 2)["categories"] = []any{}
	})
	_, err := Parse(doc)
	var got []string
	for _, fe := range FieldErrors(err) {
		got = append(got, fe.Field)
	}
	want := []string{"title", "rules[0].consent", "rules[2].categories"}
	if !equalStrings(got, want) {
		t.Errorf("fields = %q, want %q", got, want)
	}
}

func TestParseDocumentErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":          "",
		"comment only":   "# nothing\n",
		"two documents":  string(testDoc(t)) + "\n---\nid: other\n",
		"not a mapping":  "- a\n- b\n",
		"not yaml":       "id: [unclosed\n",
		"date as a list": strings.Replace(string(testDoc(t)), "expires: 2028-01-01", "expires: [2028-01-01]", 1),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(doc))
			var fe *FieldError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) {
				t.Errorf("err = %v, want a *FieldError wrapping ErrInvalid", err)
			}
		})
	}
}
