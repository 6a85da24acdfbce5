package policy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/policies"
)

// permissionRevision prepares the embedded policies over a small Trust in
// which csc and gp1 share under a rule that requires consent.
func permissionRevision(t *testing.T, src policy.Sources) *policy.Revision {
	t.Helper()
	rev, err := policy.Prepare(context.Background(), src, policy.Data{
		Partners: map[string]policy.PartnerData{"csc": {Type: "local_authority"}, "gp1": {Type: "gp"}, "police": {Type: "police"}},
		Protocols: []policy.ProtocolData{{
			ID: "isp-a", Version: "1", Signatories: []string{"csc", "gp1", "police"}, ExpiresNS: 1 << 62,
			Rules: []policy.RuleData{{
				ID: "gp-to-csc", Providers: policy.PartiesData{Types: []string{"gp"}}, Requesters: policy.PartiesData{Types: []string{"local_authority"}},
				Purposes: []string{"early_help"}, Categories: []string{"identity"}, Consent: "required",
			}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func TestPermitThroughTheRealEngine(t *testing.T) {
	src, err := policy.LoadFS(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	rev := permissionRevision(t, src)
	ask := func(action, partner, ptype, role string, recordedBy ...string) *policy.Permission {
		t.Helper()
		p, err := rev.Permit(context.Background(), &policy.PermissionInput{
			TimeNS: 1000, Action: action, RecordedBy: recordedBy,
			Requester: policy.Requester{Partner: partner, Type: ptype, Practitioner: "p1", Role: role},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Reasons) == 0 {
			t.Fatalf("%s by %s/%s: no reasons", action, partner, role)
		}
		return p
	}
	for _, c := range []struct {
		action, partner, ptype, role string
		recordedBy                   []string
		allow                        bool
		reason                       string
	}{
		{policy.ActionRecord, "csc", "local_authority", "early_help_worker", nil, true, "csc is a party to isp-a rule gp-to-csc"},
		{policy.ActionRecord, "gp1", "gp", "gp", nil, true, "gp1 is a party"},
		{policy.ActionRecord, "csc", "local_authority", "auditor", nil, false, "role auditor may not record consent"},
		{policy.ActionRecord, "police", "police", "social_worker", nil, false, "police is not a party to any rule that depends on consent"},
		{policy.ActionWithdraw, "police", "police", "police_officer", nil, false, "may not record a withdrawal"},
		{policy.ActionWithdraw, "csc", "local_authority", "ig_lead", nil, true, "may record a withdrawal"},
		{policy.ActionRead, "police", "police", "auditor", nil, true, "may read every child's consent history"},
		{policy.ActionRead, "police", "police", "social_worker", []string{"police"}, true, "it has recorded consent for the child"},
		{policy.ActionRead, "police", "police", "social_worker", nil, false, "not a party"},
		{"erase", "csc", "local_authority", "social_worker", nil, false, "is not one of read, record, withdraw"},
	} {
		p := ask(c.action, c.partner, c.ptype, c.role, c.recordedBy...)
		if p.Allow != c.allow || !strings.Contains(strings.Join(p.Reasons, ";"), c.reason) {
			t.Errorf("%s by %s (%s): %+v; want allow=%v ~%q", c.action, c.partner, c.role, p, c.allow, c.reason)
		}
	}
}

func TestPermitFailsClosed(t *testing.T) {
	for name, c := range map[string]struct{ rego, reason string }{
		"no permission rule": {`package trustgate.sharing
import rego.v1
decision := {"allow": false}
`, "defines no consent permission"},
		"not an object": {`package trustgate.consent
import rego.v1
permission := true
`, "not an object"},
		"no reasons": {`package trustgate.consent
import rego.v1
permission := {"allow": true, "reasons": []}
`, "malformed"},
		"extra member": {`package trustgate.consent
import rego.v1
permission := {"allow": true, "reasons": ["x"], "also": 1}
`, "malformed"},
	} {
		t.Run(name, func(t *testing.T) {
			rev := permissionRevision(t, policy.Sources{Modules: map[string]string{"p.rego": c.rego}})
			p, err := rev.Permit(context.Background(), &policy.PermissionInput{Action: policy.ActionRecord})
			if err != nil || p.Allow || !strings.Contains(p.Reasons[0], c.reason) {
				t.Fatalf("%+v %v", p, err)
			}
		})
	}
	t.Run("evaluation error", func(t *testing.T) {
		rev := permissionRevision(t, policy.Sources{Modules: map[string]string{"p.rego": `package trustgate.consent
import rego.v1
permission := {"allow": true, "reasons": ["a"]} if input.action
permission := {"allow": false, "reasons": ["b"]} if input.action
`}})
		p, err := rev.Permit(context.Background(), &policy.PermissionInput{Action: policy.ActionRecord})
		if err == nil || p.Allow {
			t.Fatalf("%+v %v", p, err)
		}
	})
}
