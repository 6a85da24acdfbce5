package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// The involvement index's rules (policies/index.rego), prepared once per
// revision beside Query. A revision whose policies do not define them
// refuses every lookup and tells no one of any match.
const (
	LookupQuery = "data.trustgate.index.lookup"
	MatchQuery  = "data.trustgate.index.match"
)

// What a lookup shows of the shielded (sensitive) services involved.
const (
	ShieldedHidden       = "hidden"       // nothing: an ordinary lookup
	ShieldedAcknowledged = "acknowledged" // that one is involved and was told, no name
)

// LookupInput is what a lookup of the index is about.
type LookupInput struct {
	TimeNS int64 `json:"time_ns"`
	// Purpose is the purpose the requester states ("" when none).
	Purpose   string    `json:"purpose"`
	Requester Requester `json:"requester"`
	// Own is the requester's own place around the child.
	Own Own `json:"own"`
	// Consents are the child's consent records (as for a decision).
	Consents []Consent `json:"consents"`
	// Involved are the agencies with a visible involvement, one entry per
	// agency (Shielded when any of its involvements is).
	Involved []Involved `json:"involved"`
}

// Own says whether the requesting practitioner has an active involvement
// with the child, and whether they are in the team around the child of an
// open early help episode.
type Own struct {
	Involvement bool `json:"involvement"`
	Team        bool `json:"team"`
}

// Involved is one agency involved with the child.
type Involved struct {
	Partner  string `json:"partner"`
	Type     string `json:"type"`
	Shielded bool   `json:"shielded"`
}

// Lookup is the policy's answer to a lookup.
type Lookup struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
	// Basis is "involved" (the practitioner's own involvement or team
	// membership) or "protocol" (a rule that lets the agency receive the
	// child's involvement for the purpose); "" on a refusal.
	Basis    string       `json:"basis"`
	Protocol *ProtocolRef `json:"protocol"`
	// Shielded is ShieldedHidden or ShieldedAcknowledged.
	Shielded string `json:"shielded"`
	// Notify are the involved agencies told of the lookup.
	Notify []string `json:"notify"`
}

// MatchInput is a new match: A's concern was just recorded, B's was
// already.
type MatchInput struct {
	TimeNS int64      `json:"time_ns"`
	A      MatchParty `json:"a"`
	B      MatchParty `json:"b"`
}

// MatchParty is one side of a match.
type MatchParty struct {
	Partner          string `json:"partner"`
	Type             string `json:"type"`
	Kind             string `json:"kind"`
	Shielded         bool   `json:"shielded"`
	ShareWithMatches bool   `json:"share_with_matches"`
}

// MatchDisclosure says who of a match is told of the other.
type MatchDisclosure struct {
	TellA   bool     `json:"tell_a"`
	TellB   bool     `json:"tell_b"`
	Reasons []string `json:"reasons"`
}

type indexQueries struct {
	lookup, match rego.PreparedEvalQuery
}

func prepareIndex(ctx context.Context, opts []func(*rego.Rego)) (indexQueries, error) {
	var q indexQueries
	var err error
	if q.lookup, err = rego.New(append(slices.Clone(opts), rego.Query(LookupQuery))...).PrepareForEval(ctx); err != nil {
		return q, err
	}
	q.match, err = rego.New(append(slices.Clone(opts), rego.Query(MatchQuery))...).PrepareForEval(ctx)
	return q, err
}

// LookupDecide evaluates a lookup. It fails closed like Decide: an
// undefined or malformed answer is a refusal with a reason (nothing
// shielded shown, no one told), an evaluation error a refusal and an
// error wrapping ErrEvaluation.
func (r *Revision) LookupDecide(ctx context.Context, in *LookupInput) (*Lookup, error) {
	refuse := func(why string) *Lookup {
		return &Lookup{Reasons: []string{why}, Shielded: ShieldedHidden, Notify: []string{}}
	}
	t, err := r.evalTerm(ctx, r.index.lookup, in.value())
	if err != nil {
		return refuse("policy evaluation failed"), err
	}
	if t == nil {
		return refuse("the policy gave no lookup decision (" + LookupQuery + " undefined): refused"), nil
	}
	out, err := decodeLookup(t)
	if err != nil || len(out.Reasons) == 0 || (out.Shielded != ShieldedHidden && out.Shielded != ShieldedAcknowledged) ||
		(out.Allow && out.Basis != "involved" && out.Basis != "protocol") || (!out.Allow && out.Basis != "") {
		return refuse("the policy's lookup decision is malformed: refused"), nil
	}
	for _, p := range out.Notify {
		if !slices.ContainsFunc(in.Involved, func(v Involved) bool { return v.Partner == p }) {
			return refuse("the policy's lookup decision tells an agency that is not involved: refused"), nil
		}
	}
	return out, nil
}

// asTerm keeps a query's result as the evaluator made it: the lookup's
// answer is decoded from the AST (decodeLookup), not converted to Go
// values and re-encoded as JSON first.
func asTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// evalTerm evaluates q and returns its one result term, or nil when it is
// undefined.
func (r *Revision) evalTerm(ctx context.Context, q rego.PreparedEvalQuery, in ast.Value) (*ast.Term, error) {
	rs, err := q.Eval(ctx, rego.EvalParsedInput(in), rego.EvalGenerateJSON(asTerm))
	if err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrEvaluation, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	t, _ := rs[0].Expressions[0].Value.(*ast.Term)
	return t, nil
}

