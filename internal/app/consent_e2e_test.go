package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/consent"
	"github.com/childrens-trust/trustgate/internal/keys"
)

// Synthetic children (NHS numbers in the 999 range reserved for testing).
const (
	consentChild = "9990000026"
	refusalChild = "9990000034"
)

// earlyHelpShare: an early help worker at social care asks community
// health for immunisations; the early help protocol requires consent.
func earlyHelpShare(subject string) map[string]any {
	return map[string]any{"subject": subject, "provider": "exley-community-health", "purpose": "early_help", "categories": []string{"identity", "immunisations"}}
}

func parentConsentBody(subject string) map[string]any {
	return map[string]any{
		"subject": subject, "outcome": "given", "given_by": "parent",
		"purposes": []string{"early_help"}, "categories": []string{"identity", "immunisations"},
		"recipients":  map[string]any{"partners": []string{"exley-csc"}},
		"valid_until": testNow.AddDate(1, 0, 0).Format(time.RFC3339),
		"obtained":    "written", "evidence_ref": "CSC-EH-2026-0042",
	}
}

func (g *gateway) consentPost(partner, role, path string, body any) response {
	g.t.Helper()
	return g.do(http.MethodPost, path, g.token(partner, role), mustJSON(body))
}

func (g *gateway) consentGet(partner, role, path string) response {
	g.t.Helper()
	return g.do(http.MethodGet, path, g.token(partner, role), nil)
}

// lastEntry returns the newest audit entry.
func (g *gateway) consentLastEntry() *audit.Entry {
	g.t.Helper()
	head, _ := g.app.Audit().Head()
	e, err := g.app.Audit().Get(context.Background(), head)
	if err != nil {
		g.t.Fatal(err)
	}
	return e
}

// pseudonym is the gateway's pseudonym of an NHS number (the local key
// store is plain files in the data directory).
func (g *gateway) consentPseudonym(nhs string) string {
	g.t.Helper()
	ks, err := keys.OpenLocal(filepath.Join(g.cfg.DataDir, "keys"))
	if err != nil {
		g.t.Fatal(err)
	}
	p, err := ks.Pseudonym(context.Background(), nhs)
	if err != nil {
		g.t.Fatal(err)
	}
	return p
}

func reasonsOf(d map[string]any) string { return strings.Join(strs(d["reasons"]), "; ") }

func mustStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d: %s", r.Status, want, r.Raw)
	}
}

