package server

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// Observer is told how requests go, for metrics (internal/metrics). What
// it is given never identifies a child or a practitioner: a route
// template, not the path; a decision's purpose and requesting agency only
// once the request was validated and decided.
type Observer interface {
	Stage(stage string, d time.Duration)
	Request(route, method string, status int, kind, decision, purpose, partner string, d time.Duration)
}

// The stages timed (metrics.Stage*).
const (
	stageToken       = "token"
	stageKeyStore    = "key_store"
	stagePolicy      = "policy"
	stageAuditAppend = "audit_append"
)

type noObserver struct{}

func (noObserver) Stage(string, time.Duration)                                                {}
func (noObserver) Request(string, string, int, string, string, string, string, time.Duration) {}

// timed reports the time since start as stage.
func (s *Server) timed(stage string, start time.Time) { s.obs.Stage(stage, time.Since(start)) }

// observe reports one answered /v1 request.
func (s *Server) observe(x *exchange, status int, start time.Time) {
	route := "unmatched"
	if rt := mux.CurrentRoute(x.r); rt != nil {
		if t, err := rt.GetPathTemplate(); err == nil {
			route = t
		}
	}
	var decision, purpose, partner string
	if x.entry.Kind == audit.KindDecision || x.entry.Kind == audit.KindDisclosure {
		decision, purpose, partner = x.entry.Decision, x.entry.Purpose, x.entry.Requester
	}
	s.obs.Request(route, methodLabel(x.r.Method), status, string(x.entry.Kind), decision, purpose, partner, time.Since(start))
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "other"
}
