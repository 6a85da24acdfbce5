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

	// ErrReadOnly means the Log was opened with Options.ReadOnly. Append
	// wraps it together with ErrUnavailable.
	ErrReadOnly = errors.New("audit log opened read-only")

	// ErrNoCheckpoint means no signed checkpoint has been stored yet.
	ErrNoCheckpoint = errors.New("no audit checkpoint yet")

	// ErrBadCheckpoint means a checkpoint could not be read or its
	// signature does not verify. Verify reports such a checkpoint inside
	// the log file as a *TamperError.
	ErrBadCheckpoint = errors.New("bad audit checkpoint")

	// ErrUnapplied means a log file was opened read-only, or verified,
	// while its journal (JournalPath) holds entries not yet in it: the
	// gateway stopped without applying them. Opening the log for writing
	// applies them.
	ErrUnapplied = errors.New("audit journal holds entries not in the log file")
)

// TamperError reports the first place where a stored log fails a check.
// It unwraps to ErrTampered.
type TamperError struct {
	// Seq is the entry found damaged: the entry whose bytes were altered,
	// or the first missing seq for a gap or a truncated tail. Zero means
	// the damage is not in any one entry (for example a missing bucket).
	Seq uint64
	// Last, when not zero, is the last entry the damage may reach: the
	// damage is somewhere in entries Seq..Last but the evidence cannot
	// name one entry (a rewrite that recomputed the chain, caught by a
	// checkpoint whose root no longer matches).
	Last uint64
	// Checkpoint, when not zero, is the size of the checkpoint whose check
	// failed.
	Checkpoint uint64
	// Reason says which check failed, in words.
	Reason string
}

func (e *TamperError) Error() string {
	switch {
	case e.Seq == 0:
		return fmt.Sprintf("audit log tampered: %s", e.Reason)
	case e.Last > e.Seq:
		return fmt.Sprintf("audit log tampered: entries %d to %d: %s", e.Seq, e.Last, e.Reason)
	default:
		return fmt.Sprintf("audit log tampered: entry %d: %s", e.Seq, e.Reason)
	}
}

// Unwrap makes errors.Is(err, ErrTampered) true.
func (e *TamperError) Unwrap() error { return ErrTampered }

func tampered(seq uint64, format string, args ...any) *TamperError {
	return &TamperError{Seq: seq, Reason: fmt.Sprintf(format, args...)}
}
