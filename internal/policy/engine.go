package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Query is the rule every policy revision must define.
const Query = "data.trustgate.sharing.decision"

// Errors.
var (
	// ErrCompile: the policy sources do not compile (strict mode).
	ErrCompile = errors.New("policy does not compile")
	// ErrEvaluation: evaluation failed (runtime error, conflict, deadline).
	// Callers answer 503 and disclose nothing.
	ErrEvaluation = errors.New("policy evaluation failed")
)

// Sources are the policy files of one revision, by file name.
type Sources struct {
	Modules map[string]string // *.rego other than tests
	Tests   map[string]string // *_test.rego
}

// Files returns every file name, sorted.
func (s Sources) Files() []string {
	var out []string
	for n := range s.Modules {
		out = append(out, n)
	}
	for n := range s.Tests {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// LoadFS reads every .rego file at the top of fsys.
func LoadFS(fsys fs.FS) (Sources, error) {
	s := Sources{Modules: map[string]string{}, Tests: map[string]string{}}
	names, err := fs.Glob(fsys, "*.rego")
	if err != nil {
		return s, fmt.Errorf("policy: %w", err)
	}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return s, fmt.Errorf("policy: read %s: %w", n, err)
		}
		if strings.HasSuffix(n, "_test.rego") {
			s.Tests[n] = string(b)
		} else {
			s.Modules[n] = string(b)
		}
	}
	if len(s.Modules) == 0 {
		return s, fmt.Errorf("policy: %w: no .rego files", ErrCompile)
	}
	return s, nil
}

// LoadDir reads every .rego file in dir.
func LoadDir(dir string) (Sources, error) { return LoadFS(os.DirFS(dir)) }

// Revision is one compiled policy with its data. Immutable; safe for
// concurrent use.
type Revision struct {
	hash     string
	files    []string
	prepared rego.PreparedEvalQuery
	trust    rego.PreparedEvalQuery // TrustQuery (trust.go)
	permit   rego.PreparedEvalQuery // PermissionQuery (permission.go)
	index    indexQueries           // LookupQuery, MatchQuery (lookup.go)
	data     Data
	compiled time.Time
}

// Prepare compiles the modules in strict Rego v1 mode with data, once.
func Prepare(ctx context.Context, src Sources, data Data) (*Revision, error) {
	data = data.normalized()
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("policy: encode data: %w", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("policy: encode data: %w", err)
	}
	opts := []func(*rego.Rego){
		rego.Query(Query),
		// AST values on read: data is converted once here, not on every
		// evaluation (the conversion was a quarter of the evaluation cost).
		rego.Store(inmem.NewFromObjectWithOpts(map[string]any{"trustgate": obj}, inmem.OptReturnASTValuesOnRead(true))),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Strict(true),
	}
	names := make([]string, 0, len(src.Modules))
	for n := range src.Modules {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	first := slices.Clone(opts)
	for _, n := range names {
		first = append(first, rego.Module(n, src.Modules[n]))
		fmt.Fprintf(h, "policy %s %d\n", n, len(src.Modules[n]))
		h.Write([]byte(src.Modules[n]))
	}
	fmt.Fprintf(h, "data %d\n", len(raw))
	h.Write(raw)
	// The modules are compiled once, for the decision query, and the other
	// queries (permission, Trust-level part, lookup, match) are prepared on
	// that compiler: one compiled policy in memory per revision, not five.
	var compiler *ast.Compiler
	first = append(first, rego.CompilerHook(func(c *ast.Compiler) { compiler = c }))
	pq, err := rego.New(first...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrCompile, err)
	}
	if compiler == nil {
		return nil, fmt.Errorf("policy: %w: the compiler was not made", ErrCompile)
	}
	opts = append(opts, rego.Compiler(compiler))
	permit, err := preparePermission(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrCompile, err)
	}
	trust, err := prepareTrust(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrCompile, err)
	}
	index, err := prepareIndex(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrCompile, err)
	}
	return &Revision{
		hash:     hex.EncodeToString(h.Sum(nil)),
		files:    src.Files(),
		prepared: pq,
		trust:    trust,
		permit:   permit,
		index:    index,
		data:     data,
		compiled: time.Now(),
	}, nil
}