func TestConsentRecordShareWithdrawDeny(t *testing.T) {
	g := startGateway(t, nil)

	d := decisionOf(t, g.decide("exley-csc", "early_help_worker", earlyHelpShare(consentChild)))
	if d["allow"] != false || !strings.Contains(reasonsOf(d), "no consent is recorded for this child") {
		t.Fatalf("before consent: %v", d)
	}

	r := g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(consentChild))
	mustStatus(t, r, http.StatusCreated)
	id, _ := r.Body["consent_id"].(string)
	if !strings.HasPrefix(id, "cns-") || r.Body["status"] != "active" || r.Body["receipt"] == "" || r.Body["receipt_id"] == "" {
		t.Fatalf("record: %s", r.Raw)
	}
	e := g.consentLastEntry()
	if e.Kind != audit.KindConsent || e.ConsentAction != audit.ConsentGiven || e.ConsentID != id || e.Status != 201 ||
		e.ReceiptID != r.Body["receipt_id"] || e.Subject != g.consentPseudonym(consentChild) || e.Requester != "exley-csc" {
		t.Fatalf("audit entry %+v", e)
	}
	if strings.Contains(string(mustJSON(e)), consentChild) || strings.Contains(string(mustJSON(e)), "CSC-EH-2026-0042") {
		t.Fatal("the NHS number or free text is in the audit entry")
	}

	d = decisionOf(t, g.decide("exley-csc", "early_help_worker", earlyHelpShare(consentChild)))
	if d["allow"] != true || d["basis"] != "consent" || !slices.Equal(strs(d["consents"]), []string{id}) ||
		!slices.Equal(strs(d["categories"]), []string{"identity", "immunisations"}) {
		t.Fatalf("with consent: %v", d)
	}
	if e := g.consentLastEntry(); !slices.Equal(e.Consents, []string{id}) || e.Decision != "allow" {
		t.Fatalf("decision audit entry %+v", e)
	}
	// The consent names only exley-csc: another local authority is not covered.
	if d := decisionOf(t, g.decide("exley-education", "early_help_worker", earlyHelpShare(consentChild))); d["allow"] != false {
		t.Fatalf("exley-education was not named: %v", d)
	}

	// The family tells the health visitor; the withdrawal is recorded by
	// another agency than the one that recorded the consent.
	w := g.consentPost("exley-community-health", "health_visitor", "/v1/consents/"+id+"/withdraw", map[string]any{
		"withdrawn_by": "parent", "obtained": "verbal", "evidence_ref": "ECH-HV-77",
	})
	mustStatus(t, w, http.StatusOK)
	if w.Body["status"] != "withdrawn" || w.Body["receipt"] == "" || w.Body["consent_id"] != id {
		t.Fatalf("withdraw: %s", w.Raw)
	}
	if e := g.consentLastEntry(); e.Kind != audit.KindConsent || e.ConsentAction != audit.ConsentWithdrawn || e.ConsentID != id || e.Requester != "exley-community-health" {
		t.Fatalf("withdrawal audit entry %+v", e)
	}

	// The very next request is denied, naming the withdrawal.
	d = decisionOf(t, g.decide("exley-csc", "early_help_worker", earlyHelpShare(consentChild)))
	if d["allow"] != false || !strings.Contains(reasonsOf(d), fmt.Sprintf("consent %s was withdrawn", id)) {
		t.Fatalf("after withdrawal: %v", d)
	}

	// Withdrawing again is a conflict naming the field.
	again := g.consentPost("exley-csc", "early_help_worker", "/v1/consents/"+id+"/withdraw", map[string]any{"withdrawn_by": "parent", "obtained": "verbal"})
	mustStatus(t, again, http.StatusConflict)
	if e := errorOf(t, again); e["field"] != "id" || !strings.Contains(e["reason"].(string), "already withdrawn") {
		t.Fatalf("second withdrawal: %v", e)
	}

	t.Run("history keeps the withdrawn consent and who withdrew it", func(t *testing.T) {
		h := g.consentGet("exley-csc", "early_help_worker", "/v1/subjects/"+consentChild+"/consents")
		mustStatus(t, h, http.StatusOK)
		cs := h.Body["consents"].([]any)
		if len(cs) != 1 {
			t.Fatalf("history %s", h.Raw)
		}
		c := cs[0].(map[string]any)
		wd, _ := c["withdrawal"].(map[string]any)
		if c["id"] != id || c["status"] != "withdrawn" || wd == nil || wd["by"] != "parent" ||
			wd["recorded_by"].(map[string]any)["partner"] != "exley-community-health" || c["evidence_ref"] != "CSC-EH-2026-0042" {
			t.Fatalf("history entry %v", c)
		}
		e := g.consentLastEntry()
		if e.Kind != audit.KindAccess || e.Path != "/v1/subjects/{nhs}/consents" || e.Subject != g.consentPseudonym(consentChild) {
			t.Fatalf("history audit entry %+v", e)
		}
		mustStatus(t, g.consentGet("exley-police", "auditor", "/v1/subjects/"+consentChild+"/consents"), http.StatusOK)
		// A partner with no consent-based rule (the police) is refused,
		// with the policy's reasons, and the refusal is audited.
		f := g.consentGet("exley-police", "police_officer", "/v1/subjects/"+consentChild+"/consents")
		mustStatus(t, f, http.StatusForbidden)
		if e := g.consentLastEntry(); e.Kind != audit.KindRejected || e.Status != 403 || len(e.Reasons) == 0 || e.Path != "/v1/subjects/{nhs}/consents" {
			t.Fatalf("refused history audit entry %+v", e)
		}
	})
}

