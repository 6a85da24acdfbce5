package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/nhs"
)

// tokenAs mints a token for partner's practitioner sub with role.
func (g *gateway) tokenAs(partner, sub, role string) string {
	g.t.Helper()
	tok, err := identity.Mint(g.key(partner), identity.MintClaims{
		Issuer: partner, Subject: sub, Role: role, IssuedAt: g.clock.Now(), Lifetime: 2 * time.Minute,
	})
	if err != nil {
		g.t.Fatal(err)
	}
	return tok
}

// caller is one row of the authorisation matrix.
type caller struct {
	name                string
	partner, sub, role  string
	agency, appointment string // for the docs
}

var matrixCallers = []caller{
	{"practitioner", "exley-csc", "sw-0042", "social_worker", "own", "none needed"},
	{"role its agency may not hold", "exley-academy", "t-0007", "paediatrician", "school", "-"},
	{"IG lead, not appointed", "safe-families", "v-0001", "ig_lead", "own", "none"},
	{"IG lead, agency scope", "exley-police", "ig-0002", "ig_lead", "own", "agency"},
	{"IG lead, Trust scope", "exley-csc", "ig-0001", "ig_lead", "own", "trust"},
	{"auditor, not appointed", "exley-jcp", "wc-0001", "auditor", "own", "none"},
	{"auditor, agency scope", "exley-community-health", "aud-0009", "auditor", "own", "agency"},
	{"auditor, Trust scope", "exley-police", "prac-auditor", "auditor", "own", "trust"},
}

type endpoint struct {
	method, path, doc string
	body              []byte
}

var matrixEndpoints = []endpoint{
	{http.MethodGet, "/v1/audit/entries", "GET /v1/audit/entries", nil},
	{http.MethodGet, "/v1/audit/snapshot", "GET /v1/audit/snapshot", nil},
	{http.MethodGet, "/v1/admin/backup", "GET /v1/admin/backup", nil},
	{http.MethodGet, "/v1/audit/stats?by=decision", "GET /v1/audit/stats", nil},
	{http.MethodGet, "/v1/subjects/" + child + "/access-report", "GET /v1/subjects/{nhs}/access-report", nil},
	{http.MethodGet, "/v1/reviews", "GET /v1/reviews (own agency's)", nil},
	{http.MethodGet, "/v1/admin/status", "GET /v1/admin/status", nil},
	{http.MethodPost, "/v1/admin/reload", "POST /v1/admin/reload", nil},
	{http.MethodGet, "/v1/audit/checkpoints/latest", "GET /v1/audit/checkpoints/latest", nil},
	{http.MethodGet, "/v1/audit/checkpoints/note", "GET /v1/audit/checkpoints/note", nil},
	{http.MethodGet, "/v1/audit/witnesses", "GET /v1/audit/witnesses", nil},
}

// The expected answer of every endpoint to every caller: the table the
// test checks and docs/security.md shows.
var matrixWant = map[string][]int{
	"GET /v1/audit/entries":                {403, 401, 401, 403, 403, 401, 403, 200},
	"GET /v1/audit/snapshot":               {403, 401, 401, 403, 403, 401, 403, 200},
	"GET /v1/admin/backup":                 {403, 401, 401, 403, 403, 401, 403, 200},
	"GET /v1/audit/stats":                  {403, 401, 401, 200, 200, 401, 200, 200},
	"GET /v1/subjects/{nhs}/access-report": {403, 401, 401, 200, 200, 401, 200, 200},
	"GET /v1/reviews (own agency's)":       {403, 401, 401, 200, 200, 401, 403, 403},
	"GET /v1/admin/status":                 {403, 401, 401, 403, 200, 401, 403, 403},
	"POST /v1/admin/reload":                {403, 401, 401, 403, 200, 401, 403, 403},
	"GET /v1/audit/checkpoints/latest":     {200, 401, 401, 200, 200, 401, 200, 200},
	"GET /v1/audit/checkpoints/note":       {200, 401, 401, 200, 200, 401, 200, 200},
	"GET /v1/audit/witnesses":              {200, 401, 401, 200, 200, 401, 200, 200},
}

