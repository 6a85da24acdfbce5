package provider

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
)

// ServerConfig configures the reference provider.
type ServerConfig struct {
	// Partner is the provider's partner id.
	Partner string
	// Records are the children the provider holds.
	Records *Records
	// Tokens verifies decision tokens (audience = Partner).
	Tokens *TokenVerifier
	// Keys and Issuer verify incoming notifications (the same gateway key
	// set and id as the tokens).
	Keys   KeySource
	Issuer string
	// OnNotification, if set, is called once for each new notification id
	// after its signature has been verified (a duplicate delivery is
	// acknowledged but not passed on).
	OnNotification func(*Notification)
	// Logger; default discards.
	Logger *slog.Logger
}

// maxSeen bounds the notification ids remembered for de-duplication.
const maxSeen = 100_000

// Server is the reference provider's HTTP service. Safe for concurrent use.
type Server struct {
	c ServerConfig

	mu   sync.Mutex
	seen map[string]bool
	fifo []string
}

// NewServer returns a Server; it panics on a wiring mistake (no partner,
// records or token verifier).
func NewServer(c ServerConfig) *Server {
	if c.Partner == "" || c.Records == nil || c.Tokens == nil {
		panic("provider: NewServer needs a partner, records and a token verifier")
	}
	if c.Records.Partner() != c.Partner {
		panic("provider: the records are for another partner")
	}
	if c.Issuer == "" {
		c.Issuer = "trustgate"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{c: c, seen: map[string]bool{}}
}

// Handler routes:
//
//	GET  /v1/record         the record the bearer decision token allows
//	POST /v1/notifications  the gateway's signed access notifications
//	GET  /healthz           liveness
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/record", s.record)
	mux.HandleFunc("POST /v1/notifications", s.notification)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "partner": s.c.Partner})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "", "no such endpoint")
	})
	return mux
}

// record answers GET /v1/record. Nothing about the child is looked at
// until the token has been verified, so every refusal is the same
// whether or not the child is known here.
func (s *Server) record(w http.ResponseWriter, r *http.Request) {
	log := s.c.Logger.With("request_id", clip(r.Header.Get("X-Request-Id")))
	raw, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", CodeTokenMissing, "a decision token is required (Authorization: Bearer)")
		return
	}
	claims, err := s.c.Tokens.Verify(r.Context(), raw)
	if err != nil {
		s.refuse(w, log, err)
		return
	}
	log = log.With("jti", claims.ID, "requester", claims.Requester.Partner, "protocol", claims.Protocol.ID)
	rec, ok := s.c.Records.Get(claims.Subject)
	if !ok {
		log.Info("no record held for the child named by the token")
		writeError(w, http.StatusNotFound, "no_record", "", "no record is held for this child")
		return
	}
	out := Minimise(rec, claims.Categories, claims.Fields)
	log.Info("record disclosed to the gateway", "categories", out.CategoryNames(), "fields", len(out.FieldNames()))
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) refuse(w http.ResponseWriter, log *slog.Logger, err error) {
	var te *TokenError
	switch {
	case errors.As(err, &te) && te.Code == CodeReplayCacheFull:
		writeError(w, http.StatusServiceUnavailable, "unavailable", te.Code, te.Message)
	case errors.As(err, &te):
		log.Warn("decision token refused", "reason", te.Code, "detail", te.Message)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", te.Code, te.Message)
	default:
		log.Error("cannot verify tokens", "err", err)
		writeError(w, http.StatusServiceUnavailable, "keys_unavailable", "", "the gateway's keys cannot be fetched; nothing was disclosed")
	}
}

// notification answers POST /v1/notifications: 200 for a verified
// notification (new or a repeat), 401 for one that does not verify.
func (s *Server) notification(w http.ResponseWriter, r *http.Request) {
	log := s.c.Logger
	if s.c.Keys == nil {
		writeError(w, http.StatusNotFound, "not_found", "", "this provider does not receive notifications")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxNotificationBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "", "a notification is at most 64 KiB")
		return
	}
	n, err := VerifyNotification(r.Context(), s.c.Keys, s.c.Issuer, s.c.Partner, strings.TrimSpace(string(body)))
	if err != nil {
		s.refuse(w, log, err)
		return
	}
	if !s.firstSight(n.ID) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "duplicate", "id": n.ID})
		return
	}
	log.Info("access notification", "id", n.ID, "as", n.As, "record_of", n.Provider,
		"requester", n.Requester.Partner, "practitioner", n.Requester.Practitioner, "role", n.Requester.Role,
		"purpose", n.Purpose, "protocol", n.Protocol.ID+" v"+n.Protocol.Version+" "+n.Protocol.Rule,
		"categories", n.Categories, "fields", n.Fields, "at", n.Time)
	if s.c.OnNotification != nil {
		s.c.OnNotification(n)
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "received", "id": n.ID})
}

// firstSight records id and reports whether it was new.
func (s *Server) firstSight(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[id] {
		return false
	}
	s.seen[id] = true
	s.fifo = append(s.fifo, id)
	if len(s.fifo) > maxSeen {
		delete(s.seen, s.fifo[0])
		s.fifo = s.fifo[1:]
	}
	return true
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(body)
}

func writeError(w http.ResponseWriter, status int, code, reason, msg string) {
	e := map[string]string{"code": code, "message": msg}
	if reason != "" {
		e["reason"] = reason
	}
	writeJSON(w, status, map[string]any{"error": e})
}
