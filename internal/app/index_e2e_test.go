package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/provider"
)

// The children of the index tests (synthetic, 999 range).
const (
	ixChild    = "9990000034"
	ixChild2   = "9990000042"
	ixChild3   = "9990000050"
	ixOldChild = "9990000069"
)

// as mints a token for a named practitioner.
func (g *gateway) as(partner, sub, role string) string {
	g.t.Helper()
	tok, err := identity.Mint(g.key(partner), identity.MintClaims{
		Issuer: partner, Subject: sub, Role: role, IssuedAt: g.clock.Now(), Lifetime: 2 * time.Minute,
	})
	if err != nil {
		g.t.Fatal(err)
	}
	return tok
}

func (g *gateway) send(method, path, token string, body any) response {
	g.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			g.t.Fatal(err)
		}
	}
	return g.do(method, path, token, b)
}

func want(t *testing.T, r response, status int) response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	return r
}

func involvementBody(subject, practitioner, kind string, concern bool) map[string]any {
	return map[string]any{
		"subject": subject, "practitioner": practitioner, "email": practitioner + "@example.org",
		"service": "svc-" + strings.ReplaceAll(kind, "_", "-"), "kind": kind, "concern": concern, "start": "2026-10-01T00:00:00Z",
	}
}

// inbox reads partner's notifications of event.
func (g *gateway) inbox(partner, event string) []provider.Notification {
	g.t.Helper()
	var out struct {
		Notifications []provider.Notification `json:"notifications"`
	}
	// Any practitioner of the agency may read its notifications: a role it
	// may hold that needs no appointment.
	role := map[string]string{"exley-csc": "social_worker", "exley-camhs": "camhs_clinician", "riverside-gp": "gp"}[partner]
	decodeInto(g.t, want(g.t, g.do(http.MethodGet, "/v1/notifications", g.as(partner, "reader", role), nil), 200).Raw, &out)
	var ns []provider.Notification
	for _, n := range out.Notifications {
		if n.Event == event {
			ns = append(ns, n)
		}
	}
	return ns
}

func partnersOf(t *testing.T, r response) []string {
	t.Helper()
	var out []string
	for _, v := range r.Body["involvements"].([]any) {
		out = append(out, v.(map[string]any)["partner"].(string))
	}
	slices.Sort(out)
	return out
}

