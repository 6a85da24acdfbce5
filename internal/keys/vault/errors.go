package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/childrens-trust/trustgate/internal/keys"
)

// Kind says why a call to Vault failed. Every kind means the same to a
// caller (keys.ErrUnavailable: fail closed); the kinds exist for operators'
// messages and for the store's own recovery (a denied call makes it check
// its token and log in again).
type Kind string

// The kinds of failure.
const (
	KindUnreachable Kind = "unreachable"          // no connection (stopped, wrong address, network)
	KindTimeout     Kind = "timed out"            // no answer within the deadline (hanging, overloaded)
	KindCanceled    Kind = "canceled"             // the caller gave up
	KindSealed      Kind = "sealed or standby"    // HTTP 503
	KindDenied      Kind = "permission denied"    // HTTP 403: token revoked or expired, or policy lacks the capability
	KindRejected    Kind = "rejected the request" // other 4xx: missing key, version not allowed, ...
	KindServer      Kind = "server error"         // other 5xx
	KindInvalid     Kind = "invalid answer"       // an answer this client cannot use
	KindConfig      Kind = "misconfigured"        // the keys or the client configuration are unsafe or unusable
)

// Error is a failed call to Vault. It wraps keys.ErrUnavailable and the
// cause, and prints on one line.
type Error struct {
	Op     string // what the store was doing: "sign", "hmac", "read key trustgate-signing", "log in"
	Addr   string // the Vault address
	Kind   Kind
	Status int    // the HTTP status Vault answered, 0 if none
	Reason string // Vault's own message, or the cause's
	Err    error  // the cause, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keys: vault %s: %s: %s", e.Addr, e.Op, e.Kind)
	switch {
	case e.Status != 0 && e.Reason != "":
		fmt.Fprintf(&b, " (%d: %s)", e.Status, e.Reason)
	case e.Status != 0:
		fmt.Fprintf(&b, " (%d)", e.Status)
	case e.Reason != "":
		fmt.Fprintf(&b, " (%s)", e.Reason)
	}
	return b.String()
}

// Unwrap lets errors.Is find keys.ErrUnavailable and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{keys.ErrUnavailable}
	}
	return []error{keys.ErrUnavailable, e.Err}
}

// KindOf returns the kind of a Vault failure, or "" if err is not one.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// classify turns an error from the Vault client into an *Error.
func classify(addr, op string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	out := &Error{Op: op, Addr: addr, Err: err}
	var re *api.ResponseError
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &re):
		out.Status = re.StatusCode
		out.Reason = oneLine(strings.Join(re.Errors, "; "))
		switch {
		case re.StatusCode == http.StatusServiceUnavailable:
			out.Kind = KindSealed
		case re.StatusCode == http.StatusForbidden:
			out.Kind = KindDenied
		case re.StatusCode >= 500:
			out.Kind = KindServer
		default:
			out.Kind = KindRejected
		}
	case errors.Is(err, context.Canceled):
		out.Kind = KindCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		out.Kind = KindTimeout
	case errors.As(err, &oe):
		out.Kind = KindUnreachable
		out.Reason = oneLine(oe.Error())
	default:
		out.Kind = KindUnreachable
		out.Reason = oneLine(err.Error())
	}
	return out
}

// invalid is an answer the store cannot use.
func invalid(addr, op, format string, a ...any) *Error {
	return &Error{Op: op, Addr: addr, Kind: KindInvalid, Reason: fmt.Sprintf(format, a...)}
}

// misconfigured is an unsafe or unusable key or client setting.
func misconfigured(addr, op, format string, a ...any) *Error {
	return &Error{Op: op, Addr: addr, Kind: KindConfig, Reason: fmt.Sprintf(format, a...)}
}

// oneLine keeps messages on one line and short.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 240 {
		s = s[:240] + "…"
	}
	return s
}
