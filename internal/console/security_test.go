package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/console"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// client is a browser-like HTTP client that does not follow redirects.
func client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// linkSignin signs a person in with a development link.
func (g *gateway) linkSignin(c *http.Client, sub, role string) *http.Response {
	g.t.Helper()
	key, _, err := protocol.ReadPrivateKey(filepath.Join(g.dir, "keys", "exley-csc.jwk"))
	if err != nil {
		g.t.Fatal(err)
	}
	link, err := console.Link(key, "exley-csc", sub, role, g.cfg.GatewayID, g.base, time.Minute)
	if err != nil {
		g.t.Fatal(err)
	}
	u, _ := url.Parse(link)
	r, err := c.PostForm(g.base+"/console/link", url.Values{"t": {u.Query().Get("t")}})
	if err != nil {
		g.t.Fatal(err)
	}
	return r
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

func TestConsoleSessionsAndForms(t *testing.T) {
	g := startGateway(t)
	reviewID := g.seed()

	// Signed out: every page sends the browser to sign in, with strict
	// headers.
	c := client(t)
	r, err := c.Get(g.base + "/console/reviews")
	if err != nil {
		t.Fatal(err)
	}
	body(t, r)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/console/signin?next=%2Fconsole%2Freviews" {
		t.Fatalf("signed out: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}

	// The session cookie: HttpOnly, SameSite=Lax, path /, not Secure on
	// loopback.
	r = g.linkSignin(c, "ig-0001", "ig_lead")
	body(t, r)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("link sign-in: %d", r.StatusCode)
	}
	sc := r.Header.Get("Set-Cookie")
	for _, want := range []string{"trustgate_console=", "Path=/", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(sc, want) {
			t.Fatalf("Set-Cookie %q lacks %s", sc, want)
		}
	}
	if strings.Contains(sc, "Secure") {
		t.Fatalf("Set-Cookie %q is Secure on loopback", sc)
	}

	// A review page; its form's CSRF token.
	r, _ = c.Get(g.base + "/console/reviews/" + reviewID)
	page := body(t, r)
	m := csrfField.FindStringSubmatch(page)
	if r.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("review page %d, csrf %v", r.StatusCode, m)
	}
	close := func(form url.Values, origin string) int {
		req, _ := http.NewRequest(http.MethodPost, g.base+"/console/reviews/"+reviewID, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		r, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body(t, r)
		return r.StatusCode
	}
	form := url.Values{"outcome": {"upheld"}, "note": {"checked"}}
	if st := close(form, g.base); st != http.StatusForbidden {
		t.Fatalf("a form without the CSRF token: %d", st)
	}
	form.Set("csrf", m[1])
	if st := close(form, "http://evil.example"); st != http.StatusForbidden {
		t.Fatalf("a form from another origin: %d", st)
	}
	open := g.as("exley-csc", "ig-0001", "ig_lead", "GET", "/v1/reviews?status=open", nil)
	if n := len(open["reviews"].([]any)); n != 1 {
		t.Fatalf("a refused form changed the queue: %d open", n)
	}

	// What the console does is an audited /v1 call as the person, its
	// token id naming the session (never the session's secret).
	var e *audit.Entry
	err = g.app.Audit().ReverseScan(context.Background(), func(x *audit.Entry) (bool, error) {
		if x.Path == "/v1/reviews/"+reviewID && x.Practitioner == "ig-0001" {
			e = x
			return false, nil
		}
		return true, nil
	})
	if err != nil || e == nil {
		t.Fatalf("no audit entry for the console's read of the review: %v", err)
	}
	cookie := strings.TrimPrefix(strings.SplitN(sc, ";", 2)[0], "trustgate_console=")
	if e.Requester != "exley-csc" || e.Role != "ig_lead" || !strings.HasPrefix(e.TokenID, "console:") || strings.Contains(e.TokenID, cookie[:16]) {
		t.Fatalf("console call's audit entry %+v", e)
	}

	// Sign-out ends the session on the server.
	r, _ = c.PostForm(g.base+"/console/signout", url.Values{"csrf": {m[1]}})
	body(t, r)
	r, _ = c.Get(g.base + "/console/reviews")
	body(t, r)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", r.StatusCode)
	}
}

