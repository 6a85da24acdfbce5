package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestResolveBindsOnlySignatories(t *testing.T) {
	tt := newTrust(t)
	p := parsed(t)
	// Make the rules name parties beyond the signatories: a type that a
	// registered non-signatory also has (oak-academy is a school), and
	// partners who did not sign.
	p.Rules[1].Requesters.Partners = []string{"oak-academy"}
	p.Rules[2].Providers.Partners = []string{"safe-families", "exley-police"}
	p.Rules[2].Providers.Types = []string{"voluntary", "police"}

	rp := Resolve(p, tt.reg)
	tests := []struct {
		rule                  int
		providers, requesters []string
	}{
		// health-to-social-care: types health → local_authority
		{0, []string{"exley-health"}, []string{"exley-csc"}},
		// social-care-to-school-dsl: type school binds st-annes, not the
		// registered but unsigned oak-academy, even when named.
		{1, []string{"exley-csc"}, []string{"st-annes"}},
		// police-to-social-care: safe-families (voluntary) never benefits.
		{2, []string{"exley-police"}, []string{"exley-csc"}},
	}
	for _, tc := range tests {
		r := rp.Rules[tc.rule]
		if !equalStrings(r.ProviderPartners, tc.providers) {
			t.Errorf("rules[%d] providers = %v, want %v", tc.rule, r.ProviderPartners, tc.providers)
		}
		if !equalStrings(r.RequesterPartners, tc.requesters) {
			t.Errorf("rules[%d] requesters = %v, want %v", tc.rule, r.RequesterPartners, tc.requesters)
		}
	}
	// The same rules, signed by oak-academy too, do bind it.
	p.Signatories = append(p.Signatories, "oak-academy")
	if got := Resolve(p, tt.reg).Rules[1].RequesterPartners; !equalStrings(got, []string{"oak-academy", "st-annes"}) {
		t.Errorf("with oak-academy signed, requesters = %v", got)
	}
}

func TestResolveSortsAndIgnoresUnknownSignatories(t *testing.T) {
	tt := newTrust(t)
	p := parsed(t)
	p.Signatories = []string{"st-annes", "exley-police", "exley-fire", "exley-csc", "exley-health"}
	p.Rules[0].Providers = Parties{Partners: []string{"st-annes", "exley-fire"}, Types: []string{"police", "school", "health"}}
	got := Resolve(p, tt.reg).Rules[0].ProviderPartners
	want := []string{"exley-health", "exley-police", "st-annes"}
	if !equalStrings(got, want) {
		t.Errorf("providers = %v, want %v", got, want)
	}
}

func TestResolvedJSON(t *testing.T) {
	tt := newTrust(t)
	b, err := json.Marshal(Resolve(parsed(t), tt.reg))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		ID      string `json:"id"`
		Expires string `json:"expires"`
		Rules   []map[string]any
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "isp-test-safeguarding" || got.Expires != "2028-01-01T00:00:00Z" {
		t.Errorf("id, expires = %q, %q", got.ID, got.Expires)
	}
	r := got.Rules[1]
	for _, k := range []string{"id", "providers", "requesters", "purposes", "categories", "fields", "lawful_basis",
		"consent", "override_roles", "override_grounds", "provider_partners", "requester_partners"} {
		if _, ok := r[k]; !ok {
			t.Errorf("resolved rule JSON lacks %q: %v", k, r)
		}
	}
	if strings.Contains(string(b), "null") {
		t.Errorf("resolved JSON carries null: %s", b)
	}
}

func TestResolveInForce(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	sigs := tt.signAll(t, doc, signers...)
	in := Evaluate("in.yaml", doc, sigs, tt.reg, now)
	out := Evaluate("out.yaml", doc, nil, tt.reg, now)
	got := ResolveInForce([]Status{out, in, out}, tt.reg)
	if len(got) != 1 || got[0].ID != "isp-test-safeguarding" {
		t.Errorf("ResolveInForce = %+v", got)
	}
}
