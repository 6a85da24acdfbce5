package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/nhs"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// signins runs the OpenID Connect sign-in of people (authorization code
// with PKCE, RFC 7636; nonce and state), one provider per agency as the
// registry names it.
type signins struct {
	c         *Console
	mu        sync.Mutex
	providers map[string]*oidc.Provider // by issuer, once discovered
	pending   map[string]*pendingSignin // by state
}

// pendingSignin is a sign-in between the redirect to the provider and
// its callback. It is used once.
type pendingSignin struct {
	partner  string
	verifier string // the PKCE code verifier
	nonce    string
	next     string
	created  time.Time
}

// signinWindow is how long a person has at their provider.
const signinWindow = 10 * time.Minute

// maxPending bounds the sign-ins in flight.
const maxPending = 10_000

const stateCookie = "trustgate_console_signin"

func newSignins(c *Console) *signins {
	return &signins{c: c, providers: map[string]*oidc.Provider{}, pending: map[string]*pendingSignin{}}
}

func (g *signins) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, g.c.deps.HTTPClient)
}

// provider discovers (once) the OpenID provider of an agency.
func (g *signins) provider(ctx context.Context, o *registry.OIDC) (*oidc.Provider, error) {
	g.mu.Lock()
	p := g.providers[o.Issuer]
	g.mu.Unlock()
	if p != nil {
		return p, nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.c.opts.HTTPTimeout)
	defer cancel()
	p, err := oidc.NewProvider(g.ctx(ctx), o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover %s: %w", o.Issuer, err)
	}
	g.mu.Lock()
	g.providers[o.Issuer] = p
	g.mu.Unlock()
	return p, nil
}

func (g *signins) oauth(p *oidc.Provider, o *registry.OIDC) *oauth2.Config {
	return &oauth2.Config{
		ClientID:    o.ClientID,
		Endpoint:    p.Endpoint(),
		RedirectURL: g.c.opts.PublicURL + Prefix + "callback",
		Scopes:      []string{oidc.ScopeOpenID, "profile"},
	}
}

// agency returns the partner id's registry entry with its OIDC provider.
func (c *Console) agency(id string) (*registry.Partner, error) {
	p, ok := c.deps.Registry().Partner(id)
	if !ok {
		return nil, fmt.Errorf("%q is not an agency of the Trust", id)
	}
	if p.OIDC == nil {
		return nil, fmt.Errorf("%s has no sign-in provider in the registry", p.Name)
	}
	return p, nil
}

// start handles GET /console/signin/{partner}: off to the agency's
// provider.
func (g *signins) start(w http.ResponseWriter, r *http.Request) {
	c := g.c
	p, err := c.agency(r.PathValue("partner"))
	if err != nil {
		c.signinError(w, r, http.StatusNotFound, err.Error())
		return
	}
	prov, err := g.provider(r.Context(), p.OIDC)
	if err != nil {
		c.log.Warn("console: OpenID provider unreachable", "partner", p.ID, "err", err)
		c.signinError(w, r, http.StatusBadGateway, p.Name+"'s sign-in service cannot be reached just now. Try again in a minute, or ask your IT service desk.")
		return
	}
	ps := &pendingSignin{partner: p.ID, verifier: oauth2.GenerateVerifier(), nonce: nhs.FreeOf(func() string { return randomHex(16) }), next: localNext(r.URL.Query().Get("next")), created: c.opts.Now()}
	// The state and nonce travel in addresses: never an NHS number.
	state := nhs.FreeOf(func() string { return randomHex(16) })
	g.mu.Lock()
	for k, v := range g.pending {
		if c.opts.Now().Sub(v.created) > signinWindow {
			delete(g.pending, k)
		}
	}
	if len(g.pending) >= maxPending {
		g.mu.Unlock()
		c.signinError(w, r, http.StatusServiceUnavailable, "Too many sign-ins are in progress. Try again in a minute.")
		return
	}
	g.pending[state] = ps
	g.mu.Unlock()
	// The state is also bound to this browser: the callback must come
	// back to the browser that set off.
	c.setCookie(w, stateCookie, state, signinWindow)
	http.Redirect(w, r, g.oauth(prov, p.OIDC).AuthCodeURL(state, oidc.Nonce(ps.nonce), oauth2.S256ChallengeOption(ps.verifier)), http.StatusFound)
}

