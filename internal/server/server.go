package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/consent"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/nhs"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/revision"
)

// Authenticator verifies an agency bearer token.
type Authenticator interface {
	Verify(ctx context.Context, raw string) (*identity.Claims, error)
}

// AuditLog is where every request is recorded before it is answered.
// Append must not return until the entry is durable.
type AuditLog interface {
	Append(ctx context.Context, e *audit.Entry) (seq uint64, hash string, err error)
}

// KeyStore is what the server needs of the gateway's keys.
type KeyStore interface {
	Pseudonym(ctx context.Context, subject string) (string, error)
	PublicKeys(ctx context.Context) (jwk.Set, error)
	Ready(ctx context.Context) error
}

// Revisions yields the active revision.
type Revisions interface {
	Current() *revision.Revision
}

// ConsentSource gives the consent records that bear on a subject (by
// pseudonym). Optional: without one, no consent is on record.
type ConsentSource interface {
	ForDecision(ctx context.Context, subject string) ([]policy.Consent, error)
}

// Check is one readiness probe.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Options configure the server.
type Options struct {
	MaxBodyBytes int64
	KeyTimeout   time.Duration
	EvalTimeout  time.Duration
	// DecisionMemo bounds the decisions of the active revision remembered
	// (decision.Memo); 0: every decision is evaluated (the Trust-level part still remembered).
	DecisionMemo     int
	MinJustification int
	GatewayID        string // the issuer named in consent receipts
	// SnapshotTimeout bounds streaming a copy of the audit log (audit.go);
	// ReviewWithin is how soon an override must be reviewed (audit stats).
	SnapshotTimeout time.Duration
	ReviewWithin    time.Duration
	// MaxCaseloadBytes bounds a caseload sync's body (PUT /v1/caseload);
	// ActiveFor is how long an involvement stays active unless renewed
	// (shown as its renew_by).
	MaxCaseloadBytes int64
	ActiveFor        time.Duration
	Now              func() time.Time
	Logger           *slog.Logger
	// Observer is told stage latencies and answered requests (metrics);
	// nil: no one (observe.go).
	Observer Observer
}

// Deps are the parts the server is wired to.
type Deps struct {
	Auth      Authenticator
	Audit     AuditLog
	Keys      KeyStore
	Revisions Revisions
	Consents  ConsentSource // may be nil
	Ready     []Check

	// Consent broker (consents.go, reviews.go). When nil, the consent and
	// review endpoints answer 503, and so does an overriding decision.
	Signer       Signer
	ConsentStore ConsentStore
	Reviews      ReviewStore

	// Record mediation (share.go). When nil, share requests, notification
	// reads and lead professional updates answer 503.
	Records RecordFetcher
	Notices Notices
	// Involvement says which agencies are involved with a child (lead
	// professionals, notifications); nil: the protocols in force answer.
	Involvement Involvement

	// Auditors' endpoints (audit.go). When nil, they are not served.
	AuditQuery  AuditQuery
	Checkpoints Checkpointer
	// Notary gives checkpoints as witnessable notes and collects their
	// cosignatures (witness.go). When nil, those endpoints are not served.
	Notary Notary

	// Policy lifecycle (lifecycle.go): GET /v1/policies, reload, status,
	// what-if. When nil, the admin endpoints answer 503.
	Lifecycle Lifecycle
	WhatIf    WhatIfRunner

	// The involvement index (index.go). When nil, its endpoints answer 503.
	Index Index

	// Backup is the data directory's files, for GET /v1/admin/backup
	// (backup.go); empty: not served.
	Backup []BackupFile
}

// Server serves the gateway's HTTP API.
type Server struct {
	opts Options
	deps Deps
	log  *slog.Logger
	obs  Observer

	// The decision memo of the active revision (decisions.go, evaluate).
	memoMu  sync.Mutex
	memo    atomic.Pointer[revisionMemo]
	prefill context.Context // PrefillTrust's; nil: no prefill (under memoMu)
}

