package audit

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers classify with errors.Is; the messages are for
// people, never for matching.
var (
	// ErrUnavailable means an entry could not be made durable. The gateway
	// must not answer the request it was recording (it answers 503).
	ErrUnavailable = errors.New("audit log unavailable")

	// ErrClosed means the Log has been closed. Append wraps it together
	// with ErrUnavailable.
	ErrClosed = errors.New("audit log closed")

	// ErrBusy means the file is locked by another process (normally a
	// running gateway) and the lock was not released within OpenTimeout.
	ErrBusy = errors.New("audit log busy")

	// ErrTampered means the stored log is not the log that was written:
	// an entry is missing, altered or out of place, or the recorded head
	// does not match the last entry. Errors wrapping it are *TamperError.
	ErrTampered = errors.New("audit log tampered")

	// ErrNotFound means there is no entry with the requested seq.
	ErrNotFound = errors.New("audit entry not found")

	// ErrInvalidEntry means Append was given an entry that cannot be
	// encoded (for example a time outside years 0-9999). Nothing was written.
	ErrInvalidEntry = errors.New("invalid audit entry")

	// ErrUnsupportedVersion means the file was written in a format version
	// this build does not understand.
	ErrUnsupportedVersion = errors.New("unsupported audit log format version")
)

// TamperError reports the first place where a stored log fails a check.
// It unwraps to ErrTampered.
type TamperError struct {
	// Seq is the entry found damaged: the entry whose bytes were altered,
	// or the first missing seq for a gap or a truncated tail. Zero means
	// the damage is not in any one entry (for example a missing bucket).
	Seq uint64
	// Reason says which check failed, in words.
	Reason string
}

func (e *TamperError) Error() string {
	if e.Seq == 0 {
		return fmt.Sprintf("audit log tampered: %s", e.Reason)
	}
	return fmt.Sprintf("audit log tampered: entry %d: %s", e.Seq, e.Reason)
}

// Unwrap makes errors.Is(err, ErrTampered) true.
func (e *TamperError) Unwrap() error { return ErrTampered }

func tampered(seq uint64, format string, args ...any) *TamperError {
	return &TamperError{Seq: seq, Reason: fmt.Sprintf(format, args...)}
}
