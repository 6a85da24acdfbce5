package decision

import (
	"errors"
	"fmt"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/policy"
)

// A decision's audit entry records the policy input it was decided on in
// two parts: the fields the entry holds anyway (time, requester,
// practitioner, role, provider, purpose, categories, override ground) and
// the residual (Entry.InputResidual, policy.EncodeResidual). RecordInput
// writes the residual and InputOf rebuilds the input; both map the entry
// to its policy.InputBase in one place, baseOf.

// ErrNoInput means an entry records no decision input (it is not a
// decision, or it predates input recording).
var ErrNoInput = errors.New("decision: the entry records no decision input")

// baseOf is what e holds of its decision's input in fields of its own,
// as the entry reads back from the log: the time to the nanosecond (the
// log stores it exactly), no categories for an empty list (not stored).
func baseOf(e *audit.Entry) policy.InputBase {
	b := policy.InputBase{
		TimeNS: e.Time.UnixNano(), Partner: e.Requester, Practitioner: e.Practitioner, Role: e.Role,
		Provider: e.Provider, Purpose: e.Purpose, Categories: e.Categories, OverrideGround: e.OverrideGround,
	}
	if len(b.Categories) == 0 {
		b.Categories = nil
	}
	return b
}

// RecordInput records in, the input the policy decides e's request on,
// in e.InputResidual. Call it once e's time and the fields baseOf reads
// are final: InputOf(e) then rebuilds in exactly (json.Marshal of the
// two is byte for byte the same). e.Time must be set (the decision's
// time is taken from it unless they differ).
func RecordInput(e *audit.Entry, in *policy.Input) error {
	if e.Time.IsZero() {
		return fmt.Errorf("decision: record input: the entry has no time yet")
	}
	r, err := policy.EncodeResidual(in, baseOf(e))
	if err != nil {
		return fmt.Errorf("decision: record input: %w", err)
	}
	e.InputResidual = r
	return nil
}

// InputOf rebuilds the exact policy input e's decision was made on, from
// e's fields and e.InputResidual. It fails with ErrNoInput when e records
// none, and with an error wrapping policy.ErrResidual when the residual
// does not decode.
func InputOf(e *audit.Entry) (*policy.Input, error) {
	if len(e.InputResidual) == 0 {
		return nil, ErrNoInput
	}
	in, err := policy.DecodeResidual(baseOf(e), e.InputResidual)
	if err != nil {
		return nil, fmt.Errorf("audit seq %d: the recorded input does not decode: %w", e.Seq, err)
	}
	return in, nil
}
