package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// session is one signed-in person.
type session struct {
	id       string // the cookie's secret value
	publicID string // names the session in audit entries: a hash of id
	csrf     string // the token every form carries

	Partner      string
	PartnerName  string
	Practitioner string
	// Role is the role the person acts in (one of Roles); empty until
	// chosen when the agency asserted several.
	Role   string
	Roles  []string
	Method string // how they signed in: "oidc <issuer>" or "development link"

	created  time.Time
	lastSeen time.Time

	// refs name the children this person asked about, so that no console
	// address carries an NHS number (child.go).
	refs childRefs
}

// sessions holds sessions in memory (a restart signs everyone out).
type sessions struct {
	mu       sync.Mutex
	now      func() time.Time
	idle     time.Duration
	absolute time.Duration
	max      int
	byID     map[string]*session
}

func newSessions(now func() time.Time, idle, absolute time.Duration, max int) *sessions {
	return &sessions{now: now, idle: idle, absolute: absolute, max: max, byID: map[string]*session{}}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// create starts a session for s (its identity fields set) and returns it.
func (ss *sessions) create(s *session) *session {
	now := ss.now()
	s.id = randomHex(32)
	sum := sha256.Sum256([]byte(s.id))
	s.publicID = hex.EncodeToString(sum[:8])
	s.csrf = randomHex(32)
	s.created, s.lastSeen = now, now
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweep(now)
	if len(ss.byID) >= ss.max {
		var oldest *session
		for _, o := range ss.byID {
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		delete(ss.byID, oldest.id)
	}
	ss.byID[s.id] = s
	return s
}

// get returns the live session with id, touching it; nil if there is
// none or it timed out.
func (ss *sessions) get(id string) *session {
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[id]
	if s == nil {
		return nil
	}
	if ss.expired(s, now) {
		delete(ss.byID, id)
		return nil
	}
	s.lastSeen = now
	return s
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.lastSeen) >= ss.idle || now.Sub(s.created) >= ss.absolute
}

func (ss *sessions) sweep(now time.Time) {
	for id, s := range ss.byID {
		if ss.expired(s, now) {
			delete(ss.byID, id)
		}
	}
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, id)
}

// cookieName is the session cookie's name: __Host- prefixed when Secure,
// so that no other host or path can set or read it.
func (c *Console) cookieName(base string) string {
	if c.opts.Secure {
		return "__Host-" + base
	}
	return base
}

// setCookie sets a console cookie: HttpOnly, SameSite=Lax (the OIDC
// callback is a top-level navigation from the provider's site, which a
// Strict cookie would not survive; every form carries a CSRF token
// besides), Secure off loopback, path / (required by __Host-).
func (c *Console) setCookie(w http.ResponseWriter, base, value string, maxAge time.Duration) {
	ck := &http.Cookie{Name: c.cookieName(base), Value: value, Path: "/", HttpOnly: true, Secure: c.opts.Secure, SameSite: http.SameSiteLaxMode}
	if maxAge < 0 {
		ck.MaxAge = -1
	} else if maxAge > 0 {
		ck.MaxAge = int(maxAge.Seconds())
	}
	http.SetCookie(w, ck)
}

const sessionCookie = "trustgate_console"

// current returns the request's live session, if any.
func (c *Console) current(r *http.Request) *session {
	ck, err := r.Cookie(c.cookieName(sessionCookie))
	if err != nil {
		return nil
	}
	return c.sessions.get(ck.Value)
}

// checkCSRF accepts a state-changing form only with the session's token
// and, when the browser says where it comes from, from the console's own
// origin.
func (c *Console) checkCSRF(r *http.Request, s *session) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" && c.opts.PublicURL != "" {
		if u, err := url.Parse(o); err != nil || u.Scheme+"://"+u.Host != c.opts.PublicURL {
			return false
		}
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// pageFunc draws one page for a signed-in person.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session)

// person admits only a signed-in person (with a role chosen, when
// needRole) and checks the CSRF token of every POST.
func (c *Console) person(f pageFunc, needRole bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		s := c.current(r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, Prefix+"signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.render(w, r, http.StatusUnauthorized, "error", nil, map[string]any{"Title": "Signed out", "Message": "Your session has ended. Sign in again, then repeat what you were doing."})
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if !c.checkCSRF(r, s) {
				c.render(w, r, http.StatusForbidden, "error", s, map[string]any{"Title": "Form refused", "Message": "This form did not come from your console session (its security token is missing or wrong). Go back, reload the page and try again."})
				return
			}
		}
		if needRole && s.Role == "" {
			http.Redirect(w, r, Prefix+"role", http.StatusSeeOther)
			return
		}
		f(w, r, s)
	})
}

// maxForm bounds a console form (a draft protocol travels in one).
const maxForm = 1 << 20

func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if s := c.current(r); s != nil && c.checkCSRF(r, s) {
		c.sessions.end(s.id)
	}
	c.setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r, Prefix+"signin?signed_out=1", http.StatusSeeOther)
}