// New returns a Server.
func New(opts Options, deps Deps) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.KeyTimeout <= 0 {
		opts.KeyTimeout = 2 * time.Second
	}
	if opts.EvalTimeout <= 0 {
		opts.EvalTimeout = 2 * time.Second
	}
	if opts.MinJustification <= 0 {
		opts.MinJustification = 40
	}
	if opts.SnapshotTimeout <= 0 {
		opts.SnapshotTimeout = 10 * time.Minute
	}
	if opts.MaxCaseloadBytes <= 0 {
		opts.MaxCaseloadBytes = 64 << 20
	}
	if opts.ReviewWithin <= 0 {
		opts.ReviewWithin = 5 * 24 * time.Hour
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	return &Server{opts: opts, deps: deps, log: opts.Logger, obs: opts.Observer}
}

// Handler returns the routed handler.
func (s *Server) Handler() http.Handler { return s.router() }

// router is every route; docs/openapi.yaml lists the same /v1 ones
// (openapi_test.go).
func (s *Server) router() *mux.Router {
	r := mux.NewRouter()
	r.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet)
	r.HandleFunc("/readyz", s.readyz).Methods(http.MethodGet)
	r.HandleFunc("/.well-known/jwks.json", s.jwks).Methods(http.MethodGet)

	v1 := r.PathPrefix("/v1").Subrouter()
	v1.Handle("/decisions", s.audited(s.postDecision)).Methods(http.MethodPost)
	v1.Handle("/protocols", s.audited(s.listProtocols)).Methods(http.MethodGet)
	v1.Handle("/consents", s.audited(s.postConsent)).Methods(http.MethodPost)
	v1.Handle("/consents/{id}/withdraw", s.audited(s.postWithdrawal)).Methods(http.MethodPost)
	v1.Handle("/subjects/{nhs}/consents", s.audited(s.listConsents)).Methods(http.MethodGet)
	v1.Handle("/reviews", s.audited(s.listReviews)).Methods(http.MethodGet)
	v1.Handle("/reviews/summary", s.audited(s.reviewSummary)).Methods(http.MethodGet)
	v1.Handle("/reviews/{id}", s.audited(s.getReview)).Methods(http.MethodGet)
	v1.Handle("/reviews/{id}", s.audited(s.postReview)).Methods(http.MethodPost)
	s.shareRoutes(v1)
	s.auditRoutes(v1)
	s.lifecycleRoutes(v1)
	s.indexRoutes(v1)    // index.go
	s.contractRoutes(v1) // openapi.go
	s.backupRoutes(v1)   // backup.go
	// A /v1 path that is not a route, or a route asked with another
	// method, is answered (404, or 405 with Allow) and audited like any
	// other /v1 request; paths are never cleaned or redirected (SkipClean),
	// so /v1/protocols/../audit/entries is simply not found.
	unrouted := s.audited(func(x *exchange) (int, any, error) {
		if allow := allowedMethods(r, x.r); len(allow) > 0 {
			return 0, nil, methodNotAllowed(x.w, x.r, allow)
		}
		return 0, nil, notFound("no such endpoint: " + x.r.Method + " " + x.r.URL.Path)
	})
	v1.NotFoundHandler, v1.MethodNotAllowedHandler = unrouted, unrouted
	top := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// A path that a cleaning router would take into /v1 (//v1/…,
		// /./v1/…, /x/../v1/…) is a /v1 request too: answered 404 and
		// audited, never cleaned.
		if cleaned := path.Clean(req.URL.Path); cleaned == "/v1" || strings.HasPrefix(cleaned, "/v1/") || strings.HasPrefix(req.URL.Path, "/v1/") {
			unrouted.ServeHTTP(w, req)
			return
		}
		if allow := allowedMethods(r, req); len(allow) > 0 {
			_, eb, _ := classify(methodNotAllowed(w, req, allow))
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": eb})
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"error": errorBody{Code: "not_found", Message: "no such endpoint"}})
	})
	r.NotFoundHandler, r.MethodNotAllowedHandler = top, top
	r.SkipClean(true)
	return r
}