// TestAuthorisationMatrix: endpoint × role × agency × appointed or not,
// over real HTTP against the demo Trust; every answer audited. The same
// table is docs/security.md's matrix (TRUSTGATE_UPDATE_DOCS=1 rewrites it).
func TestAuthorisationMatrix(t *testing.T) {
	g := startGateway(t, nil)
	decisionOf(t, g.decide("exley-csc", "social_worker", policeShare())) // the log is not empty
	for _, e := range matrixEndpoints {
		want := matrixWant[e.doc]
		for i, c := range matrixCallers {
			before, _ := g.app.Audit().Head()
			r := g.do(e.method, e.path, g.tokenAs(c.partner, c.sub, c.role), e.body)
			if r.Status != want[i] {
				t.Errorf("%s as %s (%s/%s %s): %d, want %d: %.300s", e.doc, c.name, c.partner, c.sub, c.role, r.Status, want[i], r.Raw)
			}
			if after, _ := g.app.Audit().Head(); after != before+1 {
				t.Errorf("%s as %s: %d audit entries", e.doc, c.name, after-before)
			}
		}
	}
	var b strings.Builder
	b.WriteString("| endpoint |")
	for _, c := range matrixCallers {
		fmt.Fprintf(&b, " %s |", c.name)
	}
	b.WriteString("\n|---|")
	for range matrixCallers {
		b.WriteString("---|")
	}
	b.WriteString("\n| (demo identity) |")
	for _, c := range matrixCallers {
		fmt.Fprintf(&b, " %s `%s` %s |", c.partner, c.sub, c.role)
	}
	b.WriteString("\n")
	for _, e := range matrixEndpoints {
		fmt.Fprintf(&b, "| `%s` |", e.doc)
		for _, st := range matrixWant[e.doc] {
			fmt.Fprintf(&b, " %d |", st)
		}
		b.WriteString("\n")
	}
	checkDocBlock(t, "matrix", b.String())
}

