package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/consent"
	"github.com/childrens-trust/trustgate/internal/fetch"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/notify"
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
	var ce *consent.Error
	var fe *fetch.Error
	var refusal *authz.Refusal
	switch {
	case errors.As(err, &ae):
		msg := ae.Reason
		if ae.Field != "" {
			msg = ae.Field + ": " + ae.Reason
		}
		return ae.Status, errorBody{Code: ae.Code, Field: ae.Field, Reason: ae.Reason, Message: msg}, ae.Kind
	case errors.As(err, &ce):
		status, code := http.StatusBadRequest, "invalid_request"
		if errors.Is(ce.Kind, consent.ErrNotFound) {
			status, code = http.StatusNotFound, "not_found"
		} else if errors.Is(ce.Kind, consent.ErrConflict) {
			status, code = http.StatusConflict, "conflict"
		}
		msg := ce.Reason
		if ce.Field != "" {
			msg = ce.Field + ": " + ce.Reason
		}
		return status, errorBody{Code: code, Field: ce.Field, Reason: ce.Reason, Message: msg}, audit.KindRejected
	case errors.Is(err, consent.ErrUnavailable), errors.Is(err, errStateUnavailable):
		return http.StatusServiceUnavailable, errorBody{Code: "state_unavailable", Message: "the consent and review store is unavailable; nothing was disclosed or recorded"}, audit.KindUnavailable
	case errors.As(err, &fe):
		return providerFailure(fe)
	case errors.Is(err, notify.ErrUnavailable):
		return http.StatusServiceUnavailable, errorBody{Code: "notifications_unavailable", Message: "the notification store is unavailable; nothing was disclosed"}, audit.KindUnavailable
	case errors.Is(err, errSharingOff):
		return http.StatusServiceUnavailable, errorBody{Code: "sharing_unavailable", Message: "record sharing is not configured on this gateway; nothing was disclosed"}, audit.KindUnavailable
	case errors.Is(err, identity.ErrReplayCacheFull):
		return http.StatusServiceUnavailable, errorBody{Code: "replay_cache_full", Message: "the gateway cannot record more token ids right now; retry shortly"}, audit.KindAuthFailure
	case errors.As(err, &refusal):
		return http.StatusUnauthorized, errorBody{Code: "unauthenticated", Reason: refusal.Code, Message: refusal.Reason}, audit.KindAuthFailure
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

// providerFailure maps a failed fetch from a provider: 504 when it did not
// answer in time, 503 when the gateway is holding back (circuit open, too
// many fetches in flight), 404 when it holds no record for the child, and
// 502 for everything else it did wrong. Reason is the fetch.Reason.
func providerFailure(fe *fetch.Error) (int, errorBody, audit.Kind) {
	msg := "provider " + fe.Provider + ": " + fe.Detail + "; nothing was disclosed"
	body := errorBody{Code: "provider_error", Reason: string(fe.Reason), Message: msg}
	switch fe.Reason {
	case fetch.NoRecord:
		body.Code = "no_record"
		return http.StatusNotFound, body, audit.KindDecision
	case fetch.Timeout:
		body.Code = "provider_timeout"
		return http.StatusGatewayTimeout, body, audit.KindUnavailable
	case fetch.CircuitOpen, fetch.Busy:
		body.Code = "provider_unavailable"
		return http.StatusServiceUnavailable, body, audit.KindUnavailable
	default:
		return http.StatusBadGateway, body, audit.KindUnavailable
	}
}

// auditUnavailable is the answer when the audit entry could not be written.
var auditUnavailable = errorBody{Code: "audit_unavailable", Message: "the audit trail could not be written; nothing was disclosed"}