func TestInvolvementIndexEndToEnd(t *testing.T) {
	g := startGateway(t, nil)
	csc := func() string { return g.as("exley-csc", "sw-0042", "social_worker") }
	gp := func() string { return g.as("riverside-gp", "gp-0101", "gp") }
	camhs := func() string { return g.as("exley-camhs", "cl-0007", "camhs_clinician") }

	// 1. Record, and matches: the second concern matches the first.
	r := want(t, g.send(http.MethodPost, "/v1/involvements", csc(), involvementBody(ixChild, "sw-0042", "child_in_need", true)), 201)
	cscInv := r.Body["involvement"].(map[string]any)["id"].(string)
	if len(r.Body["matches"].([]any)) != 0 {
		t.Fatalf("a first concern matched: %s", r.Raw)
	}
	r = want(t, g.send(http.MethodPost, "/v1/involvements", gp(), involvementBody(ixChild, "gp-0101", "health", true)), 201)
	ms := r.Body["matches"].([]any)
	if len(ms) != 1 || ms[0].(map[string]any)["other"].(map[string]any)["practitioner"] != "sw-0042" {
		t.Fatalf("the GP's match: %s", r.Raw)
	}
	n := g.inbox("exley-csc", provider.EventMatch)
	if len(n) != 1 || n[0].Match.Other.Partner != "riverside-gp" || n[0].Match.Other.Practitioner != "gp-0101" ||
		n[0].Match.Other.Email != "gp-0101@example.org" || n[0].Match.Involvement != cscInv || n[0].Subject != ixChild {
		t.Fatalf("social care's match message: %+v", n)
	}
	// The same involvement again is a conflict, not a second match.
	want(t, g.send(http.MethodPost, "/v1/involvements", gp(), involvementBody(ixChild, "gp-0101", "health", true)), 409)

	// 2. A shielded service's concern: it is told of the others; they are not told of it.
	r = want(t, g.send(http.MethodPost, "/v1/involvements", camhs(), involvementBody(ixChild, "cl-0007", "mental_health", true)), 201)
	if len(r.Body["matches"].([]any)) != 2 {
		t.Fatalf("CAMHS is told of both: %s", r.Raw)
	}
	if got := len(g.inbox("exley-camhs", provider.EventMatch)); got != 2 {
		t.Fatalf("CAMHS has %d match messages", got)
	}
	if got := g.inbox("exley-csc", provider.EventMatch); len(got) != 1 {
		t.Fatalf("social care was told of the shielded service: %+v", got)
	}
	var mine struct {
		Matches []map[string]any `json:"matches"`
	}
	decodeInto(t, want(t, g.do(http.MethodGet, "/v1/matches", csc(), nil), 200).Raw, &mine)
	if len(mine.Matches) != 1 || mine.Matches[0]["other"].(map[string]any)["partner"] != "riverside-gp" {
		t.Fatalf("social care's matches: %+v", mine.Matches)
	}

	// 3. Bad input: a 4xx naming the field, an audit entry, nothing changed.
	before := g.indexCount(ixChild)
	for _, c := range []struct {
		name, field string
		mutate      func(map[string]any)
	}{
		{"free text", "notes", func(b map[string]any) { b["notes"] = "mum says things are difficult at home" }},
		{"unknown kind", "kind", func(b map[string]any) { b["kind"] = "gossip" }},
		{"end before start", "end", func(b map[string]any) { b["end"] = "2026-09-01T00:00:00Z" }},
		{"another agency's practitioner", "partner", func(b map[string]any) { b["partner"] = "exley-police" }},
		{"a practitioner id with spaces", "practitioner", func(b map[string]any) { b["practitioner"] = "Jane Smith" }},
		{"no contact", "contact", func(b map[string]any) { delete(b, "email") }},
	} {
		b := involvementBody(ixChild, "sw-0099", "early_help", false)
		c.mutate(b)
		r := want(t, g.send(http.MethodPost, "/v1/involvements", csc(), b), 400)
		if f := errorOf(t, r)["field"]; f != c.field {
			t.Errorf("%s: field %v, want %s", c.name, f, c.field)
		}
	}
	if after := g.indexCount(ixChild); after != before {
		t.Fatalf("bad input changed the index: %d → %d", before, after)
	}
	if rej := g.entries(func(e *audit.Entry) bool { return e.Kind == audit.KindRejected && e.IndexAction == "record" }); len(rej) != 7 { // the six, and the conflict above
		t.Fatalf("%d rejected record entries, want 7", len(rej))
	}

	// 4. Lookups. The involved social worker: social care and the GP, not CAMHS.
	r = want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild+"/involvements", csc(), nil), 200)
	if p := partnersOf(t, r); !slices.Equal(p, []string{"exley-csc", "riverside-gp"}) || r.Body["shielded_services"] != nil ||
		strings.Contains(string(r.Raw), "camhs") {
		t.Fatalf("ordinary lookup: %v %s", p, r.Raw)
	}
	// An uninvolved teacher: 403 with the reasons, audited.
	r = want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild+"/involvements", g.as("exley-academy", "t-0007", "teacher"), nil), 403)
	reasons := strings.Join(strs(r.Body["decision"].(map[string]any)["reasons"]), "; ")
	if !strings.Contains(reasons, "no active involvement") || !strings.Contains(reasons, "no purpose was stated") {
		t.Fatalf("refusal reasons: %s", reasons)
	}
	r = want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild+"/involvements?purpose=safeguarding", g.as("exley-academy", "t-0007", "teacher"), nil), 403)
	if !strings.Contains(string(r.Raw), "no in-force protocol signed by exley-academy lets a teacher") {
		t.Fatalf("teacher with a purpose: %s", r.Raw)
	}
	// A designated safeguarding lead, for safeguarding, on the protocol's basis:
	// the shielded service is acknowledged, unnamed, and told.
	r = want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild+"/involvements?purpose=safeguarding", g.as("exley-academy", "dsl-0002", "designated_safeguarding_lead"), nil), 200)
	d := r.Body["decision"].(map[string]any)
	if d["basis"] != "protocol" || d["protocol"].(map[string]any)["rule"] != "social-care-to-school-dsl" {
		t.Fatalf("DSL's basis: %s", r.Raw)
	}
	if sh, _ := r.Body["shielded_services"].(map[string]any); sh["involved"] != true || strings.Contains(string(r.Raw), "camhs") {
		t.Fatalf("safeguarding lookup's shielded view: %s", r.Raw)
	}
	told := g.inbox("exley-camhs", provider.EventLookup)
	if len(told) != 1 || told[0].Requester.Partner != "exley-academy" || told[0].Purpose != "safeguarding" || !told[0].Lookup.Shielded {
		t.Fatalf("CAMHS told of the enquiry: %+v", told)
	}
	if len(g.inbox("exley-csc", provider.EventLookup)) != 1 {
		t.Fatal("social care was not told of a lookup from outside the team")
	}
	// CAMHS looking sees its own involvement.
	r = want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild+"/involvements", camhs(), nil), 200)
	if p := partnersOf(t, r); !slices.Equal(p, []string{"exley-camhs", "exley-csc", "riverside-gp"}) {
		t.Fatalf("CAMHS's own view: %v", p)
	}

	// 5. Early help: open, team, lead professional chosen from the team.
	r = want(t, g.send(http.MethodPost, "/v1/early-help", g.as("exley-csc", "ehw-0011", "early_help_worker"), map[string]any{"subject": ixChild}), 201)
	ep := r.Body["episode"].(map[string]any)["id"].(string)
	ehw := func() string { return g.as("exley-csc", "ehw-0011", "early_help_worker") }
	want(t, g.send(http.MethodPost, "/v1/early-help/"+ep+"/team", ehw(), map[string]any{"partner": "riverside-gp", "practitioner": "gp-0101", "role": "gp"}), 200)
	r = want(t, g.send(http.MethodPut, "/v1/early-help/"+ep+"/lead-professional", ehw(), map[string]any{"partner": "exley-police", "practitioner": "ppu-0003"}), 400)
	if errorOf(t, r)["field"] != "practitioner" || !strings.Contains(string(r.Raw), "only a member of the team") {
		t.Fatalf("a lead outside the team: %s", r.Raw)
	}
	want(t, g.send(http.MethodPut, "/v1/early-help/"+ep+"/lead-professional", ehw(), map[string]any{"partner": "exley-csc", "practitioner": "ehw-0011"}), 200)
	want(t, g.send(http.MethodPut, "/v1/early-help/"+ep+"/lead-professional", ehw(), map[string]any{"partner": "riverside-gp", "practitioner": "gp-0101"}), 200)
	want(t, g.send(http.MethodPost, "/v1/early-help", ehw(), map[string]any{"subject": ixChild}), 409)
	// A team member who has no involvement of their own may look.
	r = want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild+"/involvements", ehw(), nil), 200)
	eh := r.Body["early_help"].(map[string]any)
	lead := eh["lead_professional"].(map[string]any)
	if eh["open"] != true || lead["practitioner"] != "gp-0101" || len(eh["lead_history"].([]any)) != 2 || len(eh["team"].([]any)) != 2 {
		t.Fatalf("early help view: %s", r.Raw)
	}
	// The previous lead's agency is told, naming the episode.
	if ns := g.inbox("exley-csc", provider.EventLeadChanged); len(ns) != 1 || ns[0].Episode != ep || ns[0].LeadPractitioner != "ehw-0011" || ns[0].Subject != "" {
		t.Fatalf("exley-csc told of the lead's change: %+v", ns)
	}
	// The older route names the lead in the same episode (the one place
	// it is kept): the history grows, the lead it replaced is told.
	r = want(t, g.send(http.MethodPut, "/v1/subjects/"+ixChild+"/lead-professional", g.as("exley-csc", "tm-0001", "team_manager"), map[string]any{"partner": "exley-csc", "practitioner": "ehw-0011"}), 200)
	if r.Body["episode"] != ep {
		t.Fatalf("the lead-professional route's episode: %s", r.Raw)
	}
	if ns := g.inbox("riverside-gp", provider.EventLeadChanged); len(ns) != 1 || ns[0].Subject != ixChild || ns[0].LeadPractitioner != "gp-0101" {
		t.Fatalf("riverside-gp told of the lead's change: %+v", ns)
	}
	r = want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild+"/involvements", ehw(), nil), 200)
	eh = r.Body["early_help"].(map[string]any)
	if eh["lead_professional"].(map[string]any)["practitioner"] != "ehw-0011" || len(eh["lead_history"].([]any)) != 3 {
		t.Fatalf("early help view after the older route: %s", r.Raw)
	}
	// Naming the lead it already has changes nothing and tells no one.
	want(t, g.send(http.MethodPut, "/v1/subjects/"+ixChild+"/lead-professional", g.as("exley-csc", "tm-0001", "team_manager"), map[string]any{"partner": "exley-csc", "practitioner": "ehw-0011"}), 200)
	if len(g.inbox("exley-csc", provider.EventLeadChanged)) != 1 || len(g.inbox("riverside-gp", provider.EventLeadChanged)) != 1 {
		t.Fatal("naming the same lead again told someone")
	}

	// 6. Caseload sync: idempotent; what is left out is ended, not deleted.
	police := func() string { return g.as("exley-police", "ppu-0003", "police_officer") }
	caseload := map[string]any{"involvements": []any{
		involvementBody(ixChild2, "ppu-0003", "child_protection_plan", false),
		involvementBody(ixChild3, "ppu-0003", "child_protection_plan", true),
	}}
	r = want(t, g.send(http.MethodPut, "/v1/caseload", police(), caseload), 200)
	if r.Body["created"] != 2.0 || r.Body["ended"] != 0.0 {
		t.Fatalf("first sync: %s", r.Raw)
	}
	r = want(t, g.send(http.MethodPut, "/v1/caseload", police(), caseload), 200)
	if r.Body["unchanged"] != 2.0 || r.Body["created"] != 0.0 || r.Body["updated"] != 0.0 {
		t.Fatalf("the same caseload again: %s", r.Raw)
	}
	caseload["involvements"] = caseload["involvements"].([]any)[:1]
	r = want(t, g.send(http.MethodPut, "/v1/caseload", police(), caseload), 200)
	if r.Body["ended"] != 1.0 || r.Body["unchanged"] != 1.0 {
		t.Fatalf("a shorter caseload: %s", r.Raw)
	}
	// Ended, not deleted: still visible in the index, but no longer a
	// basis for the police to look.
	if g.indexCount(ixChild3) != 1 {
		t.Fatal("the ended involvement was deleted")
	}
	want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild3+"/involvements", police(), nil), 403)
	if v := want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild2+"/involvements", police(), nil), 200).Body["involvements"].([]any); len(v) != 1 || v[0].(map[string]any)["status"] != "active" {
		t.Fatalf("the police's remaining involvement: %v", v)
	}
	// Update and end, over HTTP: only the recording agency, no free
	// text, not ended before its start; an ended one stays visible.
	pid := want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild2+"/involvements", police(), nil), 200).Body["involvements"].([]any)[0].(map[string]any)["id"].(string)
	r = want(t, g.send(http.MethodPatch, "/v1/involvements/"+pid, police(), map[string]any{"practitioner": "ppu-0009", "phone": "+44 1632 960123", "renew": true}), 200)
	if v := r.Body["involvement"].(map[string]any); v["practitioner"] != "ppu-0009" || v["contact"].(map[string]any)["phone"] != "+44 1632 960123" || v["renew_by"] == nil {
		t.Fatalf("updated: %s", r.Raw)
	}
	if r := want(t, g.send(http.MethodPatch, "/v1/involvements/"+pid, police(), map[string]any{"notes": "worried"}), 400); errorOf(t, r)["field"] != "notes" {
		t.Fatalf("free text in an update: %s", r.Raw)
	}
	want(t, g.send(http.MethodPatch, "/v1/involvements/"+pid, csc(), map[string]any{"practitioner": "sw-0042"}), 404)
	if r := want(t, g.send(http.MethodPost, "/v1/involvements/"+pid+"/end", police(), map[string]any{"end": "2026-09-01T00:00:00Z"}), 400); errorOf(t, r)["field"] != "end" {
		t.Fatalf("an end before the start: %s", r.Raw)
	}
	// The basis is the practitioner's own: the new one may look, the old one no longer.
	want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild2+"/involvements", police(), nil), 403)
	if v := want(t, g.do(http.MethodGet, "/v1/subjects/"+ixChild2+"/involvements", g.as("exley-police", "ppu-0009", "police_officer"), nil), 200).Body["involvements"].([]any)[0].(map[string]any); v["practitioner"] != "ppu-0009" || v["status"] != "active" {
		t.Fatalf("after the refused changes: %v", v)
	}
	r = want(t, g.send(http.MethodPost, "/v1/involvements/"+pid+"/end", police(), map[string]any{}), 200)
	if v := r.Body["involvement"].(map[string]any); v["status"] != "ended" || v["end_reason"] != "ended" {
		t.Fatalf("ended: %s", r.Raw)
	}
	want(t, g.send(http.MethodPatch, "/v1/involvements/"+pid, police(), map[string]any{"renew": true}), 409)
	if g.indexCount(ixChild2) != 1 {
		t.Fatal("the ended involvement is not visible")
	}
	bad := map[string]any{"involvements": []any{involvementBody(ixChild2, "ppu-0003", "child_protection_plan", false), map[string]any{"subject": ixChild3, "kind": "x"}}}
	if r := want(t, g.send(http.MethodPut, "/v1/caseload", police(), bad), 400); errorOf(t, r)["field"] != "involvements[1].practitioner" {
		t.Fatalf("bad caseload: %s", r.Raw)
	}

	// 7. Retention: an involvement ended over five years ago is erased,
	// the erasure audited about the child.
	old := involvementBody(ixOldChild, "sw-0042", "child_in_need", false)
	old["start"], old["end"] = "2019-01-01T00:00:00Z", "2020-06-01T00:00:00Z"
	want(t, g.send(http.MethodPost, "/v1/involvements", csc(), old), 201)
	want(t, g.send(http.MethodPost, "/v1/admin/index/retention", g.as("exley-csc", "sw-0042", "social_worker"), nil), 403)
	r = want(t, g.send(http.MethodPost, "/v1/admin/index/retention", g.as("exley-csc", "ig-0001", "ig_lead"), nil), 200)
	if r.Body["erased"] != 1.0 {
		t.Fatalf("retention: %s", r.Raw)
	}
	erased := g.entries(func(e *audit.Entry) bool { return e.Kind == audit.KindErasure })
	if len(erased) != 1 || len(erased[0].IndexIDs) != 1 || erased[0].Subject == "" {
		t.Fatalf("erasure entries: %+v", erased)
	}

	// 8. Every lookup is in the child's access report, with its proof.
	var ar accessReport
	decodeInto(t, g.get("exley-csc", "ig_lead", "/v1/subjects/"+ixChild+"/access-report").Raw, &ar)
	rep := ar.Report
	cp, err := audit.ParseCheckpoint([]byte(rep.Checkpoint), g.jwks())
	if err != nil {
		t.Fatal(err)
	}
	lookups := 0
	for _, re := range rep.Entries {
		if re.Entry.Kind == audit.KindLookup {
			lookups++
			if err := audit.VerifyInclusion(re.Proof, re.Stored, cp.Root); err != nil {
				t.Fatalf("lookup entry %d: %v", re.Entry.Seq, err)
			}
			if strings.Contains(string(re.Stored), ixChild) {
				t.Fatal("the NHS number is in the audit log")
			}
		}
	}
	if lookups != 7 || !rep.Chain.Linked {
		t.Fatalf("%d lookups in the report (want 7), chain %+v", lookups, rep.Chain)
	}

	// The trail verifies after the erasure.
	g.stop()
	if _, err := audit.Verify(context.Background(), app.AuditPath(g.cfg.DataDir), audit.Options{}); err != nil {
		t.Fatalf("verify after erasure: %v", err)
	}
}

// indexCount is the number of visible involvements about the child.
func (g *gateway) indexCount(nhsNumber string) int {
	g.t.Helper()
	p, err := g.app.Keys().Pseudonym(context.Background(), nhsNumber)
	if err != nil {
		g.t.Fatal(err)
	}
	snap, err := g.app.Index().View(context.Background(), p, g.clock.Now())
	if err != nil {
		g.t.Fatal(err)
	}
	return len(snap.Involvements)
}

// entries returns the audit entries sel picks.
func (g *gateway) entries(sel func(*audit.Entry) bool) []*audit.Entry {
	g.t.Helper()
	var out []*audit.Entry
	err := g.app.Audit().ReverseScan(context.Background(), func(e *audit.Entry) (bool, error) {
		if sel(e) {
			out = append(out, e)
		}
		return true, nil
	})
	if err != nil {
		g.t.Fatal(err)
	}
	return out
}
