package policy

import (
	"context"
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// PermissionQuery is the rule that says who may record, withdraw and read
// a child's consent (policies/consent.rego). It is prepared once per
// revision beside Query. A revision whose policies do not define it denies
// every such request.
const PermissionQuery = "data.trustgate.consent.permission"

// The consent actions the permission rule decides.
const (
	ActionRecord   = "record"   // record a consent or a refusal
	ActionWithdraw = "withdraw" // record a withdrawal
	ActionRead     = "read"     // read a child's consent history
)

// PermissionInput is what a permission is about.
type PermissionInput struct {
	TimeNS    int64     `json:"time_ns"`
	Action    string    `json:"action"`
	Requester Requester `json:"requester"`
	// RecordedBy lists the partners that have recorded a consent or a
	// refusal for the child (for ActionRead).
	RecordedBy []string `json:"recorded_by"`
}

// Permission is the policy's answer: allowed or not, and why, in words.
type Permission struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
}

func preparePermission(ctx context.Context, opts []func(*rego.Rego)) (rego.PreparedEvalQuery, error) {
	return rego.New(append(slices.Clone(opts), rego.Query(PermissionQuery))...).PrepareForEval(ctx)
}

// Permit evaluates in against the permission rule. Like Decide it fails
// closed: an undefined or malformed answer is a refusal with a reason, an
// evaluation error a refusal and an error wrapping ErrEvaluation.
func (r *Revision) Permit(ctx context.Context, in *PermissionInput) (*Permission, error) {
	rs, err := r.permit.Eval(ctx, rego.EvalParsedInput(in.value()))
	if err != nil {
		return refused("policy evaluation failed"), fmt.Errorf("policy: %w: %w", ErrEvaluation, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return refused("the policy defines no consent permission (" + PermissionQuery + "): refused"), nil
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return refused("the policy's consent permission is not an object: refused"), nil
	}
	allow, ok1 := m["allow"].(bool)
	raw, ok2 := m["reasons"].([]any)
	if !ok1 || !ok2 || len(m) != 2 || len(raw) == 0 {
		return refused("the policy's consent permission is malformed: refused"), nil
	}
	p := &Permission{Allow: allow}
	for _, v := range raw {
		s, ok := v.(string)
		if !ok {
			return refused("the policy's consent permission is malformed: refused"), nil
		}
		p.Reasons = append(p.Reasons, s)
	}
	return p, nil
}

func refused(reason string) *Permission {
	return &Permission{Allow: false, Reasons: []string{reason}}
}

func (in *PermissionInput) value() ast.Value {
	return ast.NewObject(
		item("time_ns", ast.IntNumberTerm(int(in.TimeNS))),
		item("action", ast.StringTerm(in.Action)),
		item("requester", requesterTerm(in.Requester)),
		item("recorded_by", strs(in.RecordedBy)),
	)
}
