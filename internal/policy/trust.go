package policy

import (
	"context"
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// TrustQuery is the rule a policy may define for the Trust-level part of a
// decision: what depends only on the requester's partner, type and role,
// the provider's partner, type and sensitivity, the purpose, and where the
// time falls among the protocols' dates (in the demo policy: which rules
// of which in-force protocols apply, which in-force protocols the
// requester signed, and why no rule applies). A policy that defines it
// reads input.trust, when given, in place of computing it (the decision
// is the same word for word); one that does not is always evaluated whole.
const TrustQuery = "data.trustgate.sharing.trust_part"

func prepareTrust(ctx context.Context, opts []func(*rego.Rego)) (rego.PreparedEvalQuery, error) {
	return rego.New(append(slices.Clone(opts), rego.Query(TrustQuery))...).PrepareForEval(ctx)
}

// Trust is the Trust-level part of one decision, as TrustPart computed
// it, to hand to DecideWithTrust for any input alike in the fields
// TrustInput keeps (and whose time falls in the same place among the
// protocols' dates). The zero Trust means the policy defines none.
// Immutable; safe to share between concurrent decisions.
type Trust struct{ t *ast.Term }

// Defined says whether the policy gave a Trust-level part.
func (t Trust) Defined() bool { return t.t != nil }

// Equal says whether t and u are the same part.
func (t Trust) Equal(u Trust) bool {
	if t.t == nil || u.t == nil {
		return t.t == u.t
	}
	return t.t.Equal(u.t)
}

// String is the part as Rego writes it.
func (t Trust) String() string {
	if t.t == nil {
		return "undefined"
	}
	return t.t.String()
}

// TrustInput is in reduced to what the Trust-level part may read: the
// time, the requester's partner, type and role, the provider, the
// purpose. A policy's trust_part that read anything else would find it
// undefined, so that the part is a function of these fields alone.
func TrustInput(in *Input) *Input {
	return &Input{
		TimeNS:    in.TimeNS,
		Requester: Requester{Partner: in.Requester.Partner, Type: in.Requester.Type, Role: in.Requester.Role},
		Provider:  in.Provider,
		Purpose:   in.Purpose,
	}
}

// TrustPart evaluates TrustQuery on TrustInput(in). The zero Trust and no
// error: the policy defines no Trust-level part.
func (r *Revision) TrustPart(ctx context.Context, in *Input) (Trust, error) {
	t := TrustInput(in)
	v := ast.NewObject(
		item("time_ns", ast.IntNumberTerm(int(t.TimeNS))),
		item("requester", ast.ObjectTerm(
			item("partner", ast.StringTerm(t.Requester.Partner)),
			item("type", ast.StringTerm(t.Requester.Type)),
			item("role", ast.StringTerm(t.Requester.Role)),
		)),
		item("provider", ast.ObjectTerm(
			item("partner", ast.StringTerm(t.Provider.Partner)),
			item("type", ast.StringTerm(t.Provider.Type)),
			item("sensitive", boolTerm(t.Provider.Sensitive)),
		)),
		item("purpose", ast.StringTerm(t.Purpose)),
	)
	rs, err := r.trust.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		return Trust{}, fmt.Errorf("policy: %w: %w", ErrEvaluation, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Trust{}, nil
	}
	val, err := ast.InterfaceToValue(rs[0].Expressions[0].Value)
	if err != nil {
		return Trust{}, fmt.Errorf("policy: %w: the Trust-level part: %w", ErrEvaluation, err)
	}
	return Trust{t: ast.NewTerm(val)}, nil
}

// DecideWithTrust is Decide with the Trust-level part t (from TrustPart
// for an input alike in the Trust-level fields, at a time in the same
// place among the protocols' dates) handed to the policy as input.trust,
// so that the policy does not compute it again. The decision is Decide's,
// word for word. The zero t: Decide.
func (r *Revision) DecideWithTrust(ctx context.Context, in *Input, t Trust) (*Decision, error) {
	return r.decide(ctx, in.value(t.t), in.Categories)
}