// exchange is one /v1 request in flight and the audit entry it will leave.
type exchange struct {
	r      *http.Request
	w      http.ResponseWriter // for response headers only (Allow, Connection)
	ctx    context.Context
	id     string
	claims *identity.Claims
	grant  authz.Grant // what the caller may do as whom (authz.go)
	rev    *revision.Revision
	entry  audit.Entry
	log    *slog.Logger
	// undo reverses, newest first, state changes made by the handler when
	// the audit entry cannot be written (the caller gets 503).
	undo []func(context.Context) error
	// after run, in order, once the audit entry is durable and before the
	// answer is written (share.go releases held notifications).
	after []func(context.Context)
	// review is the IG review item an overriding decision opened.
	review *consent.Review
	// child is the NHS number (normalised) of the child the request
	// names, once a handler has seen a valid one (noteChild): whatever
	// check then rejects the request, its entry is indexed under the
	// child (indexUnderChild).
	child string
}

// noteChild records raw as the child the request names if it is a valid
// NHS number and none was noted before.
func (x *exchange) noteChild(raw string) {
	if x.child == "" && raw != "" {
		if n, err := nhs.Normalize(raw); err == nil {
			x.child = n
		}
	}
}

// indexUnderChild gives an entry that names no subject the pseudonym of
// the child the request named (in the body, or as the {nhs} of the
// route), so that every request about a child, whichever check rejected
// it, appears in the child's access report. An unauthenticated request
// is not read for a child (no key-store work for anonymous callers). If
// the key store cannot pseudonymise now, the entry goes without (it is
// still recorded).
func (s *Server) indexUnderChild(x *exchange) {
	if x.entry.Subject != "" || x.claims == nil {
		return
	}
	x.noteChild(mux.Vars(x.r)["nhs"])
	if x.child == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.ctx), s.opts.KeyTimeout)
	defer cancel()
	p, err := s.deps.Keys.Pseudonym(ctx, x.child)
	if err != nil {
		x.log.Warn("rejected request not indexed under its child: pseudonym unavailable", "err", err)
		return
	}
	x.entry.Subject = p
}

// onAuditFailure registers f to undo a state change if the request's audit
// entry cannot be written.
func (x *exchange) onAuditFailure(f func(context.Context) error) { x.undo = append(x.undo, f) }

// afterAudit registers f to run once the request's audit entry is durable.
func (x *exchange) afterAudit(f func(context.Context)) { x.after = append(x.after, f) }

// handlerFunc handles an authenticated /v1 request. It returns the status
// and body of a successful answer, or an error that classify maps.
type handlerFunc func(x *exchange) (status int, body any, err error)

// audited authenticates the caller, runs h, records the audit entry
// durably and only then writes the answer.
func (s *Server) audited(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.opts.Now()
		// Tell the log an append is on its way, so that under load the
		// group commit waits for it (audit.Log.Coming).
		arrived := func() {}
		if c, ok := s.deps.Audit.(interface{ Coming() func() }); ok {
			arrived = c.Coming()
		}
		defer arrived()
		id := newRequestID()
		x := &exchange{r: r, w: w, ctx: r.Context(), id: id, log: s.log.With("request_id", id)}
		x.entry = audit.Entry{Time: start.UTC(), RequestID: id, Method: r.Method, Path: auditPath(r.URL.Path)}
		w.Header().Set("X-Request-Id", id)

		status, body, err := s.run(x, h)
		if err != nil {
			st, eb, kind := classify(err)
			status, body = st, map[string]any{"request_id": id, "error": eb}
			if x.entry.Kind == "" || x.entry.Kind == audit.KindDecision || x.entry.Kind == audit.KindAccess {
				x.entry.Kind = kind
			}
			x.entry.Error = eb.Message
			if status >= 500 {
				x.log.Error("request failed", "status", status, "code", eb.Code, "err", err)
			}
		}
		x.entry.Status = status
		s.indexUnderChild(x)
		redactEntry(&x.entry)
		// The audit append gets its own deadline, detached from the caller:
		// a caller hanging up must not leave a decision unrecorded.
		actx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		t0 := time.Now()
		arrived()
		seq, _, aerr := s.deps.Audit.Append(actx, &x.entry)
		s.timed(stageAuditAppend, t0)
		cancel()
		if aerr != nil {
			x.log.Error("audit append failed; answering 503", "err", aerr)
			s.undo(r.Context(), x)
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"request_id": id, "error": auditUnavailable})
			s.observe(x, http.StatusServiceUnavailable, start)
			return
		}
		for _, f := range x.after {
			f(context.WithoutCancel(r.Context()))
		}
		if m, ok := body.(map[string]any); ok && status < 300 {
			m["audit_seq"] = seq
		}
		writeJSON(w, status, body)
		s.observe(x, status, start)
		x.log.Debug("request", "method", r.Method, "path", x.entry.Path, "status", status, "kind", x.entry.Kind,
			"latency_ms", float64(s.opts.Now().Sub(start).Microseconds())/1000)
	})
}

