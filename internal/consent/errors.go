package consent

import "errors"

// Sentinel errors. Callers classify with errors.Is; messages are for people.
var (
	// ErrUnavailable: the state store could not answer (closed, I/O
	// failure, context ended). Nothing was changed; callers answer 503.
	ErrUnavailable = errors.New("state store unavailable")
	// ErrInvalid: the input breaks a rule of consent; *Error says which.
	ErrInvalid = errors.New("invalid consent input")
	// ErrNotFound: no record or review item with that id.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change contradicts the stored state (a consent
	// already withdrawn, a review already closed, an id already used).
	ErrConflict = errors.New("conflict with the stored state")
	// ErrReceipt: a consent receipt does not verify.
	ErrReceipt = errors.New("consent receipt does not verify")
)

// Error is an input or state error naming the field and the reason. It
// unwraps to Kind (ErrInvalid, ErrNotFound or ErrConflict).
type Error struct {
	Kind   error
	Field  string
	Reason string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "consent: " + e.Kind.Error() + ": " + e.Reason
	}
	return "consent: " + e.Kind.Error() + ": " + e.Field + ": " + e.Reason
}

// Unwrap returns the error's kind.
func (e *Error) Unwrap() error { return e.Kind }

func invalid(field, reason string) *Error {
	return &Error{Kind: ErrInvalid, Field: field, Reason: reason}
}
func notFound(field, reason string) *Error {
	return &Error{Kind: ErrNotFound, Field: field, Reason: reason}
}
func conflict(field, reason string) *Error {
	return &Error{Kind: ErrConflict, Field: field, Reason: reason}
}
