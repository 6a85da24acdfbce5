package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/decision"
	"github.com/childrens-trust/trustgate/internal/policy"
)

// The input a real decision entry records rebuilds exactly the input the
// policy decided on — the time to the nanosecond, who asked, from whom,
// for what, every consent record on file as the policy received it (none,
// one given, one withdrawn, a refusal), the override — and the entry
// does not store twice what it holds anyway.
func TestRecordedInputsRebuildExactly(t *testing.T) {
	g := startGateway(t, nil)
	ctx := context.Background()
	reg := g.app.Revisions().Current().Registry

	type decided struct {
		name string
		seq  uint64
		want policy.Input
	}
	var done []decided
	// decide asks at testNow+ns and builds, independently of the
	// gateway, the input the policy must have been given: the clock's
	// instant, the partners as the registry has them, the token's
	// practitioner and role, the request, the consent records on file for
	// the child just before (as the consent store gives them to the
	// policy), the override.
	decide := func(name, partner, role, subject string, ns time.Duration, body map[string]any) map[string]any {
		t.Helper()
		now := testNow.Add(ns)
		g.clock.Set(now)
		consents, err := g.app.State().ForDecision(ctx, g.consentPseudonym(subject))
		if err != nil {
			t.Fatal(err)
		}
		body["subject"] = subject
		r := g.decide(partner, role, body)
		d := decisionOf(t, r)
		rq, _ := reg.Partner(partner)
		pv, _ := reg.Partner(body["provider"].(string))
		ground, _ := body["override_ground"].(string)
		want := policy.Input{
			TimeNS:     now.UnixNano(),
			Requester:  policy.Requester{Partner: partner, Type: string(rq.Type), Practitioner: "prac-" + role, Role: role},
			Provider:   policy.Provider{Partner: pv.ID, Type: string(pv.Type), Sensitive: pv.Sensitive},
			Purpose:    body["purpose"].(string),
			Categories: body["categories"].([]string),
			Consents:   consents,
			Override:   policy.Override{Ground: ground, Justified: ground != ""},
		}
		done = append(done, decided{name: name, seq: uint64(r.Body["audit_seq"].(float64)), want: want})
		return d
	}
	police := func() map[string]any {
		return map[string]any{"provider": "exley-police", "purpose": "safeguarding", "categories": []string{"police_concerns", "household"}}
	}

	decide("no consent on file", "exley-csc", "social_worker", child, 123_456_789, police())
	mustStatus(t, g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(consentChild)), http.StatusCreated)
	consentID := g.consentLastEntry().ConsentID
	if d := decide("allowed on the consent on file", "exley-csc", "early_help_worker", consentChild, time.Second+1, earlyHelpShare(consentChild)); d["allow"] != true {
		t.Fatalf("consent: %v", d)
	}
	decide("one consent on file, not needed", "exley-csc", "social_worker", consentChild, 2*time.Second+999_999_999, police())
	g.clock.Set(testNow.Add(3*time.Second + 7))
	mustStatus(t, g.consentPost("exley-community-health", "health_visitor", "/v1/consents/"+consentID+"/withdraw", map[string]any{
		"withdrawn_by": "parent", "obtained": "verbal", "evidence_ref": "ECH-HV-77",
	}), http.StatusOK)
	if d := decide("the consent withdrawn", "exley-csc", "early_help_worker", consentChild, 4*time.Second, earlyHelpShare(consentChild)); d["allow"] != false {
		t.Fatalf("withdrawn: %v", d)
	}
	mustStatus(t, g.consentPost("exley-csc", "social_worker", "/v1/consents", map[string]any{
		"subject": refusalChild, "outcome": "refused", "given_by": "parent", "purposes": []string{"safeguarding"},
		"recipients": map[string]any{"types": []string{"local_authority"}}, "obtained": "verbal", "evidence_ref": "CSC-SW-9",
	}), http.StatusCreated)
	if d := decide("an override over a refusal", "exley-csc", "social_worker", refusalChild, 5*time.Second+42, map[string]any{
		"provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"},
		"override_ground": "risk_of_significant_harm", "justification": "Bruising seen at school on 20 November and an unexplained absence; strategy discussion held with police today.",
	}); d["allow"] != true || d["override"] != true {
		t.Fatalf("override: %v", d)
	}
	decide("a sensitive service, an override", "exley-csc", "team_manager", child, 6*time.Second, map[string]any{
		"provider": "exley-sexual-health", "purpose": "child_protection", "categories": []string{"sexual_health"},
		"override_ground": "risk_of_significant_harm", "justification": "Disclosure at school on 20 November of an older adult grooming the child; section 47 strategy meeting convened today.",
	})

	check := func(when string) {
		t.Helper()
		for _, c := range done {
			e, err := g.app.Audit().Get(ctx, c.seq)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind != audit.KindDecision {
				t.Fatalf("%s: entry %d is %s", c.name, c.seq, e.Kind)
			}
			got, err := decision.InputOf(e)
			if err != nil {
				t.Fatalf("%s (%s): %v", c.name, when, err)
			}
			// No fifth member (differences from the entry's own fields):
			// nothing the entry holds is stored twice.
			var members []json.RawMessage
			if err := json.Unmarshal(e.InputResidual, &members); err != nil || len(members) > 4 {
				t.Fatalf("%s: the residual repeats the entry: %s", c.name, e.InputResidual)
			}
			w := c.want
			for _, f := range []struct {
				field     string
				got, want any
			}{
				{"time_ns", got.TimeNS, w.TimeNS},
				{"requester", got.Requester, w.Requester},
				{"provider", got.Provider, w.Provider},
				{"purpose", got.Purpose, w.Purpose},
				{"categories", got.Categories, w.Categories},
				{"consents", got.Consents, w.Consents},
				{"override", got.Override, w.Override},
			} {
				if !reflect.DeepEqual(f.got, f.want) {
					t.Errorf("%s (%s): %s rebuilt as %+v, the policy saw %+v", c.name, when, f.field, f.got, f.want)
				}
			}
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(w)
			if string(gb) != string(wb) {
				t.Fatalf("%s (%s): rebuilt\n%s\nthe policy saw\n%s", c.name, when, gb, wb)
			}
			// Decided again on the rebuilt input, the serving revision
			// gives what the entry records.
			d, err := g.app.Revisions().Current().Policy.Decide(ctx, got)
			if err != nil {
				t.Fatal(err)
			}
			if was := (e.Decision == "allow"); d.Allow != was || (was && (!slices.Equal(d.Categories, e.AllowedCategories) || d.Protocol.Rule != e.Rule)) ||
				!slices.Equal(d.Reasons, e.Reasons) {
				t.Fatalf("%s: decided again %+v, recorded %+v", c.name, d, e)
			}
		}
	}
	check("running")
	if n := len(done[2].want.Consents); n != 1 || done[3].want.Consents[0].WithdrawnNS == 0 || len(done[0].want.Consents) != 0 || done[0].want.Consents == nil {
		t.Fatalf("the scenarios do not cover what they say: %+v", done)
	}

	// A typical decision entry (one consent on file, allowed by the
	// safeguarding protocol) stays bounded on disk: format 4 stores the
	// entry as the API shows it (docs/audit-format.md), about 1.2 KiB for
	// the yardstick of docs/performance.md (audit.TypicalEntry).
	for _, c := range []struct {
		i    int
		most int
	}{{0, 1050}, {2, 1250}} {
		stored, err := g.app.Audit().Stored(ctx, done[c.i].seq)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes stored: %s", done[c.i].name, len(stored), stored)
		if len(stored) > c.most {
			t.Errorf("%s: %d bytes stored, more than %d", done[c.i].name, len(stored), c.most)
		}
	}

	g.restart()
	check("after a restart")
}