func (s *Server) run(x *exchange, h handlerFunc) (int, any, error) {
	if smuggled(x.r) {
		x.w.Header().Set("Connection", "close")
		return 0, nil, errSmuggled
	}
	if c, ok := principal(x.ctx); ok { // the console, in-process (principal.go)
		if x.rev = s.deps.Revisions.Current(); x.rev == nil {
			return 0, nil, errNoRevision
		}
		if err := checkPrincipal(x, c); err != nil {
			return 0, nil, err
		}
		return s.runAs(x, h, c)
	}
	raw, err := identity.ExtractBearer(x.r)
	if err != nil {
		x.entry.Kind = audit.KindAuthFailure
		return 0, nil, err
	}
	// One revision for the whole request: the token is verified against
	// the registry of the revision the request is then decided under.
	x.rev = s.deps.Revisions.Current()
	if x.rev == nil {
		return 0, nil, errNoRevision
	}
	t0 := time.Now()
	claims, err := s.deps.Auth.Verify(identity.WithDirectory(x.ctx, x.rev.Registry), raw)
	s.timed(stageToken, t0)
	if err != nil {
		x.entry.Kind = audit.KindAuthFailure
		var ae *identity.AuthError
		if errors.As(err, &ae) {
			// Who claimed to ask (marked unverified unless the signature held).
			x.entry.Requester, x.entry.Practitioner, x.entry.TokenID = ae.Issuer, ae.Subject, ae.JTI
			if !ae.Verified && ae.Issuer != "" {
				x.entry.Requester = "unverified:" + ae.Issuer
			}
		}
		return 0, nil, err
	}
	return s.runAs(x, h, claims)
}

// runAs runs h as the authenticated caller claims (a verified token, or
// the console's in-process principal: principal.go), once authorised.
func (s *Server) runAs(x *exchange, h handlerFunc, claims *identity.Claims) (int, any, error) {
	var err error
	x.entry.Requester, x.entry.Practitioner, x.entry.Role, x.entry.TokenID = claims.Partner, claims.Practitioner, claims.Role, claims.JTI
	if x.grant, err = authorize(x.rev, claims, x.entry.Time); err != nil {
		x.entry.Kind = audit.KindAuthFailure
		return 0, nil, err
	}
	x.claims = claims
	x.log = x.log.With("partner", claims.Partner)
	x.entry.PolicyRevision = x.rev.Hash()
	return h(x)
}

func newRequestID() string {
	return nhs.FreeOf(func() string {
		var b [12]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	if sb, ok := body.(streamBody); ok { // audit.go: a snapshot
		sb(w, status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(body)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ready := true
	if s.deps.Revisions.Current() == nil {
		checks["policy"] = "no revision loaded"
		ready = false
	} else {
		checks["policy"] = "ok"
	}
	for _, c := range s.deps.Ready {
		if err := c.Fn(ctx); err != nil {
			checks[c.Name] = err.Error()
			ready = false
		} else {
			checks[c.Name] = "ok"
		}
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ready, "checks": checks})
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.KeyTimeout)
	defer cancel()
	set, err := s.deps.Keys.PublicKeys(ctx)
	if err != nil {
		_, eb, _ := classify(err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": eb})
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(set)
}
