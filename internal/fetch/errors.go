package fetch

import (
	"errors"
	"fmt"
)

// Reason says why a fetch failed. The values are stable: audit entries
// (provider_error) and API error bodies carry them.
type Reason string

// The reasons.
const (
	NoEndpoint   Reason = "no_endpoint"       // the registry gives the provider no endpoint
	Insecure     Reason = "insecure_endpoint" // plain http to a host that is not loopback
	CircuitOpen  Reason = "circuit_open"      // recent failures: failing fast until the next probe
	Busy         Reason = "busy"              // the provider's bound on fetches in flight is reached
	Timeout      Reason = "timeout"           // no complete answer within the timeout
	Unreachable  Reason = "unreachable"       // connection refused, reset, no route, DNS
	TLS          Reason = "tls"               // the provider's certificate does not verify
	TokenRefused Reason = "token_refused"     // the provider refused the decision token (401/403)
	BadStatus    Reason = "bad_status"        // any other non-200 status
	Malformed    Reason = "malformed"         // not a JSON record of the agreed shape
	TooLarge     Reason = "too_large"         // the answer exceeds the size limit
	WrongSubject Reason = "wrong_subject"     // a record for a different child than asked
	NoRecord     Reason = "no_record"         // the provider holds no record for the child (404 no_record)
)

// ErrProvider classifies every fetch failure: each *Error unwraps to it
// (and to its cause).
var ErrProvider = errors.New("provider fetch failed")

// Error is a failed fetch.
type Error struct {
	Provider string
	Reason   Reason
	// Status is the provider's HTTP status, when it answered.
	Status int
	// Detail is for humans: what was wrong, never a record value or a token.
	Detail string
	Err    error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("provider %s: %s", e.Provider, e.Reason)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrProvider and the cause.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrProvider, e.Err}
	}
	return []error{ErrProvider}
}

// countsAsFailure reports whether the reason says the provider is
// unhealthy (for the circuit breaker). A provider that answers "no record"
// is healthy; fast refusals by the gateway itself say nothing about it.
func (r Reason) countsAsFailure() bool {
	switch r {
	case NoRecord, CircuitOpen, Busy, NoEndpoint, Insecure:
		return false
	default:
		return true
	}
}