func TestCompetentChildRefusalPrevailsOverParentConsent(t *testing.T) {
	g := startGateway(t, nil)
	parent := g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(refusalChild))
	mustStatus(t, parent, http.StatusCreated)
	if d := decisionOf(t, g.decide("exley-csc", "early_help_worker", earlyHelpShare(refusalChild))); d["allow"] != true {
		t.Fatalf("parent's consent: %v", d)
	}

	refusal := g.consentPost("exley-community-health", "school_nurse", "/v1/consents", map[string]any{
		"subject": refusalChild, "outcome": "refused", "given_by": "self",
		"competence": map[string]any{"assessed_competent": true, "assessed_by": "school nurse SN-12 (Fraser guidance)"},
		"purposes":   []string{"early_help"},
		"recipients": map[string]any{"types": []string{"local_authority"}},
		"obtained":   "verbal", "evidence_ref": "ECH-SN-2026-311",
	})
	mustStatus(t, refusal, http.StatusCreated)
	rid := refusal.Body["consent_id"].(string)
	if refusal.Body["status"] != "refused" || g.consentLastEntry().ConsentAction != audit.ConsentRefused {
		t.Fatalf("refusal: %s", refusal.Raw)
	}

	d := decisionOf(t, g.decide("exley-csc", "early_help_worker", earlyHelpShare(refusalChild)))
	if d["allow"] != false || !strings.Contains(reasonsOf(d), fmt.Sprintf("the child, assessed as competent, refused consent (%s)", rid)) {
		t.Fatalf("competent child's refusal vs parent's consent: %v", d)
	}

	// A parent's new consent is recorded (history), with a warning that it
	// will not count, and the share stays denied.
	again := g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(refusalChild))
	mustStatus(t, again, http.StatusCreated)
	if !strings.Contains(strings.Join(strs(again.Body["warnings"]), ";"), "the child is recorded as competent") {
		t.Fatalf("no warning: %s", again.Raw)
	}
	if d := decisionOf(t, g.decide("exley-csc", "early_help_worker", earlyHelpShare(refusalChild))); d["allow"] != false {
		t.Fatalf("parent consent for a competent child: %v", d)
	}

	// Only the child withdraws the child's own decision.
	w := g.consentPost("exley-csc", "early_help_worker", "/v1/consents/"+rid+"/withdraw", map[string]any{"withdrawn_by": "parent", "obtained": "verbal"})
	mustStatus(t, w, http.StatusBadRequest)
	if e := errorOf(t, w); e["field"] != "withdrawn_by" || !strings.Contains(e["reason"].(string), "only by the child") {
		t.Fatalf("parent withdrawing the child's refusal: %v", e)
	}
}

