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
	var out Lookup
	ok, err := r.evalStrict(ctx, r.index.lookup, in.value(), &out)
	if err != nil {
		return refuse("policy evaluation failed"), err
	}
	if !ok {
		return refuse("the policy gave no lookup decision (" + LookupQuery + " undefined): refused"), nil
	}
	if len(out.Reasons) == 0 || (out.Shielded != ShieldedHidden && out.Shielded != ShieldedAcknowledged) ||
		(out.Allow && out.Basis != "involved" && out.Basis != "protocol") || (!out.Allow && out.Basis != "") {
		return refuse("the policy's lookup decision is malformed: refused"), nil
	}
	for _, p := range out.Notify {
		if !slices.ContainsFunc(in.Involved, func(v Involved) bool { return v.Partner == p }) {
			return refuse("the policy's lookup decision tells an agency that is not involved: refused"), nil
		}
	}
	if out.Notify == nil {
		out.Notify = []string{}
	}
	return &out, nil
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

func (in *LookupInput) value() ast.Value {
	involved := make([]*ast.Term, len(in.Involved))
	for i, v := range in.Involved {
		involved[i] = ast.ObjectTerm(
			item("partner", ast.StringTerm(v.Partner)),
			item("type", ast.StringTerm(v.Type)),
			item("shielded", ast.BooleanTerm(v.Shielded)),
		)
	}
	return ast.NewObject(
		item("time_ns", ast.IntNumberTerm(int(in.TimeNS))),
		item("purpose", ast.StringTerm(in.Purpose)),
		item("requester", requesterTerm(in.Requester)),
		item("own", ast.ObjectTerm(
			item("involvement", ast.BooleanTerm(in.Own.Involvement)),
			item("team", ast.BooleanTerm(in.Own.Team)),
		)),
		item("consents", consentsTerm(in.Consents)),
		item("involved", ast.ArrayTerm(involved...)),
	)
}

func (in *MatchInput) value() ast.Value {
	side := func(p MatchParty) *ast.Term {
		return ast.ObjectTerm(
			item("partner", ast.StringTerm(p.Partner)),
			item("type", ast.StringTerm(p.Type)),
			item("kind", ast.StringTerm(p.Kind)),
			item("shielded", ast.BooleanTerm(p.Shielded)),
			item("share_with_matches", ast.BooleanTerm(p.ShareWithMatches)),
		)
	}
	return ast.NewObject(
		item("time_ns", ast.IntNumberTerm(int(in.TimeNS))),
		item("a", side(in.A)),
		item("b", side(in.B)),
	)
}

func requesterTerm(r Requester) *ast.Term {
	return ast.ObjectTerm(
		item("partner", ast.StringTerm(r.Partner)),
		item("type", ast.StringTerm(r.Type)),
		item("practitioner", ast.StringTerm(r.Practitioner)),
		item("role", ast.StringTerm(r.Role)),
	)
}
