package app_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// Every request about a child, whichever check rejects it, is indexed
// under the child: each kind of rejection below names the child by a
// valid NHS number, and each appears in the child's access report with
// an inclusion proof against the report's signed checkpoint.
func TestAccessReportHoldsEveryRejection(t *testing.T) {
	g := startGateway(t, nil)
	with := func(k string, v any) map[string]any {
		m := policeShare()
		m[k] = v
		return m
	}
	type call struct {
		name         string
		method, path string
		partner      string
		role         string
		body         []byte
		contentType  string
		status       int
	}
	calls := []call{
		{name: "decision allowed", path: "/v1/decisions", body: mustJSON(policeShare()), status: 200},
		{name: "decision refused by the policy", path: "/v1/decisions", partner: "exley-academy", role: "teacher",
			body: mustJSON(map[string]any{"subject": child, "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"}}), status: 200},
		{name: "unknown category", path: "/v1/decisions", body: mustJSON(with("categories", []string{"shoe_size"})), status: 400},
		{name: "repeated category", path: "/v1/decisions", body: mustJSON(with("categories", []string{"household", "household"})), status: 400},
		{name: "unknown provider", path: "/v1/decisions", body: mustJSON(with("provider", "acme")), status: 400},
		{name: "provider is the requester", path: "/v1/decisions", body: mustJSON(with("provider", "exley-csc")), status: 400},
		{name: "unknown purpose", path: "/v1/decisions", body: mustJSON(with("purpose", "curiosity")), status: 400},
		{name: "no categories", path: "/v1/decisions", body: mustJSON(with("categories", []string{})), status: 400},
		{name: "unknown override ground", path: "/v1/decisions", body: mustJSON(with("override_ground", "hunch")), status: 400},
		{name: "weak justification", path: "/v1/decisions", body: mustJSON(with("override_ground", "risk_of_significant_harm")), status: 400},
		{name: "unknown field", path: "/v1/decisions", body: mustJSON(with("approved", true)), status: 400},
		{name: "field of the wrong type", path: "/v1/decisions", body: mustJSON(with("categories", "household")), status: 400},
		{name: "second JSON value", path: "/v1/decisions", body: append(mustJSON(policeShare()), []byte(` {}`)...), status: 400},
		{name: "wrong content type", path: "/v1/decisions", body: mustJSON(policeShare()), contentType: "text/plain", status: 415},
		{name: "share request, unknown category", path: "/v1/share-requests", body: mustJSON(with("categories", []string{"shoe_size"})), status: 400},
		{name: "consent refused by the consent policy", path: "/v1/consents", partner: "exley-police", role: "police_officer",
			body: mustJSON(parentConsentBody(child)), status: 403},
		{name: "consent with a bad field", path: "/v1/consents", role: "early_help_worker",
			body: mustJSON(func() map[string]any { m := parentConsentBody(child); m["valid_from"] = "soon"; return m }()), status: 400},
		{name: "consents read refused", method: http.MethodGet, path: "/v1/subjects/" + child + "/consents", partner: "exley-academy", role: "teacher", status: 403},
		{name: "access report refused", method: http.MethodGet, path: "/v1/subjects/" + child + "/access-report", role: "social_worker", status: 403},
	}
	ids := map[string]string{} // request id → call
	for _, c := range calls {
		if c.method == "" {
			c.method = http.MethodPost
		}
		if c.partner == "" {
			c.partner = "exley-csc"
		}
		if c.role == "" {
			c.role = "social_worker"
		}
		r := g.doWith(c.method, c.path, g.token(c.partner, c.role), c.body, c.contentType)
		if r.Status != c.status {
			t.Fatalf("%s: status %d, want %d: %s", c.name, r.Status, c.status, r.Raw)
		}
		id, _ := r.Body["request_id"].(string)
		if id == "" {
			t.Fatalf("%s: no request id in %s", c.name, r.Raw)
		}
		ids[id] = c.name
	}
	// A rejection that names no valid NHS number is not about a child.
	if r := g.decide("exley-csc", "social_worker", with("subject", "9990000019")); r.Status != 400 {
		t.Fatalf("bad NHS number: %d", r.Status)
	}

	var ar accessReport
	raw := g.get("exley-csc", "ig_lead", "/v1/subjects/"+child+"/access-report").Raw
	decodeInto(t, raw, &ar)
	rep := ar.Report
	cp, err := audit.ParseCheckpoint([]byte(rep.Checkpoint), g.jwks())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Chain.Linked {
		t.Fatalf("report chain %+v", rep.Chain)
	}
	found := map[string]bool{}
	for _, re := range rep.Entries {
		if err := audit.VerifyInclusion(re.Proof, re.Stored, cp.Root); err != nil {
			t.Fatalf("entry %d: %v", re.Entry.Seq, err)
		}
		if name, ok := ids[re.Entry.RequestID]; !ok {
			t.Errorf("entry %d (%s %s %d, request %q) is in the report but was not one of the requests made", re.Entry.Seq, re.Entry.Kind, re.Entry.Path, re.Entry.Status, re.Entry.RequestID)
		} else {
			found[name] = true
			if re.Entry.Status >= 400 && re.Entry.Kind != audit.KindRejected && re.Entry.Decision != "deny" {
				t.Errorf("%s: recorded as %s/%q", name, re.Entry.Kind, re.Entry.Decision)
			}
		}
	}
	for _, c := range calls {
		if !found[c.name] {
			t.Errorf("%s: not in the child's access report", c.name)
		}
	}
	if len(rep.Entries) != len(calls) {
		t.Errorf("report holds %d entries, want the %d requests about the child", len(rep.Entries), len(calls))
	}

	// The outsider's walk-through (docs/auditing.md §8): python3 and
	// openssl, no trustgate code, verify the report and its checkpoint
	// with the Trust's copy of the JWKS, and reject an altered entry.
	dir := t.TempDir()
	jwks := filepath.Join(dir, "trust-jwks.json")
	if err := os.WriteFile(jwks, g.do(http.MethodGet, "/.well-known/jwks.json", "", nil).Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "report.json")
	if err := os.WriteFile(report, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	script := "../../testdata/audit-format/verify_report.py"
	out, err := exec.Command("python3", script, report, jwks).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("%d entries: stored bytes, leaf hashes and inclusion proofs OK", len(calls))) {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	t.Logf("outsider's check:\n%s", out)
	if err := os.WriteFile(report, bytes.Replace(raw, []byte(`"status":400`), []byte(`"status":200`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("python3", script, report, jwks).CombinedOutput(); err == nil {
		t.Fatalf("the outsider's check accepted an altered report:\n%s", out)
	}
}

// doWith is do with an explicit Content-Type ("" for the default).
func (g *gateway) doWith(method, path, token string, body []byte, contentType string) response {
	g.t.Helper()
	if contentType == "" {
		return g.do(method, path, token, body)
	}
	return g.doHeader(method, path, token, body, http.Header{"Content-Type": {contentType}})
}
