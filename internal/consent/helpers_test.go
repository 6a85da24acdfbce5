package consent_test

import (
	"context"
	"testing"

	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/policies"
)

// preparePolicy compiles the embedded policies over a one-protocol Trust
// in which csc's early help workers may receive gp1's data with consent.
func preparePolicy(t *testing.T) *policy.Revision {
	t.Helper()
	src, err := policy.LoadFS(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := policy.Prepare(context.Background(), src, policy.Data{
		Partners: map[string]policy.PartnerData{"csc": {Type: "local_authority"}, "gp1": {Type: "gp"}},
		Settings: policy.Settings{OverrideReviewDays: 5},
		Protocols: []policy.ProtocolData{{
			ID: "isp-a", Version: "1", Title: "A", Signatories: []string{"csc", "gp1"},
			EffectiveFromNS: 0, ExpiresNS: now.AddDate(1, 0, 0).UnixNano(), Purposes: []string{"early_help"},
			Rules: []policy.RuleData{{
				ID:         "gp-to-early-help",
				Providers:  policy.PartiesData{Types: []string{"gp"}},
				Requesters: policy.PartiesData{Types: []string{"local_authority"}, Roles: []string{"early_help_worker"}},
				Purposes:   []string{"early_help"}, Categories: []string{"identity", "immunisations"},
				LawfulBasis: "consent", Consent: "required",
			}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}
