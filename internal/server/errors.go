package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/policy"
)

// apiError is an error with its HTTP meaning decided where it arose.
type apiError struct {
	Status int
	Code   string
	Field  string
	Reason string
	Kind   audit.Kind
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return e.Code + ": " + e.Field + ": " + e.Reason
	}
	return e.Code + ": " + e.Reason
}

// badRequest is a 400 naming the field and the reason.
func badRequest(field, reason string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Field: field, Reason: reason, Kind: audit.KindRejected}
}

func forbidden(reason string) *apiError {
	return &apiError{Status: http.StatusForbidden, Code: "forbidden", Reason: reason, Kind: audit.KindRejected}
}

func notFound(reason string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "not_found", Reason: reason, Kind: audit.KindRejected}
}

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

// classify maps an error to its status, body and audit kind. It is the
// only place where errors become HTTP statuses.
func classify(err error) (int, errorBody, audit.Kind) {
	var ae *apiError
	var authErr *identity.AuthError
	switch {
	case errors.As(err, &ae):
		msg := ae.Reason
		if ae.Field != "" {
			msg = ae.Field + ": " + ae.Reason
		}
		return ae.Status, errorBody{Code: ae.Code, Field: ae.Field, Reason: ae.Reason, Message: msg}, ae.Kind
	case errors.Is(err, identity.ErrReplayCacheFull):
		return http.StatusServiceUnavailable, errorBody{Code: "replay_cache_full", Message: "the gateway cannot record more token ids right now; retry shortly"}, audit.KindAuthFailure
	case errors.As(err, &authErr):
		return http.StatusUnauthorized, errorBody{Code: "unauthenticated", Reason: authErr.Code, Message: authErr.Message}, audit.KindAuthFailure
	case errors.Is(err, identity.ErrUnauthenticated):
		return http.StatusUnauthorized, errorBody{Code: "unauthenticated", Message: "the token could not be verified"}, audit.KindAuthFailure
	case errors.Is(err, keys.ErrUnavailable):
		return http.StatusServiceUnavailable, errorBody{Code: "keys_unavailable", Message: "the gateway's key store is unavailable; nothing was disclosed"}, audit.KindUnavailable
	case errors.Is(err, policy.ErrEvaluation):
		return http.StatusServiceUnavailable, errorBody{Code: "policy_unavailable", Message: "the policy could not be evaluated; nothing was disclosed"}, audit.KindUnavailable
	case errors.Is(err, errNoRevision):
		return http.StatusServiceUnavailable, errorBody{Code: "policy_unavailable", Message: "no policy revision is loaded; nothing was disclosed"}, audit.KindUnavailable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, errorBody{Code: "timeout", Message: "the request ran out of time; nothing was disclosed"}, audit.KindUnavailable
	default:
		return http.StatusInternalServerError, errorBody{Code: "internal", Message: "internal error; nothing was disclosed"}, audit.KindUnavailable
	}
}

var errNoRevision = errors.New("no policy revision loaded")

// auditUnavailable is the answer when the audit entry could not be written.
var auditUnavailable = errorBody{Code: "audit_unavailable", Message: "the audit trail could not be written; nothing was disclosed"}