// Hash identifies the revision: SHA-256 over the policy sources and the
// data (in-force protocols, registry, settings), hex.
func (r *Revision) Hash() string { return r.hash }

// Files lists the policy files of the revision.
func (r *Revision) Files() []string { return r.files }

// Data returns the data the revision was prepared with.
func (r *Revision) Data() Data { return r.data }

// Decide evaluates in: the plain evaluation, the policy computing every
// part of the decision itself. It never returns an allow with an error.
// An undefined or malformed result is a deny with a reason; an evaluation
// error is a deny and an error wrapping ErrEvaluation.
func (r *Revision) Decide(ctx context.Context, in *Input) (*Decision, error) {
	return r.decide(ctx, in.value(nil), in.Categories)
}

func (r *Revision) decide(ctx context.Context, input ast.Value, asked []string) (*Decision, error) {
	rs, err := r.prepared.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return denied("policy_evaluation_failed: policy evaluation failed"), fmt.Errorf("policy: %w: %w", ErrEvaluation, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return denied("policy_undefined: the policy gave no decision (undefined result): denied"), nil
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return denied("policy_malformed: the policy's decision is not an object: denied"), nil
	}
	d, err := decodeDecision(m)
	if err != nil {
		return denied("policy_malformed: the policy's decision is malformed: denied"), nil
	}
	if err := d.check(asked); err != nil {
		return denied("policy_inconsistent: the policy's decision is inconsistent (" + err.Error() + "): denied"), nil
	}
	return d, nil
}

func denied(reason string) *Decision {
	return &Decision{Allow: false, Categories: []string{}, Reasons: []string{reason}, Consents: []string{}, Obligations: []Obligation{}}
}

// check enforces what no policy may get wrong: an allow names a protocol
// rule and grants only (and at least one of) the categories asked.
func (d *Decision) check(categories []string) error {
	if !d.Allow {
		if len(d.Categories) != 0 {
			return errors.New("a deny grants categories")
		}
		return nil
	}
	if d.Protocol == nil || d.Protocol.ID == "" || d.Protocol.Rule == "" {
		return errors.New("an allow names no protocol rule")
	}
	if len(d.Categories) == 0 {
		return errors.New("an allow grants no category")
	}
	asked := make(map[string]bool, len(categories))
	for _, c := range categories {
		asked[c] = true
	}
	for _, c := range d.Categories {
		if !asked[c] {
			return fmt.Errorf("category %s was not asked for", c)
		}
	}
	for c := range d.Fields {
		if !asked[c] {
			return fmt.Errorf("fields for category %s that was not asked for", c)
		}
	}
	return nil
}

func (d Data) normalized() Data {
	out := d
	out.Protocols = normalizedProtocols(d.Protocols)
	out.Lapsed = normalizedProtocols(d.Lapsed)
	if out.Partners == nil {
		out.Partners = map[string]PartnerData{}
	}
	return out
}

func normalizedProtocols(ps []ProtocolData) []ProtocolData {
	out := make([]ProtocolData, len(ps))
	for i, p := range ps {
		p.Signatories = nz(p.Signatories)
		p.Purposes = nz(p.Purposes)
		rules := make([]RuleData, len(p.Rules))
		for j, r := range p.Rules {
			r.Providers = r.Providers.normalized()
			r.Requesters = r.Requesters.normalized()
			r.Purposes = nz(r.Purposes)
			r.Categories = nz(r.Categories)
			r.OverrideRoles = nz(r.OverrideRoles)
			r.OverrideGrounds = nz(r.OverrideGrounds)
			if r.Fields == nil {
				r.Fields = map[string][]string{}
			}
			rules[j] = r
		}
		p.Rules = rules
		out[i] = p
	}
	return out
}