func TestConsoleRefusesBadSignins(t *testing.T) {
	g := startGateway(t)

	// A callback that no sign-in started.
	c := client(t)
	r, _ := c.Get(g.base + "/console/callback?code=x&state=" + strings.Repeat("a", 32))
	if b := body(t, r); r.StatusCode != http.StatusBadRequest || !strings.Contains(b, "unknown or was already used") {
		t.Fatalf("forged callback: %d", r.StatusCode)
	}

	// An API token is not a sign-in link (and the other way round).
	key, _, _ := protocol.ReadPrivateKey(filepath.Join(g.dir, "keys", "exley-csc.jwk"))
	api, _ := identity.Mint(key, identity.MintClaims{Issuer: "exley-csc", Subject: "ig-0001", Role: "ig_lead", Audience: g.cfg.GatewayID, Lifetime: time.Minute})
	r, _ = c.PostForm(g.base+"/console/link", url.Values{"t": {api}})
	if b := body(t, r); r.StatusCode != http.StatusUnauthorized || !strings.Contains(b, "not valid") {
		t.Fatalf("an API token as a link: %d", r.StatusCode)
	}

	// Signed in at the agency, but holding no role of the Trust: refused,
	// through the real provider's own login form.
	_, r, b := oidcSignin(t, g, "nobody@exley-csc.example", "/console/")
	if r.StatusCode != http.StatusForbidden || !strings.Contains(b, "does not say which role of the Trust you hold") {
		t.Fatalf("a person with no Trust role: %d %s", r.StatusCode, b)
	}
	if r.Request.URL.Path != "/console/callback" {
		t.Fatalf("ended at %s", r.Request.URL)
	}

	// Roles the agency asserts for an appointed role (ig_lead, auditor)
	// without an appointment naming the person do not count.
	_, r, b = oidcSignin(t, g, "unappointed@exley-csc.example", "/console/")
	if r.StatusCode != http.StatusForbidden || !strings.Contains(b, "no appointment of the Trust names you") {
		t.Fatalf("an unappointed ig_lead: %d %s", r.StatusCode, b)
	}

	// A social worker (as the agency asserts) whom an appointment makes
	// an IG lead holds two roles: they choose one before any page, then
	// land where they were going.
	follow, r, b := oidcSignin(t, g, "both@exley-csc.example", "/console/reviews")
	if r.Request.URL.Path != "/console/role" || !strings.Contains(b, `value="social_worker"`) || !strings.Contains(b, `value="ig_lead"`) || strings.Contains(b, `value="auditor"`) {
		t.Fatalf("two roles: at %s: %s", r.Request.URL, b)
	}
	m := csrfField.FindStringSubmatch(b)
	r, err := follow.PostForm(g.base+"/console/role", url.Values{"csrf": {m[1]}, "role": {"social_worker"}, "next": {"/console/reviews"}})
	if err != nil {
		t.Fatal(err)
	}
	b = body(t, r)
	// As a social worker the review queue is not theirs: the API says
	// so, in the page; the console adds no privilege.
	if r.Request.URL.Path != "/console/reviews" || !strings.Contains(b, "ig-0001") || !strings.Contains(b, "social_worker") || !strings.Contains(b, "Not available to your role") {
		t.Fatalf("after choosing a role: %s %s", r.Request.URL, b)
	}

	// A development link for a role the person is not appointed to is
	// refused at sign-in.
	r = g.linkSignin(client(t), "aud-0001", "auditor")
	if b := body(t, r); r.StatusCode != http.StatusForbidden || !strings.Contains(b, "may not act as") {
		t.Fatalf("a link for an unappointed auditor: %d %s", r.StatusCode, b)
	}
}

