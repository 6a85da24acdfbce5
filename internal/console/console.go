package console

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/registry"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Prefix is where the console is served.
const Prefix = "/console/"

// AuditLog records people's sign-ins (the /v1 calls record themselves).
type AuditLog interface {
	Append(ctx context.Context, e *audit.Entry) (seq uint64, hash string, err error)
}

// LinkVerifier verifies a development sign-in link's token: an agency
// token for the console's audience (identity.Verifier).
type LinkVerifier interface {
	Verify(ctx context.Context, raw string) (*identity.Claims, error)
}

// Options configure the console.
type Options struct {
	// PublicURL is the gateway's origin as browsers reach it, e.g.
	// http://127.0.0.1:8080 (the OIDC redirect URI is built from it).
	PublicURL string
	// Secure marks cookies Secure (the gateway serves TLS, or is reached
	// by https). Cookies are __Host- prefixed then.
	Secure          bool
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	// HTTPTimeout bounds each call to an agency's OpenID provider.
	HTTPTimeout time.Duration
	// MaxSessions bounds the sessions held; the oldest go first.
	MaxSessions int
	Now         func() time.Time
	Logger      *slog.Logger
}

// Deps are what the console is wired to.
type Deps struct {
	// API is the gateway's own handler: /v1 requests are served by it
	// in-process with the session's principal.
	API http.Handler
	// Registry gives the serving registry (agencies, their OIDC providers,
	// vocabularies; a draft protocol is linted against it).
	Registry func() *registry.Registry
	Audit    AuditLog
	// Authorize says whether partner's practitioner may act in role now
	// (the serving revision's authorisation: the roles the agency may
	// assert and the appointments in force, internal/authz); nil error:
	// yes. A person's roles in the console are the roles their agency
	// asserts and the appointed roles an appointment gives them, each
	// passing this check.
	Authorize func(partner, practitioner, role string, at time.Time) error
	// Links verifies development sign-in links; nil: they are off.
	Links LinkVerifier
	// HTTPClient reaches the agencies' OpenID providers (default: a
	// client with Options.HTTPTimeout).
	HTTPClient *http.Client
}

// Console serves /console/.
type Console struct {
	opts     Options
	deps     Deps
	log      *slog.Logger
	pages    map[string]*template.Template
	sessions *sessions
	oidc     *signins
	mux      *http.ServeMux
}

// New returns a Console.
func New(opts Options, deps Deps) (*Console, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.AbsoluteTimeout <= 0 {
		opts.AbsoluteTimeout = 8 * time.Hour
	}
	if opts.HTTPTimeout <= 0 {
		opts.HTTPTimeout = 10 * time.Second
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 10_000
	}
	opts.PublicURL = strings.TrimSuffix(opts.PublicURL, "/")
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{Timeout: opts.HTTPTimeout}
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{opts: opts, deps: deps, log: opts.Logger, pages: pages,
		sessions: newSessions(opts.Now, opts.IdleTimeout, opts.AbsoluteTimeout, opts.MaxSessions)}
	c.oidc = newSignins(c)
	c.routes()
	return c, nil
}

// Wrap returns a handler that serves the console under /console/ and
// passes every other request to next (the gateway's API).
func (c *Console) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/console" || strings.HasPrefix(r.URL.Path, Prefix) {
			c.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP serves a console request with the console's security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // no referrer leaves the console; same-origin forms carry their Origin
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if c.opts.Secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	c.mux.ServeHTTP(w, r)
}

func (c *Console) routes() {
	m := http.NewServeMux()
	assets, _ := fs.Sub(assetFS, "assets")
	static := http.StripPrefix(Prefix+"assets/", http.FileServerFS(assets))
	m.Handle("GET "+Prefix+"assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		static.ServeHTTP(w, r)
	}))
	m.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	})
	m.HandleFunc("GET "+Prefix+"signin", c.signinPage)
	m.HandleFunc("GET "+Prefix+"signin/{partner}", c.oidc.start)
	m.HandleFunc("GET "+Prefix+"callback", c.oidc.callback)
	m.HandleFunc("GET "+Prefix+"link", c.linkPage)
	m.HandleFunc("POST "+Prefix+"link", c.linkSignin)
	m.HandleFunc("POST "+Prefix+"signout", c.signout)
	m.Handle("GET "+Prefix+"role", c.person(c.rolePage, false))
	m.Handle("POST "+Prefix+"role", c.person(c.chooseRole, false))

	m.Handle("GET "+Prefix+"{$}", c.person(c.overview, true))
	m.Handle("GET "+Prefix+"reviews", c.person(c.reviews, true))
	m.Handle("GET "+Prefix+"reviews/{id}", c.person(c.review, true))
	m.Handle("POST "+Prefix+"reviews/{id}", c.person(c.closeReview, true))
	m.Handle("GET "+Prefix+"protocols", c.person(c.protocols, true))
	m.Handle("POST "+Prefix+"protocols/draft", c.person(c.draft, true))
	m.Handle("GET "+Prefix+"audit", c.person(c.auditSearch, true))
	m.Handle("POST "+Prefix+"audit", c.person(c.auditAsk, true))
	m.Handle("GET "+Prefix+"audit/export", c.person(c.auditExport, true))
	m.Handle("GET "+Prefix+"audit/entries/{seq}", c.person(c.auditEntry, true))
	m.Handle("GET "+Prefix+"child", c.person(c.childForm, true))
	m.Handle("POST "+Prefix+"child", c.person(c.childAsk, true))
	m.Handle("GET "+Prefix+"child/{ref}", c.person(c.childReport, true))
	m.Handle("GET "+Prefix+"child/{ref}/team", c.person(c.childTeam, true))
	m.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "error", c.current(r), map[string]any{"Title": "Not found", "Message": "There is no such page in the console."})
	})
	c.mux = m
}