func (p PartiesData) normalized() PartiesData {
	return PartiesData{Partners: nz(p.Partners), Types: nz(p.Types), Roles: nz(p.Roles)}
}

func nz(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// value builds the input as an AST value directly, without a JSON round
// trip; with trust (the Trust-level part, trust.go) as input.trust.
func (in *Input) value(trust *ast.Term) ast.Value {
	obj := ast.NewObject(
		item("time_ns", ast.IntNumberTerm(int(in.TimeNS))),
		item("requester", requesterTerm(in.Requester)),
		item("provider", ast.ObjectTerm(
			item("partner", ast.StringTerm(in.Provider.Partner)),
			item("type", ast.StringTerm(in.Provider.Type)),
			item("sensitive", boolTerm(in.Provider.Sensitive)),
		)),
		item("purpose", ast.StringTerm(in.Purpose)),
		item("categories", strs(in.Categories)),
		item("consents", consentsTerm(in.Consents)),
		item("override", ast.ObjectTerm(
			item("ground", ast.StringTerm(in.Override.Ground)),
			item("justified", boolTerm(in.Override.Justified)),
		)),
	)
	if trust != nil {
		obj.Insert(keyTerms["trust"], trust)
	}
	return obj
}

// consentsTerm is the consent records as the policies read them.
func consentsTerm(cs []Consent) *ast.Term {
	consents := make([]*ast.Term, len(cs))
	for i, c := range cs {
		consents[i] = ast.ObjectTerm(
			item("id", ast.StringTerm(c.ID)),
			item("outcome", ast.StringTerm(c.Outcome)),
			item("given_by", ast.StringTerm(c.GivenBy)),
			item("competent", boolTerm(c.Competent)),
			item("purposes", strs(c.Purposes)),
			item("categories", strs(c.Categories)),
			item("recipients", ast.ObjectTerm(
				item("partners", strs(c.Recipients.Partners)),
				item("types", strs(c.Recipients.Types)),
				item("protocols", strs(c.Recipients.Protocols)),
			)),
			item("valid_from_ns", ast.IntNumberTerm(int(c.ValidFromNS))),
			item("valid_until_ns", ast.IntNumberTerm(int(c.ValidUntilNS))),
			item("withdrawn_ns", ast.IntNumberTerm(int(c.WithdrawnNS))),
		)
	}
	return ast.ArrayTerm(consents...)
}

// keyTerms are the member names of the inputs the policies read, as
// terms made once: an input is built for every decision, with the same
// names every time (OPA treats terms as immutable, and shares its own).
var keyTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{"action", "categories", "competent", "consents", "given_by", "ground", "id", "justified",
		"kind", "outcome", "override", "partner", "partners", "protocols", "provider", "purpose", "purposes",
		"recipients", "recorded_by", "requester", "role", "sensitive", "share_with_matches", "shielded", "time_ns",
		"trust", "type", "types", "valid_from_ns", "valid_until_ns", "withdrawn_ns", "practitioner"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func item(k string, v *ast.Term) [2]*ast.Term {
	if t, ok := keyTerms[k]; ok {
		return [2]*ast.Term{t, v}
	}
	return [2]*ast.Term{ast.StringTerm(k), v}
}

func strs(s []string) *ast.Term {
	ts := make([]*ast.Term, len(s))
	for i, v := range s {
		ts[i] = ast.StringTerm(v)
	}
	return ast.ArrayTerm(ts...)
}

// Map returns the input as plain JSON-shaped data (for OPA's REST API in
// the benchmark, and for what-if replay records).
func (in *Input) Map() map[string]any {
	var m map[string]any
	b, _ := json.Marshal(in)
	_ = json.Unmarshal(b, &m)
	return m
}
