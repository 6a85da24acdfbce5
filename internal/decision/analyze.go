package decision

import (
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/childrens-trust/trustgate/internal/policy"
)

// timeFields are the data and input fields holding instants (ns) that a
// policy may compare the decision time with: a protocol's period and a
// consent's validity and withdrawal.
var timeFields = map[string]bool{
	"effective_from_ns": true, "expires_ns": true,
	"valid_from_ns": true, "valid_until_ns": true, "withdrawn_ns": true,
}

// comparisons are the builtins a decision time may be an operand of.
var comparisons = func() map[string]bool {
	m := map[string]bool{}
	for _, b := range []*ast.Builtin{ast.LessThan, ast.LessThanEq, ast.GreaterThan, ast.GreaterThanEq, ast.Equal, ast.NotEqual} {
		m[b.Ref().String()] = true
	}
	return m
}()

// consentTimeFields are the instants of a consent record.
var consentTimeFields = map[string]bool{"valid_from_ns": true, "valid_until_ns": true, "withdrawn_ns": true}

// stringBuiltins read a string's content (not only its identity).
var stringBuiltins = []string{"startswith", "endswith", "contains", "indexof", "indexof_n", "substring", "regex.match",
	"regex.find_n", "regex.split", "split", "lower", "upper", "trim", "trim_left", "trim_right", "trim_prefix",
	"trim_suffix", "trim_space", "replace", "strings.replace_n", "strings.reverse", "strings.count", "glob.match", "count",
	"to_number", "lt", "lte", "gt", "gte"}

// nondeterministic builtins make a decision depend on more than its input
// and data.
var nondeterministic = []string{"time.now_ns", "http.send", "rand.intn", "uuid.rfc4122", "uuid.parse", "opa.runtime", "net.lookup_ip_addr"}

// Analysis says whether a policy's decisions can be memoised, and on what.
type Analysis struct {
	// memo: the decision depends on the time only through comparisons
	// with the time fields and with the literals below; with it, the
	// decision is a function of the input without its time and of where
	// the time falls among those instants.
	Memo   bool
	Reason string // why not, when !memo
	// literals are the numbers the time is compared with directly.
	Literals []int64
	// practitioner: the policy reads input.requester.practitioner (or
	// the requester, or the input, as a whole).
	Practitioner bool
	// consentTimes: a consent's instants are compared only with the
	// decision time and with 0, so only those relations matter.
	ConsentTimes bool
	// opaqueIDs: no identifier (a ref ending in .id) is compared with a
	// literal or read as text, so consent ids matter only by identity and
	// order.
	OpaqueIDs bool
}

// Analyze reads the policy's modules (tests excluded).
func Analyze(src policy.Sources) Analysis {
	a := Analysis{Memo: true, ConsentTimes: true, OpaqueIDs: true}
	zero := ast.Number("0")
	off := func(format string, args ...any) {
		if a.Memo {
			a.Memo, a.Reason = false, fmt.Sprintf(format, args...)
		}
	}
	names := make([]string, 0, len(src.Modules))
	for n := range src.Modules {
		names = append(names, n)
	}
	sort.Strings(names)
	timeRef := ast.MustParseRef("input.time_ns")
	for _, name := range names {
		m, err := ast.ParseModuleWithOpts(name, src.Modules[name], ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			off("%s does not parse", name)
			continue
		}
		uses, compared := 0, 0
		ctUses, ctCompared := 0, 0
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if last, ok := r[len(r)-1].Value.(ast.String); ok && consentTimeFields[string(last)] {
				ctUses++
			}
			if !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			if len(r) < 2 {
				a.Practitioner = true
				off("%s uses the whole input (%s)", name, r)
				return false
			}
			first, ok := r[1].Value.(ast.String)
			if !ok {
				a.Practitioner = true
				off("%s reads the input by a computed key (%s)", name, r)
				return false
			}
			switch {
			case first == "time_ns":
				uses++
				if len(r) > 2 {
					off("%s reads into the time (%s)", name, r)
				}
			case first == "requester" && (len(r) == 2 || !isString(r[2], "partner", "type", "role")):
				a.Practitioner = true
			}
			return false
		})
		// Every call, top-level or nested in a term.
		call := func(op string, ops []*ast.Term) {
			if slices.Contains(nondeterministic, op) {
				off("%s calls %s", name, op)
			}
			if isIDRef := func(t *ast.Term) bool {
				r, ok := t.Value.(ast.Ref)
				return ok && isString(r[len(r)-1], "id")
			}; slices.ContainsFunc(ops, isIDRef) {
				hasLiteral := slices.ContainsFunc(ops, func(t *ast.Term) bool { _, ok := t.Value.(ast.String); return ok })
				if (comparisons[op] && hasLiteral) || slices.Contains(stringBuiltins, op) {
					a.OpaqueIDs = false
				}
			}
		}
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if c, ok := t.Value.(ast.Call); ok && len(c) > 0 {
				call(c[0].String(), c[1:])
			}
			return false
		})
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if !e.IsCall() {
				return false
			}
			op := e.Operator().String()
			ops := e.Operands()
			call(op, ops)
			if !comparisons[op] || len(ops) != 2 {
				return false
			}
			for i, t := range ops {
				r, ok := t.Value.(ast.Ref)
				if !ok {
					continue
				}
				if last, ok := r[len(r)-1].Value.(ast.String); ok && consentTimeFields[string(last)] {
					other := ops[1-i]
					if or, ok := other.Value.(ast.Ref); (ok && or.Equal(timeRef)) || other.Value.Compare(zero) == 0 {
						ctCompared++
					}
				}
			}
			for i, t := range ops {
				r, ok := t.Value.(ast.Ref)
				if !ok || !r.Equal(timeRef) {
					continue
				}
				compared++
				switch other := ops[1-i].Value.(type) {
				case ast.Number:
					v, ok := new(big.Int).SetString(string(other), 10)
					if !ok || !v.IsInt64() {
						off("%s compares the time with %s", name, other)
						continue
					}
					a.Literals = append(a.Literals, v.Int64())
				case ast.Ref:
					last, ok := other[len(other)-1].Value.(ast.String)
					if !ok || !timeFields[string(last)] {
						off("%s compares the time with %s", name, other)
					}
				default:
					off("%s compares the time with %s", name, ops[1-i])
				}
			}
			return false
		})
		if uses != compared {
			off("%s uses input.time_ns other than in a comparison with a protocol or consent date", name)
		}
		if ctUses != ctCompared {
			a.ConsentTimes = false
		}
	}
	return a
}

func isString(t *ast.Term, want ...string) bool {
	s, ok := t.Value.(ast.String)
	return ok && slices.Contains(want, string(s))
}

// String says, for the report, how decisions were evaluated.
func (a Analysis) String() string {
	if !a.Memo {
		return "every decision evaluated: " + a.Reason
	}
	var b strings.Builder
	b.WriteString("decisions memoised on the input without its time and the time's place among the protocol and consent dates")
	if a.ConsentTimes {
		b.WriteString(", consent dates by their place around the time")
	}
	if a.OpaqueIDs {
		b.WriteString(", consent ids by rank")
	}
	if !a.Practitioner {
		b.WriteString("; the policy does not read the practitioner")
	}
	return b.String()
}