func TestReceiptVerifiesAgainstThePublishedKeySet(t *testing.T) {
	g := startGateway(t, nil)
	r := g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(consentChild))
	mustStatus(t, r, http.StatusCreated)
	receipt := r.Body["receipt"].(string)

	// Any JOSE library, any verifier: fetch the published key set over
	// HTTP and verify the compact JWS with it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	set, err := jwk.Fetch(ctx, g.base+"/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify([]byte(receipt), jws.WithKeySet(set))
	if err != nil {
		t.Fatalf("the receipt does not verify against the published key set: %v", err)
	}
	msg, _ := jws.Parse([]byte(receipt))
	if typ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != consent.ReceiptTyp {
		t.Fatalf("typ %q", typ)
	}
	var k map[string]any
	if err := json.Unmarshal(payload, &k); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"version", "jurisdiction", "consentTimestamp", "collectionMethod", "consentReceiptID", "piiPrincipalId", "piiControllers", "services", "spiCat"} {
		if _, ok := k[f]; !ok {
			t.Fatalf("Kantara field %s missing: %s", f, payload)
		}
	}
	if k["consentReceiptID"] != r.Body["receipt_id"] || k["piiPrincipalId"] != g.consentPseudonym(consentChild) || strings.Contains(string(payload), consentChild) {
		t.Fatalf("receipt payload %s", payload)
	}
	ctrl := k["piiControllers"].([]any)[0].(map[string]any)
	purpose := k["services"].([]any)[0].(map[string]any)["purposes"].([]any)[0].(map[string]any)
	if ctrl["partnerId"] != "exley-csc" || !strings.Contains(ctrl["piiController"].(string), "Children's Social Care") ||
		purpose["thirdPartyDisclosure"] != true || !strings.Contains(purpose["termination"].(string), "or until withdrawn") {
		t.Fatalf("controllers %v purpose %v", ctrl, purpose)
	}

	// The withdrawal receipt verifies too and names the consent it ends.
	id := r.Body["consent_id"].(string)
	w := g.consentPost("exley-csc", "early_help_worker", "/v1/consents/"+id+"/withdraw", map[string]any{"withdrawn_by": "parent", "obtained": "written"})
	mustStatus(t, w, http.StatusOK)
	wr, err := consent.VerifyReceipt([]byte(w.Body["receipt"].(string)), set)
	if err != nil {
		t.Fatal(err)
	}
	if wr.Trustgate.ReceiptType != consent.ReceiptWithdrawal || wr.Trustgate.Withdraws != id {
		t.Fatalf("withdrawal receipt %+v", wr.Trustgate)
	}

	// A receipt with one changed byte of payload does not verify.
	parts := strings.Split(receipt, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(raw), `"given"`, `"gives"`, 1)
	bad := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
	if _, err := jws.Verify([]byte(bad), jws.WithKeySet(set)); err == nil {
		t.Fatal("a forged receipt verified")
	}
}