// callback handles GET /console/callback from the agency's provider.
func (g *signins) callback(w http.ResponseWriter, r *http.Request) {
	c := g.c
	q := r.URL.Query()
	state := q.Get("state")
	ck, err := r.Cookie(c.cookieName(stateCookie))
	c.setCookie(w, stateCookie, "", -1)
	g.mu.Lock()
	ps := g.pending[state]
	delete(g.pending, state)
	g.mu.Unlock()
	switch {
	case state == "" || ps == nil:
		c.signinError(w, r, http.StatusBadRequest, "This sign-in is unknown or was already used. Start again from the sign-in page.")
		return
	case err != nil || ck.Value != state:
		c.signinError(w, r, http.StatusBadRequest, "This sign-in was started in another browser. Start again from the sign-in page.")
		return
	case c.opts.Now().Sub(ps.created) > signinWindow:
		c.signinError(w, r, http.StatusBadRequest, "This sign-in took too long. Start again from the sign-in page.")
		return
	}
	fail := func(status int, msg string, cause error) {
		c.auditSignin(r, &audit.Entry{Kind: audit.KindAuthFailure, Requester: "unverified:" + ps.partner, Status: status, Error: clipText(msg + ": " + errText(cause))})
		c.signinError(w, r, status, msg)
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, "Your agency's sign-in service did not sign you in", errors.New(clipText(e+" "+q.Get("error_description"))))
		return
	}
	p, err := c.agency(ps.partner)
	if err != nil {
		fail(http.StatusBadRequest, "Your agency no longer has a sign-in provider", err)
		return
	}
	prov, err := g.provider(r.Context(), p.OIDC)
	if err != nil {
		fail(http.StatusBadGateway, "Your agency's sign-in service cannot be reached", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.opts.HTTPTimeout)
	defer cancel()
	tok, err := g.oauth(prov, p.OIDC).Exchange(g.ctx(ctx), q.Get("code"), oauth2.VerifierOption(ps.verifier))
	if err != nil {
		fail(http.StatusUnauthorized, "Your agency's sign-in service refused the sign-in code", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail(http.StatusUnauthorized, "Your agency's sign-in service sent no ID token", nil)
		return
	}
	idt, err := prov.Verifier(&oidc.Config{ClientID: p.OIDC.ClientID, SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256, oidc.EdDSA}, Now: c.opts.Now}).Verify(ctx, raw)
	if err != nil {
		fail(http.StatusUnauthorized, "The ID token from your agency's sign-in service does not verify", err)
		return
	}
	if idt.Nonce != ps.nonce {
		fail(http.StatusUnauthorized, "The ID token is not for this sign-in", errors.New("nonce mismatch"))
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		fail(http.StatusUnauthorized, "The ID token's claims cannot be read", err)
		return
	}
	practitioner := idt.Subject
	if name := p.OIDC.PractitionerClaim; name != "" && name != "sub" {
		practitioner, _ = claims[name].(string)
	}
	if practitioner == "" || len(practitioner) > 128 {
		fail(http.StatusUnauthorized, "The ID token does not name you as a practitioner", errors.New("no practitioner claim"))
		return
	}
	roles := c.rolesOf(p.ID, practitioner, claimedRoles(claims[cmpOr(p.OIDC.RolesClaim, "roles")], c.deps.Registry()))
	if len(roles) == 0 {
		c.auditSignin(r, &audit.Entry{Kind: audit.KindAuthFailure, Requester: p.ID, Practitioner: practitioner, Status: http.StatusForbidden, Error: "the ID token names no role of the Trust"})
		c.signinError(w, r, http.StatusForbidden, "You are signed in at "+p.Name+", but it does not say which role of the Trust you hold, and no appointment of the Trust names you, so the console cannot show you anything. Ask your agency's IG lead.")
		return
	}
	c.startSession(w, r, &session{Partner: p.ID, PartnerName: p.Name, Practitioner: practitioner, Roles: roles, Method: "oidc " + p.OIDC.Issuer}, ps.next, "")
}