// MatchDecide evaluates who of a match is told of the other. Undefined or
// malformed: no one is told (the match is still recorded).
func (r *Revision) MatchDecide(ctx context.Context, in *MatchInput) (*MatchDisclosure, error) {
	var out MatchDisclosure
	ok, err := r.evalStrict(ctx, r.index.match, in.value(), &out)
	if err != nil {
		return &MatchDisclosure{Reasons: []string{"policy evaluation failed"}}, err
	}
	if !ok || len(out.Reasons) == 0 {
		return &MatchDisclosure{Reasons: []string{"the policy gave no usable match decision: no one is told"}}, nil
	}
	return &out, nil
}

// evalStrict evaluates q and decodes its one result into out, refusing
// unknown fields; false when the result is undefined or does not decode.
func (r *Revision) evalStrict(ctx context.Context, q rego.PreparedEvalQuery, in ast.Value, out any) (bool, error) {
	rs, err := q.Eval(ctx, rego.EvalParsedInput(in))
	if err != nil {
		return false, fmt.Errorf("policy: %w: %w", ErrEvaluation, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return false, nil
	}
	raw, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		return false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(out) == nil, nil
}

// The lookup input's member names and fixed values, made once: a lookup's
// input is built on every request, and the evaluator only reads terms.
var (
	lkTimeNS, lkPurpose, lkRequester, lkOwn, lkConsents, lkInvolved = ast.StringTerm("time_ns"), ast.StringTerm("purpose"), ast.StringTerm("requester"), ast.StringTerm("own"), ast.StringTerm("consents"), ast.StringTerm("involved")
	lkPartner, lkType, lkShielded, lkInvolvement, lkTeam            = ast.StringTerm("partner"), ast.StringTerm("type"), ast.StringTerm("shielded"), ast.StringTerm("involvement"), ast.StringTerm("team")
	lkTrue, lkFalse                                                 = ast.BooleanTerm(true), ast.BooleanTerm(false)
	lkOwnTerms                                                      = [2][2]*ast.Term{
		{ast.ObjectTerm([2]*ast.Term{lkInvolvement, lkFalse}, [2]*ast.Term{lkTeam, lkFalse}), ast.ObjectTerm([2]*ast.Term{lkInvolvement, lkFalse}, [2]*ast.Term{lkTeam, lkTrue})},
		{ast.ObjectTerm([2]*ast.Term{lkInvolvement, lkTrue}, [2]*ast.Term{lkTeam, lkFalse}), ast.ObjectTerm([2]*ast.Term{lkInvolvement, lkTrue}, [2]*ast.Term{lkTeam, lkTrue})},
	}
)

// boolTerm is b as a shared term.
func boolTerm(b bool) *ast.Term {
	if b {
		return lkTrue
	}
	return lkFalse
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (in *LookupInput) value() ast.Value {
	involved := make([]*ast.Term, len(in.Involved))
	for i, v := range in.Involved {
		involved[i] = ast.ObjectTerm(
			[2]*ast.Term{lkPartner, ast.StringTerm(v.Partner)},
			[2]*ast.Term{lkType, ast.StringTerm(v.Type)},
			[2]*ast.Term{lkShielded, boolTerm(v.Shielded)},
		)
	}
	return ast.NewObject(
		[2]*ast.Term{lkTimeNS, ast.IntNumberTerm(int(in.TimeNS))},
		[2]*ast.Term{lkPurpose, ast.StringTerm(in.Purpose)},
		[2]*ast.Term{lkRequester, requesterTerm(in.Requester)},
		[2]*ast.Term{lkOwn, lkOwnTerms[b2i(in.Own.Involvement)][b2i(in.Own.Team)]},
		[2]*ast.Term{lkConsents, consentsTerm(in.Consents)},
		[2]*ast.Term{lkInvolved, ast.ArrayTerm(involved...)},
	)
}

func (in *MatchInput) value() ast.Value {
	side := func(p MatchParty) *ast.Term {
		return ast.ObjectTerm(
			item("partner", ast.StringTerm(p.Partner)),
			item("type", ast.StringTerm(p.Type)),
			item("kind", ast.StringTerm(p.Kind)),
			item("shielded", boolTerm(p.Shielded)),
			item("share_with_matches", boolTerm(p.ShareWithMatches)),
		)
	}
	return ast.NewObject(
		item("time_ns", ast.IntNumberTerm(int(in.TimeNS))),
		item("a", side(in.A)),
		item("b", side(in.B)),
	)
}

var lkPractitioner, lkRole = ast.StringTerm("practitioner"), ast.StringTerm("role")

func requesterTerm(r Requester) *ast.Term {
	return ast.ObjectTerm(
		[2]*ast.Term{lkPartner, ast.StringTerm(r.Partner)},
		[2]*ast.Term{lkType, ast.StringTerm(r.Type)},
		[2]*ast.Term{lkPractitioner, ast.StringTerm(r.Practitioner)},
		[2]*ast.Term{lkRole, ast.StringTerm(r.Role)},
	)
}