func TestOverrideOpensAReviewThatGoesOverdueAndIsClosed(t *testing.T) {
	g := startGateway(t, nil)
	// A parent's refusal is on record; it does not block a permitted
	// override but shows in the decision.
	ref := g.consentPost("exley-csc", "social_worker", "/v1/consents", map[string]any{
		"subject": child, "outcome": "refused", "given_by": "parent", "purposes": []string{"safeguarding"},
		"recipients": map[string]any{"types": []string{"local_authority"}}, "obtained": "verbal", "evidence_ref": "CSC-SW-9",
	})
	mustStatus(t, ref, http.StatusCreated)
	refusalID := ref.Body["consent_id"].(string)

	justification := "Bruising seen at school on 20 November and an unexplained absence; strategy discussion held with police today."
	r := g.decide("exley-csc", "social_worker", map[string]any{
		"subject": child, "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"},
		"override_ground": "risk_of_significant_harm", "justification": justification,
	})
	d := decisionOf(t, r)
	if d["allow"] != true || d["override"] != true || !slices.Equal(strs(d["refusals_on_record"]), []string{refusalID}) {
		t.Fatalf("override: %v", d)
	}
	obl := string(mustJSON(d["obligations"]))
	if !strings.Contains(obl, `{"type":"ig_review","within_days":5}`) || !strings.Contains(obl, `"notify_lead_professional"`) || !strings.Contains(obl, `{"partner":"riverside-gp","type":"notify_provider"}`) {
		t.Fatalf("obligations %s", obl)
	}
	rv := r.Body["review"].(map[string]any)
	reviewID := rv["id"].(string)
	if rv["status"] != "open" || rv["due"] != testNow.Add(5*24*time.Hour).Format(time.RFC3339) {
		t.Fatalf("review %v", rv)
	}
	e := g.consentLastEntry()
	if !e.Override || e.ReviewID != reviewID || e.Decision != "allow" || e.OverrideGround != "risk_of_significant_harm" || !slices.Equal(e.RefusalsOnRecord, []string{refusalID}) {
		t.Fatalf("override audit entry %+v", e)
	}
	if strings.Contains(string(mustJSON(e)), "Bruising") {
		t.Fatal("the justification is in the audit log")
	}

	list := func(partner, status string) []any {
		t.Helper()
		r := g.consentGet(partner, "ig_lead", "/v1/reviews?status="+status)
		mustStatus(t, r, http.StatusOK)
		return r.Body["reviews"].([]any)
	}
	summary := func() map[string]any {
		t.Helper()
		r := g.consentGet("exley-csc", "ig_lead", "/v1/reviews/summary")
		mustStatus(t, r, http.StatusOK)
		return r.Body["summary"].(map[string]any)
	}

	open := list("exley-csc", "open")
	if len(open) != 1 {
		t.Fatalf("open reviews %v", open)
	}
	item := open[0].(map[string]any)
	if item["id"] != reviewID || item["status"] != "open" || item["overdue"] != false || item["justification"] != justification ||
		item["request_id"] != e.RequestID || !slices.Equal(strs(item["refusals_on_record"]), []string{refusalID}) {
		t.Fatalf("review item %v", item)
	}
	if got := list("riverside-gp", "open"); len(got) != 1 {
		t.Fatalf("the provider's IG lead sees %d", len(got))
	}
	if got := list("exley-police", "open"); len(got) != 0 {
		t.Fatalf("an unconcerned partner's IG lead sees %d", len(got))
	}
	mustStatus(t, g.consentGet("exley-csc", "social_worker", "/v1/reviews"), http.StatusForbidden)
	if s := summary(); s["open"] != 1.0 || s["overdue"] != 0.0 || s["closed"] != 0.0 {
		t.Fatalf("summary %v", s)
	}

	// Six days on, the item is overdue: flagged in the listing and counted.
	g.clock.Set(testNow.Add(6 * 24 * time.Hour))
	over := list("exley-csc", "overdue")
	if len(over) != 1 || over[0].(map[string]any)["overdue"] != true || over[0].(map[string]any)["status"] != "overdue" {
		t.Fatalf("overdue %v", over)
	}
	if s := summary(); s["open"] != 1.0 || s["overdue"] != 1.0 || s["oldest_overdue_due"] == nil {
		t.Fatalf("summary %v", s)
	}

	c := g.consentPost("exley-csc", "ig_lead", "/v1/reviews/"+reviewID, map[string]any{"outcome": "upheld", "note": "Risk of significant harm was evident; the override was proportionate and limited to the health summary."})
	mustStatus(t, c, http.StatusOK)
	closed := c.Body["review"].(map[string]any)
	if closed["status"] != "closed" || closed["closure"].(map[string]any)["reviewer"].(map[string]any)["practitioner"] != "prac-ig_lead" {
		t.Fatalf("closed %s", c.Raw)
	}
	e = g.consentLastEntry()
	if e.Kind != audit.KindReview || e.ReviewID != reviewID || e.ReviewOutcome != "upheld" || e.Subject != g.consentPseudonym(child) || strings.Contains(string(mustJSON(e)), "proportionate") {
		t.Fatalf("review audit entry %+v", e)
	}
	again := g.consentPost("exley-csc", "ig_lead", "/v1/reviews/"+reviewID, map[string]any{"outcome": "not_upheld", "note": "second thoughts"})
	mustStatus(t, again, http.StatusConflict)
	if got := list("exley-csc", "closed"); len(got) != 1 || got[0].(map[string]any)["closure"].(map[string]any)["outcome"] != "upheld" {
		t.Fatalf("closed list %v", got)
	}
	if got := list("exley-csc", "open"); len(got) != 0 {
		t.Fatalf("open after close %v", got)
	}
	if s := summary(); s["open"] != 0.0 || s["overdue"] != 0.0 || s["closed"] != 1.0 {
		t.Fatalf("summary %v", s)
	}
	// The police's IG lead cannot close (or even see) another partner's review.
	mustStatus(t, g.consentPost("exley-police", "ig_lead", "/v1/reviews/"+reviewID, map[string]any{"outcome": "upheld", "note": "x"}), http.StatusNotFound)
}