// oidcSignin signs in through the real OP's login form with a plain HTTP
// client that follows redirects, starting from the console page next.
func oidcSignin(t *testing.T, g *gateway, username, next string) (*http.Client, *http.Response, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	follow := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	r, err := follow.Get(g.base + "/console/signin/exley-csc?next=" + url.QueryEscape(next))
	if err != nil {
		t.Fatal(err)
	}
	login := body(t, r)
	id := regexp.MustCompile(`name="id" value="([^"]+)"`).FindStringSubmatch(login)
	if id == nil {
		t.Fatalf("the provider's login page: %d %s", r.StatusCode, login)
	}
	opLogin := r.Request.URL.ResolveReference(&url.URL{Path: "/login/username"})
	r, err = follow.PostForm(opLogin.String(), url.Values{"id": {id[1]}, "username": {username}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	return follow, r, body(t, r)
}

// A child's NHS number reaches the console only in a form's body: the
// child form and the audit search are CSRF-checked POSTs that redirect to
// addresses naming the child by a reference of the session, which
// another session cannot use; an address with an NHS number is refused.
func TestConsoleChildReferences(t *testing.T) {
	g := startGateway(t)
	g.seed()
	signedIn := func(sub, role string) (*http.Client, string) {
		c := client(t)
		body(t, g.linkSignin(c, sub, role))
		r, _ := c.Get(g.base + "/console/child")
		m := csrfField.FindStringSubmatch(body(t, r))
		if m == nil {
			t.Fatalf("%s: no CSRF token on the child form", sub)
		}
		return c, m[1]
	}
	c, csrf := signedIn("auditor-07", "auditor")

	// Without the CSRF token: refused, no reference made.
	r, _ := c.PostForm(g.base+"/console/child", url.Values{"nhs": {child}})
	body(t, r)
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("the child form without its token: %d", r.StatusCode)
	}
	// An invalid number: 400 naming the problem, in place.
	r, _ = c.PostForm(g.base+"/console/child", url.Values{"csrf": {csrf}, "nhs": {"9990000019"}})
	if b := body(t, r); r.StatusCode != http.StatusBadRequest || !strings.Contains(b, "not a valid NHS number") {
		t.Fatalf("an invalid NHS number: %d", r.StatusCode)
	}
	refs := map[string]string{}
	for _, view := range []string{"report", "team"} {
		r, _ = c.PostForm(g.base+"/console/child", url.Values{"csrf": {csrf}, "nhs": {"999 000 0018"}, "view": {view}})
		body(t, r)
		loc := r.Header.Get("Location")
		if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/child/c") || strings.Contains(loc, child) {
			t.Fatalf("the child form (%s): %d %s", view, r.StatusCode, loc)
		}
		refs[view] = loc
	}
	if refs["team"] != refs["report"]+"/team" {
		t.Fatalf("one child, two references: %v", refs)
	}
	r, _ = c.Get(g.base + refs["report"])
	if b := body(t, r); r.StatusCode != http.StatusOK || !strings.Contains(b, "999 000 0018") || !strings.Contains(b, `id="report-entries"`) {
		t.Fatalf("the report at its reference: %d", r.StatusCode)
	}
	// A long report is paged (100 entries a page, newest first), and
	// shown whole on request, for printing.
	for range 100 {
		g.as("exley-csc", "sw-0042", "social_worker", "GET", "/v1/subjects/"+child+"/consents", nil)
	}
	r, _ = c.Get(g.base + refs["report"])
	b := body(t, r)
	if !strings.Contains(b, "this page shows entries 1 to 100") || !strings.Contains(b, `rel="next"`) || strings.Count(b, `class="proof"`) != 100 {
		t.Fatalf("the first page of a long report: %d proofs", strings.Count(b, `class="proof"`))
	}
	r, _ = c.Get(g.base + refs["report"] + "?page=2")
	if b = body(t, r); !strings.Contains(b, "this page shows entries 101 to") || !strings.Contains(b, `rel="prev"`) {
		t.Fatalf("the second page of a long report")
	}
	r, _ = c.Get(g.base + refs["report"] + "?all=1")
	if b = body(t, r); strings.Contains(b, "this page shows") || strings.Count(b, `class="proof"`) <= 100 {
		t.Fatalf("the whole report: %d proofs", strings.Count(b, `class="proof"`))
	}

	// The audit search by child: the same reference in the address.
	r, _ = c.PostForm(g.base+"/console/audit", url.Values{"csrf": {csrf}, "subject": {child}, "kind": {"deny"}})
	body(t, r)
	loc := r.Header.Get("Location")
	if r.StatusCode != http.StatusSeeOther || strings.Contains(loc, child) || !strings.Contains(loc, "child="+strings.TrimPrefix(refs["report"], "/console/child/")) || !strings.Contains(loc, "kind=deny") {
		t.Fatalf("the audit search by child: %d %s", r.StatusCode, loc)
	}
	r, _ = c.Get(g.base + loc)
	if b := body(t, r); r.StatusCode != http.StatusOK || !strings.Contains(b, "t-0007") || strings.Contains(b, "sw-0042 (exley-csc)") {
		t.Fatalf("the search's results: %d", r.StatusCode)
	}
	// The NHS number in an address: refused, not searched without it.
	r, _ = c.Get(g.base + "/console/audit?subject=" + child)
	if b := body(t, r); r.StatusCode != http.StatusBadRequest || strings.Contains(b, `id="audit-results"`) {
		t.Fatalf("an NHS number in the search's address: %d", r.StatusCode)
	}
	r, _ = c.Get(g.base + "/console/audit/export?format=csv&subject=" + child)
	body(t, r)
	if r.StatusCode != http.StatusBadRequest {
		t.Fatalf("an NHS number in the export's address: %d", r.StatusCode)
	}

	// Another session cannot use the reference.
	other, _ := signedIn("ig-0001", "ig_lead")
	for _, p := range []string{refs["report"], refs["team"], loc} {
		r, _ = other.Get(g.base + p)
		if b := body(t, r); r.StatusCode != http.StatusNotFound && r.StatusCode != http.StatusBadRequest || strings.Contains(b, "999 000 0018") {
			t.Fatalf("another session's reference %s: %d", p, r.StatusCode)
		}
	}
}