// checkDocBlock checks that docs/security.md holds text between the
// markers <!-- name --> and <!-- /name --> (or writes it there when
// TRUSTGATE_UPDATE_DOCS=1).
func checkDocBlock(t *testing.T, name, text string) {
	t.Helper()
	path := filepath.Join("..", "..", "docs", "security.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	open, end := "<!-- "+name+" -->\n", "<!-- /"+name+" -->"
	i, j := bytes.Index(doc, []byte(open)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("docs/security.md has no %s block", name)
	}
	if got := string(doc[i+len(open) : j]); got != text {
		if os.Getenv("TRUSTGATE_UPDATE_DOCS") == "1" {
			out := append(append(append([]byte{}, doc[:i+len(open)]...), text...), doc[j:]...)
			if err := os.WriteFile(path, out, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("docs/security.md's %s block is out of date (TRUSTGATE_UPDATE_DOCS=1 go test ./internal/app -run %s):\n%s", name, t.Name(), text)
	}
}

// TestFourEyes: nobody closes the review of an override they made; a
// second IG lead of the agency does.
func TestFourEyes(t *testing.T) {
	g := startGateway(t, nil)
	b := mustJSON(map[string]any{
		"subject": child, "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"},
		"override_ground": "risk_of_significant_harm",
		"justification":   "Bruising seen at school on 20 November and an unexplained absence; strategy discussion held today.",
	})
	// The appointed IG lead ig-0001 made the override as a social worker.
	r := g.do(http.MethodPost, "/v1/decisions", g.tokenAs("exley-csc", "ig-0001", "social_worker"), b)
	d := decisionOf(t, r)
	if d["override"] != true {
		t.Fatalf("no override: %s", r.Raw)
	}
	e, _ := g.app.Audit().Get(context.Background(), uint64(r.Body["audit_seq"].(float64)))
	close := mustJSON(map[string]any{"outcome": "upheld", "note": "proportionate"})
	self := g.do(http.MethodPost, "/v1/reviews/"+e.ReviewID, g.tokenAs("exley-csc", "ig-0001", "ig_lead"), close)
	if self.Status != http.StatusForbidden || errorOf(t, self)["code"] != "self_review" {
		t.Fatalf("self-review: %d %s", self.Status, self.Raw)
	}
	head, _ := g.app.Audit().Head()
	last, _ := g.app.Audit().Get(context.Background(), head)
	if last.Status != 403 || last.Kind != audit.KindRejected || last.Practitioner != "ig-0001" {
		t.Fatalf("self-review not audited: %+v", last)
	}
	other := g.do(http.MethodPost, "/v1/reviews/"+e.ReviewID, g.tokenAs("exley-csc", "ig-1", "ig_lead"), close)
	mustStatus(t, other, http.StatusOK)
}

// TestHTTPHygiene: 405 with Allow, no path cleaning or redirect, 415,
// CL+TE refused with the connection closed; every /v1 answer audited.
func TestHTTPHygiene(t *testing.T) {
	g := startGateway(t, nil)
	tok := func() string { return g.tokenAs("exley-csc", "sw-0042", "social_worker") }
	audited := func(name string, f func() int, want int) {
		t.Helper()
		before, _ := g.app.Audit().Head()
		if got := f(); got != want {
			t.Errorf("%s: %d, want %d", name, got, want)
		}
		if after, _ := g.app.Audit().Head(); after != before+1 {
			t.Errorf("%s: %d audit entries", name, after-before)
		}
	}
	// Every route: the served OpenAPI document's paths and methods, which
	// TestOpenAPIListsEveryRoute (internal/server) holds equal to the
	// routes found by walking the router.
	resp, err := http.Get(g.base + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	documented := map[string][]string{}
	for p, ops := range doc.Paths {
		for m := range ops {
			if mu := strings.ToUpper(m); slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE"}, mu) {
				documented[p] = append(documented[p], mu)
			}
		}
	}
	concrete := strings.NewReplacer("{nhs}", child, "{id}", "x-1")
	// answers: a documented template with method m that matches path
	// (POST /v1/reviews/summary is POST /v1/reviews/{id}).
	answers := func(path, m string) bool {
		for tmpl, ms := range documented {
			ts, ps := strings.Split(tmpl, "/"), strings.Split(path, "/")
			if !slices.Contains(ms, m) || len(ts) != len(ps) {
				continue
			}
			ok := true
			for i := range ts {
				ok = ok && (ts[i] == ps[i] || strings.HasPrefix(ts[i], "{"))
			}
			if ok {
				return true
			}
		}
		return false
	}
	tried := 0
	for tmpl, ms := range documented {
		path := concrete.Replace(tmpl)
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
			if answers(path, m) {
				continue
			}
			tried++
			var allow string
			audited(m+" "+path, func() int {
				req, _ := http.NewRequest(m, g.base+path, nil)
				req.Header.Set("Authorization", "Bearer "+tok())
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				allow = resp.Header.Get("Allow")
				return resp.StatusCode
			}, http.StatusMethodNotAllowed)
			for _, want := range ms {
				if !strings.Contains(allow, want) {
					t.Errorf("%s %s: Allow %q lacks %s", m, path, allow, want)
				}
			}
		}
	}
	if len(documented) < 30 || tried < 150 {
		t.Errorf("%d routes, %d method × route pairs tried", len(documented), tried)
	}
	// The unaudited probes answer 405 with Allow too.
	for _, p := range []string{"/healthz", "/readyz", "/.well-known/jwks.json"} {
		resp, err := http.Post(g.base+p, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
			t.Errorf("POST %s: %d Allow %q", p, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	// Reviews answer GET and POST on one path.
	req, _ := http.NewRequest("DELETE", g.base+"/v1/reviews/r-1", nil)
	req.Header.Set("Authorization", "Bearer "+tok())
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, POST" {
		t.Errorf("DELETE /v1/reviews/r-1: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	// A path the router would have cleaned: answered 404 and audited, no redirect.
	for _, p := range []string{"/v1/protocols/../audit/entries", "/v1//decisions", "/v1/./protocols", "/v1/"} {
		audited(p, func() int {
			return rawStatus(t, g, "GET "+p+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok()+"\r\n\r\n")
		}, http.StatusNotFound)
	}
	// 415.
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/jsonx"} {
		audited("Content-Type "+ct, func() int {
			req, _ := http.NewRequest("POST", g.base+"/v1/decisions", bytes.NewReader(mustJSON(policeShare())))
			req.Header.Set("Authorization", "Bearer "+tok())
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}, http.StatusUnsupportedMediaType)
	}
	audited("charset allowed", func() int {
		req, _ := http.NewRequest("POST", g.base+"/v1/decisions", bytes.NewReader(mustJSON(policeShare())))
		req.Header.Set("Authorization", "Bearer "+tok())
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		resp, _ := http.DefaultClient.Do(req)
		resp.Body.Close()
		return resp.StatusCode
	}, http.StatusOK)

	// Content-Length with Transfer-Encoding: refused, audited, connection closed.
	body := string(mustJSON(policeShare()))
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	before, _ := g.app.Audit().Head()
	c, err := net.Dial("tcp", strings.TrimPrefix(g.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%s", tok(), len(chunked), chunked)
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("CL+TE: %d close %v", resp.StatusCode, resp.Close)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the connection stayed open")
	}
	if after, _ := g.app.Audit().Head(); after != before+1 {
		t.Fatalf("CL+TE: %d audit entries", after-before)
	}

	// An encoding Go's HTTP layer would refuse on its own (501, no request
	// id, no entry), its head written a byte at a time so that the guard
	// sees it across many reads: still the handler's 400, audited, closed.
	before, _ = g.app.Audit().Head()
	c2, err := net.Dial("tcp", strings.TrimPrefix(g.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	head := fmt.Sprintf("POST /v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nTransfer-Encoding: identity, chunked\r\nContent-Length: %d\r\n\r\n", tok(), len(chunked))
	for i := 0; i < len(head); i++ {
		if _, err := c2.Write([]byte{head[i]}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let the server read what came so far
		}
	}
	io.WriteString(c2, chunked)
	br2 := bufio.NewReader(c2)
	resp, err = http.ReadResponse(br2, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 400 || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("CL+TE identity, chunked: %d request id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	_ = c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br2.ReadByte(); err == nil {
		t.Fatal("the connection stayed open")
	}
	if after, _ := g.app.Audit().Head(); after != before+1 {
		t.Fatalf("CL+TE identity, chunked: %d audit entries", after-before)
	}
}

// rawStatus sends a raw request and returns the status.
func rawStatus(t *testing.T, g *gateway, raw string) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(g.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestNoNHSNumberInTheLog is the redaction property: random valid NHS
// numbers placed in every field of random bad requests (paths, bodies,
// query, claimed identities, provider, member names) never reach the
// audit log in clear.
func TestNoNHSNumberInTheLog(t *testing.T) {
	g := startGateway(t, nil)
	r := mrand.New(mrand.NewPCG(5, 11))
	number := func() string {
		for {
			nine := fmt.Sprintf("999%06d", r.IntN(1000000))
			if c, ok := nhs.CheckDigit(nine); ok {
				n := nine + string(c)
				switch r.IntN(4) {
				case 0:
					return n[:3] + " " + n[3:6] + " " + n[6:]
				case 1:
					return n[:3] + "-" + n[3:6] + "-" + n[6:]
				case 2:
					return "x" + n + "y"
				}
				return n
			}
		}
	}
	key := g.key("exley-csc")
	var placed []string
	for i := 0; i < 300; i++ {
		n := number()
		placed = append(placed, strings.Trim(nhs.StripSeparators(n), "xy"))
		esc := strings.ReplaceAll(n, " ", "%20")
		var method, path, ct string
		var body []byte
		tok := g.tokenAs("exley-csc", "sw-0042", "social_worker")
		switch i % 10 {
		case 0:
			method, path = "GET", "/v1/subjects/"+esc+"/nothing"
		case 1:
			method, path = "GET", "/v1/subjects/"+esc+"/consents"
		case 2:
			method, path, ct = "POST", "/v1/decisions", "application/json"
			body = mustJSON(map[string]any{"subject": child, "provider": n, "purpose": "safeguarding", "categories": []string{"household"}})
		case 3:
			method, path, ct = "POST", "/v1/decisions", "application/json"
			body = []byte(`{"subject":"` + child + `","` + n + `":1}`)
		case 4:
			method, path, ct = "POST", "/v1/decisions", "application/json"
			body = mustJSON(map[string]any{"subject": child, "provider": "exley-police", "purpose": n, "categories": []string{n}})
		case 5:
			tok, _ = identity.Mint(key, identity.MintClaims{Issuer: "exley-csc", Subject: n, Role: "social_worker", IssuedAt: g.clock.Now(), Lifetime: time.Minute})
			method, path, ct = "POST", "/v1/decisions", "application/json"
			body = mustJSON(map[string]any{"subject": n + "1", "provider": "exley-police", "purpose": "safeguarding", "categories": []string{"household"}})
		case 6:
			tok, _ = identity.Mint(key, identity.MintClaims{Issuer: n, Subject: n, Role: n, IssuedAt: g.clock.Now(), Lifetime: time.Minute})
			method, path = "GET", "/v1/protocols"
		case 7:
			method, path, ct = "PUT", "/v1/subjects/"+child+"/lead-professional", "application/json"
			body = mustJSON(map[string]any{"partner": n, "practitioner": n})
		case 8:
			method, path, ct = "POST", "/v1/reviews/"+esc, "application/json"
			body = mustJSON(map[string]any{"outcome": n, "note": n})
		case 9:
			method, path = "DELETE", "/v1/subjects/"+esc+"/access-report"
		}
		req, _ := http.NewRequest(method, g.base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	head, _ := g.app.Audit().Head()
	if head < 300 {
		t.Fatalf("only %d entries", head)
	}
	for seq := uint64(1); seq <= head; seq++ {
		e, err := g.app.Audit().Get(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		e.Subject, e.PolicyRevision, e.DisclosedSHA256, e.PrevHash, e.Hash, e.InputResidual = "", "", "", "", "", nil
		b, _ := json.Marshal(e)
		flat := strings.NewReplacer(" ", "", "-", "", "%20", "").Replace(string(b))
		for _, n := range placed {
			if strings.Contains(flat, n) {
				t.Fatalf("entry %d holds %s: %s", seq, n, b)
			}
		}
	}
	// And the file itself, as bytes.
	g.stop()
	raw, err := os.ReadFile(app.AuditPath(g.cfg.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.NewReplacer(" ", "", "-", "").Replace(string(raw))
	for _, n := range placed {
		if strings.Contains(flat, n) {
			t.Fatalf("the audit file holds %s", n)
		}
	}
}

// TestLeadProfessionalHijackRefused: a teacher cannot take over a lead
// held in another agency; an agency with no lawful basis about the child
// cannot be named; a change by the local authority notifies the previous
// lead.
func TestLeadProfessionalHijackRefused(t *testing.T) {
	g := startGateway(t, nil)
	put := func(partner, sub, role string, body map[string]any) response {
		return g.do(http.MethodPut, "/v1/subjects/"+child+"/lead-professional", g.tokenAs(partner, sub, role), mustJSON(body))
	}
	mustStatus(t, put("exley-csc", "sw-0042", "social_worker", map[string]any{"practitioner": "sw-0042"}), http.StatusOK)
	hijack := put("exley-academy", "t-0007", "teacher", map[string]any{"practitioner": "t-0007"})
	if hijack.Status != http.StatusForbidden || errorOf(t, hijack)["code"] != "lead_held" {
		t.Fatalf("hijack: %d %s", hijack.Status, hijack.Raw)
	}
	rev := g.app.Revisions().Current()
	var outsider string
	for _, p := range rev.Registry.Partners() {
		if !authz.ReceivesUnderProtocols(rev.Protocols, rev.Registry, p.ID, testNow) {
			outsider = p.ID
			break
		}
	}
	if outsider == "" {
		t.Fatal("every demo partner receives under some protocol: no outsider to test with")
	}
	r := put("exley-csc", "sw-0042", "social_worker", map[string]any{"partner": outsider, "practitioner": "x-1"})
	if r.Status != http.StatusForbidden || errorOf(t, r)["code"] != "not_involved" {
		t.Fatalf("an agency not involved named lead: %d %s", r.Status, r.Raw)
	}
	// The council hands the lead to the school's DSL: the previous lead is told.
	mustStatus(t, put("exley-csc", "tm-0001", "team_manager", map[string]any{"partner": "exley-academy", "practitioner": "dsl-07"}), http.StatusOK)
	var n struct {
		Notifications []map[string]any `json:"notifications"`
	}
	decodeInto(t, g.do(http.MethodGet, "/v1/notifications", g.tokenAs("exley-csc", "sw-0042", "social_worker"), nil).Raw, &n)
	found := false
	for _, x := range n.Notifications {
		if x["event"] == "lead_professional_changed" && x["lead_practitioner"] == "sw-0042" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the previous lead was not told: %v", n.Notifications)
	}
}