func TestConsentBadInputIsRejectedAndAudited(t *testing.T) {
	g := startGateway(t, nil)
	ok := g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(consentChild))
	mustStatus(t, ok, http.StatusCreated)
	id := ok.Body["consent_id"].(string)
	mustStatus(t, g.consentPost("exley-csc", "early_help_worker", "/v1/consents/"+id+"/withdraw", map[string]any{"withdrawn_by": "parent", "obtained": "verbal"}), 200)
	active := g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(consentChild))
	mustStatus(t, active, http.StatusCreated)
	activeID := active.Body["consent_id"].(string)

	with := func(k string, v any) map[string]any { m := parentConsentBody(consentChild); m[k] = v; return m }
	without := func(k string) map[string]any { m := parentConsentBody(consentChild); delete(m, k); return m }
	type tc struct {
		name          string
		role, path    string
		body          any
		status        int
		field, reason string
	}
	const rec = "/v1/consents"
	cases := []tc{
		{"unknown purpose", "", rec, with("purposes", []string{"marketing"}), 400, "purposes[0]", `"marketing" is not a purpose`},
		{"unknown category", "", rec, with("categories", []string{"identity", "shoe_size"}), 400, "categories[1]", "not a data category"},
		{"unknown partner", "", rec, with("recipients", map[string]any{"partners": []string{"acme-ltd"}}), 400, "recipients.partners[0]", "not a partner"},
		{"unknown partner type", "", rec, with("recipients", map[string]any{"types": []string{"bank"}}), 400, "recipients.types[0]", "not a partner type"},
		{"unknown protocol", "", rec, with("recipients", map[string]any{"protocols": []string{"isp-nosuch"}}), 400, "recipients.protocols[0]", "not a protocol"},
		{"unknown recipients member", "", rec, with("recipients", map[string]any{"people": []string{"x"}}), 400, "recipients.people", "unknown field"},
		{"no recipients", "", rec, without("recipients"), 400, "recipients", "at least one"},
		{"valid_until in the past", "", rec, with("valid_until", testNow.Add(-time.Hour).Format(time.RFC3339)), 400, "valid_until", "in the past"},
		{"valid_until not a time", "", rec, with("valid_until", "next year"), 400, "valid_until", "RFC 3339"},
		{"competent flag on a parent's consent", "", rec, with("competence", map[string]any{"assessed_competent": true, "assessed_by": "sw-1"}), 400, "competence", "only to the child's own decision"},
		{"child assessed not competent", "", rec, func() map[string]any {
			m := with("given_by", "self")
			m["competence"] = map[string]any{"assessed_competent": false, "assessed_by": "sw-1"}
			return m
		}(), 400, "competence.assessed_competent", "cannot give or refuse"},
		{"unknown decider", "", rec, with("given_by", "neighbour"), 400, "given_by", "not one of"},
		{"unknown method", "", rec, with("obtained", "rumour"), 400, "obtained", "not one of"},
		{"no evidence", "", rec, without("evidence_ref"), 400, "evidence_ref", "required"},
		{"bad NHS number", "", rec, with("subject", "9990000019"), 400, "subject", "modulus-11"},
		{"unknown field", "", rec, with("colour", "blue"), 400, "colour", "unknown field"},
		{"role may not record", "police_officer", rec, parentConsentBody(consentChild), 403, "", "may not record consent"},
		{"withdraw unknown consent", "", "/v1/consents/cns-00000000000000000000/withdraw", map[string]any{"withdrawn_by": "parent", "obtained": "verbal"}, 404, "id", "no consent"},
		{"withdraw already withdrawn", "", "/v1/consents/" + id + "/withdraw", map[string]any{"withdrawn_by": "parent", "obtained": "verbal"}, 409, "id", "already withdrawn"},
		{"withdrawal in the future", "", "/v1/consents/" + activeID + "/withdraw", map[string]any{"withdrawn_by": "parent", "obtained": "verbal", "withdrawn_at": testNow.Add(time.Hour).Format(time.RFC3339)}, 400, "withdrawn_at", "in the future"},
		{"bad review status", "ig_lead", "/v1/reviews?status=pending", nil, 400, "status", "not one of open, overdue, closed"},
		{"bad review outcome", "ig_lead", "/v1/reviews/rev-x", map[string]any{"outcome": "fine", "note": "ok"}, 400, "outcome", "not one of upheld, not_upheld"},
		{"unknown review", "ig_lead", "/v1/reviews/rev-x", map[string]any{"outcome": "upheld", "note": "ok"}, 404, "id", "no review item"},
	}
	pseudo := g.consentPseudonym(consentChild)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := g.app.Audit().Head()
			hist, err := g.app.State().History(context.Background(), pseudo)
			if err != nil {
				t.Fatal(err)
			}
			role := c.role
			if role == "" {
				role = "early_help_worker"
			}
			partner := "exley-csc"
			if role == "police_officer" {
				partner = "exley-police"
			}
			var r response
			if c.body == nil {
				r = g.consentGet(partner, role, c.path)
			} else {
				r = g.consentPost(partner, role, c.path, c.body)
			}
			mustStatus(t, r, c.status)
			e := errorOf(t, r)
			field, _ := e["field"].(string)
			if field != c.field || !strings.Contains(fmt.Sprint(e["reason"]), c.reason) {
				t.Fatalf("error %v; want field %q reason ~%q", e, c.field, c.reason)
			}
			after, _ := g.app.Audit().Head()
			if after != before+1 {
				t.Fatalf("audit grew by %d entries, want 1", after-before)
			}
			ent := g.consentLastEntry()
			if ent.Kind != audit.KindRejected || ent.Status != c.status || ent.Decision != "" {
				t.Fatalf("audit entry %+v", ent)
			}
			if c.field != "" && !strings.Contains(ent.Error, c.field) {
				t.Fatalf("audit error %q does not name %s", ent.Error, c.field)
			}
			if strings.Contains(string(mustJSON(ent)), consentChild) {
				t.Fatal("the NHS number is in the audit entry in clear")
			}
			hist2, _ := g.app.State().History(context.Background(), pseudo)
			if string(mustJSON(hist2)) != string(mustJSON(hist)) {
				t.Fatal("a rejected request changed the state store")
			}
		})
	}
}