// claimedRoles reads a roles claim (a string or a list) and keeps the
// roles of the Trust's vocabulary.
func claimedRoles(v any, reg *registry.Registry) []string {
	var names []string
	switch t := v.(type) {
	case string:
		names = strings.Fields(t)
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok {
				names = append(names, s)
			}
		}
	}
	var out []string
	for _, n := range names {
		if reg.HasRole(n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// rolesOf is a person's roles: those their agency asserts and every
// appointed role of the Trust, each kept only if the authorisation of the
// serving revision lets this practitioner of partner act in it now (an
// agency may assert only the roles it may hold; an appointed role needs
// an appointment in force naming them).
func (c *Console) rolesOf(partner, practitioner string, asserted []string) []string {
	cands := append([]string(nil), asserted...)
	for _, r := range c.deps.Registry().Roles() {
		if r.Appointed && !slices.Contains(cands, r.ID) {
			cands = append(cands, r.ID)
		}
	}
	var out []string
	for _, r := range cands {
		if c.deps.Authorize == nil || c.deps.Authorize(partner, practitioner, r, c.opts.Now()) == nil {
			out = append(out, r)
		}
	}
	return out
}

// startSession records the sign-in in the audit log (fail closed: no
// entry, no session) and sets the session cookie.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, s *session, next, tokenID string) {
	if len(s.Roles) == 1 {
		s.Role = s.Roles[0]
	}
	s = c.sessions.create(s)
	e := &audit.Entry{Kind: audit.KindAccess, Requester: s.Partner, Practitioner: s.Practitioner, Role: s.Role, Status: http.StatusSeeOther,
		TokenID: cmpOr(tokenID, "console:"+s.publicID), Reasons: []string{"console sign-in (" + s.Method + ") as " + strings.Join(s.Roles, ", ") + "; session console:" + s.publicID}}
	if err := c.auditSignin(r, e); err != nil {
		c.sessions.end(s.id)
		c.signinError(w, r, http.StatusServiceUnavailable, "The gateway cannot write its audit log just now, so nobody can sign in. Try again later.")
		return
	}
	c.setCookie(w, sessionCookie, s.id, 0)
	if s.Role == "" {
		next = Prefix + "role?next=" + url.QueryEscape(next)
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) auditSignin(r *http.Request, e *audit.Entry) error {
	e.Time, e.RequestID, e.Method, e.Path = c.opts.Now().UTC(), randomHex(12), r.Method, r.URL.Path
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	_, _, err := c.deps.Audit.Append(ctx, e)
	if err != nil {
		c.log.Error("console: sign-in audit entry not written", "err", err)
	}
	return err
}

// localNext keeps a post-sign-in destination only if it is a console page.
func localNext(next string) string {
	if strings.HasPrefix(next, Prefix) && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return Prefix
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	type agency struct{ ID, Name string }
	var list []agency
	for _, p := range c.deps.Registry().Partners() {
		if p.OIDC != nil {
			list = append(list, agency{p.ID, p.Name})
		}
	}
	c.render(w, r, http.StatusOK, "signin", c.current(r), map[string]any{
		"Title": "Sign in", "Agencies": list, "Next": localNext(r.URL.Query().Get("next")),
		"SignedOut": r.URL.Query().Has("signed_out"), "DevLinks": c.deps.Links != nil,
	})
}

func (c *Console) signinError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", nil, map[string]any{"Title": "Sign-in failed", "Message": msg, "SigninLink": true})
}

// linkPage handles GET /console/link?t=TOKEN: a development link. It asks
// for a click rather than signing in on the GET, so that a link preview
// or prefetch cannot use the one-time token up.
func (c *Console) linkPage(w http.ResponseWriter, r *http.Request) {
	if c.deps.Links == nil {
		c.signinError(w, r, http.StatusNotFound, "Development sign-in links are turned off on this gateway (console.dev_links).")
		return
	}
	c.render(w, r, http.StatusOK, "link", nil, map[string]any{"Title": "Development sign-in", "Token": r.URL.Query().Get("t")})
}

// linkSignin handles POST /console/link: verify the one-time token (an
// agency token for the console's audience, single use) and sign in.
func (c *Console) linkSignin(w http.ResponseWriter, r *http.Request) {
	if c.deps.Links == nil {
		c.signinError(w, r, http.StatusNotFound, "Development sign-in links are turned off on this gateway (console.dev_links).")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if o := r.Header.Get("Origin"); o != "" && c.opts.PublicURL != "" && o != c.opts.PublicURL {
		c.signinError(w, r, http.StatusForbidden, "This sign-in form did not come from the console.")
		return
	}
	reg := c.deps.Registry()
	claims, err := c.deps.Links.Verify(identity.WithDirectory(r.Context(), reg), r.PostFormValue("t"))
	if err != nil {
		e := &audit.Entry{Kind: audit.KindAuthFailure, Status: http.StatusUnauthorized, Error: clipText("console development link: " + err.Error())}
		var ae *identity.AuthError
		if errors.As(err, &ae) {
			e.Requester, e.Practitioner, e.TokenID = ae.Issuer, ae.Subject, ae.JTI
			if !ae.Verified && ae.Issuer != "" {
				e.Requester = "unverified:" + ae.Issuer
			}
		}
		c.auditSignin(r, e)
		msg := "This sign-in link is not valid: " + errText(err) + "."
		if ae != nil && ae.Code == identity.CodeReplayed {
			msg = "This sign-in link has already been used: each link signs in once. Make a new one with `trustgate console link`."
		} else if ae != nil && ae.Code == identity.CodeExpired {
			msg = "This sign-in link has expired. Make a new one with `trustgate console link`."
		}
		c.signinError(w, r, http.StatusUnauthorized, msg)
		return
	}
	if c.deps.Authorize != nil {
		if err := c.deps.Authorize(claims.Partner, claims.Practitioner, claims.Role, c.opts.Now()); err != nil {
			c.auditSignin(r, &audit.Entry{Kind: audit.KindAuthFailure, Requester: claims.Partner, Practitioner: claims.Practitioner, Role: claims.Role, TokenID: claims.JTI, Status: http.StatusForbidden, Error: clipText("console development link: " + err.Error())})
			c.signinError(w, r, http.StatusForbidden, "This link names "+claims.Practitioner+" as "+claims.Role+", which they may not act as: "+err.Error()+".")
			return
		}
	}
	p, _ := reg.Partner(claims.Partner)
	c.startSession(w, r, &session{Partner: claims.Partner, PartnerName: p.Name, Practitioner: claims.Practitioner, Roles: []string{claims.Role}, Method: "development link"}, Prefix, claims.JTI)
}

func (c *Console) rolePage(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, http.StatusOK, "role", s, map[string]any{"Title": "Choose your role", "Next": localNext(r.URL.Query().Get("next"))})
}

func (c *Console) chooseRole(w http.ResponseWriter, r *http.Request, s *session) {
	role := r.PostFormValue("role")
	if !slices.Contains(s.Roles, role) {
		c.render(w, r, http.StatusBadRequest, "role", s, map[string]any{"Title": "Choose your role", "Error": "Choose one of the roles listed.", "Next": Prefix})
		return
	}
	c.sessions.mu.Lock()
	s.Role = role
	c.sessions.mu.Unlock()
	http.Redirect(w, r, localNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	var ae *identity.AuthError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

func clipText(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
