package policy_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/childrens-trust/trustgate/internal/policy"
)

// A lookup answer that is not exactly the contract's object is a refusal
// that shows nothing shielded and tells no one; the real policy's answer
// decodes with every member.
func TestLookupDecideFailsClosed(t *testing.T) {
	ctx := context.Background()
	in := &policy.LookupInput{TimeNS: 1, Requester: policy.Requester{Partner: "csc", Type: "local_authority", Practitioner: "p1", Role: "social_worker"},
		Own: policy.Own{Involvement: true}, Consents: []policy.Consent{},
		Involved: []policy.Involved{{Partner: "csc", Type: "local_authority"}, {Partner: "camhs", Type: "health", Shielded: true}}}
	ok := `{"allow": true, "reasons": ["r"], "basis": "involved", "protocol": null, "shielded": "hidden", "notify": []}`
	for _, tc := range []struct {
		name, answer string
		allow        bool
	}{
		{"well formed", ok, true},
		{"a protocol", `{"allow": true, "reasons": ["r"], "basis": "protocol", "protocol": {"id": "p", "version": "1", "rule": "r", "title": "t"}, "shielded": "acknowledged", "notify": ["camhs"]}`, true},
		{"an unknown member", `{"allow": true, "reasons": ["r"], "basis": "involved", "protocol": null, "shielded": "hidden", "notify": [], "extra": 1}`, false},
		{"a member missing", `{"allow": true, "reasons": ["r"], "basis": "involved", "protocol": null, "shielded": "hidden"}`, false},
		{"allow not a boolean", `{"allow": "yes", "reasons": ["r"], "basis": "involved", "protocol": null, "shielded": "hidden", "notify": []}`, false},
		{"a reason not a string", `{"allow": true, "reasons": [1], "basis": "involved", "protocol": null, "shielded": "hidden", "notify": []}`, false},
		{"no reasons", `{"allow": true, "reasons": [], "basis": "involved", "protocol": null, "shielded": "hidden", "notify": []}`, false},
		{"an unknown shielded view", `{"allow": true, "reasons": ["r"], "basis": "involved", "protocol": null, "shielded": "named", "notify": []}`, false},
		{"a protocol with an unknown member", `{"allow": true, "reasons": ["r"], "basis": "protocol", "protocol": {"id": "p", "x": "1"}, "shielded": "hidden", "notify": []}`, false},
		{"tells an agency not involved", `{"allow": true, "reasons": ["r"], "basis": "involved", "protocol": null, "shielded": "hidden", "notify": ["school"]}`, false},
		{"not an object", `[1]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := policy.Sources{Modules: map[string]string{
				"sharing.rego": "package trustgate.sharing\nimport rego.v1\ndecision := {}\n",
				"index.rego":   "package trustgate.index\nimport rego.v1\nlookup := " + tc.answer + "\nmatch := {}\n",
			}}
			rev, err := policy.Prepare(ctx, src, policy.Data{})
			if err != nil {
				t.Fatal(err)
			}
			d, err := rev.LookupDecide(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tc.allow {
				t.Fatalf("allow %v (%v), want %v", d.Allow, d.Reasons, tc.allow)
			}
			if !d.Allow && (d.Shielded != policy.ShieldedHidden || len(d.Notify) != 0 || len(d.Reasons) != 1) {
				t.Fatalf("refusal %+v shows or tells something", d)
			}
		})
	}
	src, err := policy.LoadDir(filepath.Join("..", "..", "policies"))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := policy.Prepare(ctx, src, policy.Data{})
	if err != nil {
		t.Fatal(err)
	}
	in.Purpose = "safeguarding"
	d, err := rev.LookupDecide(ctx, in)
	if err != nil || !d.Allow || d.Basis != "involved" || d.Shielded != policy.ShieldedAcknowledged || len(d.Notify) != 1 || d.Notify[0] != "camhs" || len(d.Reasons) != 2 {
		t.Fatalf("the policy's safeguarding lookup by an involved practitioner: %+v, %v", d, err)
	}
}