// Four eyes: a person who made an override (ig-0001, acting as a social
// worker) and is also an IG lead sees no form to close its review, and
// a form sent anyway is refused by the API; the review stays open.
func TestConsoleFourEyes(t *testing.T) {
	g := startGateway(t)
	r0 := g.as("exley-csc", "ig-0001", "social_worker", "POST", "/v1/decisions", map[string]any{
		"subject": child, "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"},
		"override_ground": "risk_of_significant_harm", "justification": "Seen at a home visit today; the strategy discussion is this afternoon."})
	id, _ := r0["review"].(map[string]any)["id"].(string)
	c := client(t)
	body(t, g.linkSignin(c, "ig-0001", "ig_lead"))
	r, _ := c.Get(g.base + "/console/reviews/" + id)
	page := body(t, r)
	m := csrfField.FindStringSubmatch(page)
	if r.StatusCode != http.StatusOK || m == nil || !strings.Contains(page, "another IG lead must review it (four eyes)") || strings.Contains(page, `id="close-review"`) {
		t.Fatalf("one's own override: %d, form shown %v", r.StatusCode, strings.Contains(page, `id="close-review"`))
	}
	r, _ = c.PostForm(g.base+"/console/reviews/"+id, url.Values{"csrf": {m[1]}, "outcome": {"upheld"}, "note": {"my own"}})
	if b := body(t, r); r.StatusCode != http.StatusForbidden || !strings.Contains(b, "may not review it") {
		t.Fatalf("closing one's own override: %d", r.StatusCode)
	}
	rv := g.as("exley-csc", "ig-1", "ig_lead", "GET", "/v1/reviews/"+id, nil)["review"].(map[string]any)
	if rv["status"] != "open" {
		t.Fatalf("the review after a refused self-review: %v", rv["status"])
	}
	// A second IG lead closes it.
	c2 := client(t)
	body(t, g.linkSignin(c2, "ig-1", "ig_lead"))
	r, _ = c2.Get(g.base + "/console/reviews/" + id)
	m = csrfField.FindStringSubmatch(body(t, r))
	r, _ = c2.PostForm(g.base+"/console/reviews/"+id, url.Values{"csrf": {m[1]}, "outcome": {"upheld"}, "note": {"checked the minutes"}})
	body(t, r)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("a second IG lead closes it: %d", r.StatusCode)
	}
}