func TestConsentNotKeptWhenItsAuditEntryFails(t *testing.T) {
	g := startGateway(t, nil)
	if err := g.app.Audit().Close(); err != nil {
		t.Fatal(err)
	}
	r := g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(consentChild))
	mustStatus(t, r, http.StatusServiceUnavailable)
	if _, ok := r.Body["receipt"]; ok || errorOf(t, r)["code"] != "audit_unavailable" {
		t.Fatalf("answer %s", r.Raw)
	}
	hist, err := g.app.State().History(context.Background(), g.consentPseudonym(consentChild))
	if err != nil || len(hist) != 0 {
		t.Fatalf("a consent whose recording was not audited was kept: %d %v", len(hist), err)
	}
}

func TestStateStoreDownFailsClosed(t *testing.T) {
	g := startGateway(t, nil)
	if err := g.app.State().Close(); err != nil {
		t.Fatal(err)
	}
	// A decision needs the consent state: without it nothing is disclosed.
	r := g.decide("exley-csc", "social_worker", policeShare())
	mustStatus(t, r, http.StatusServiceUnavailable)
	if _, ok := r.Body["decision"]; ok || errorOf(t, r)["code"] != "state_unavailable" {
		t.Fatalf("answer %s", r.Raw)
	}
	if e := g.consentLastEntry(); e.Kind != audit.KindUnavailable || e.Status != 503 || e.Decision == "allow" {
		t.Fatalf("audit entry %+v", e)
	}
	mustStatus(t, g.consentPost("exley-csc", "early_help_worker", "/v1/consents", parentConsentBody(consentChild)), http.StatusServiceUnavailable)
	ready := g.do(http.MethodGet, "/readyz", "", nil)
	if ready.Status != http.StatusServiceUnavailable || ready.Body["checks"].(map[string]any)["state"] == "ok" {
		t.Fatalf("readyz %d %s", ready.Status, ready.Raw)
	}
}
