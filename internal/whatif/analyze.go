package whatif

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

// nondeterministic builtins make a decision depend on more than its input
// and data.
var nondeterministic = []string{"time.now_ns", "http.send", "rand.intn", "uuid.rfc4122", "uuid.parse", "opa.runtime", "net.lookup_ip_addr"}

// analysis says whether a policy's decisions can be memoised, and on what.
type analysis struct {
	// memo: the decision depends on the time only through comparisons
	// with the time fields and with the literals below; with it, the
	// decision is a function of the input without its time and of where
	// the time falls among those instants.
	memo   bool
	reason string // why not, when !memo
	// literals are the numbers the time is compared with directly.
	literals []int64
	// practitioner: the policy reads input.requester.practitioner (or
	// the requester, or the input, as a whole).
	practitioner bool
}

// analyze reads the policy's modules (tests excluded).
func analyze(src policy.Sources) analysis {
	a := analysis{memo: true}
	off := func(format string, args ...any) {
		if a.memo {
			a.memo, a.reason = false, fmt.Sprintf(format, args...)
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
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			if len(r) < 2 {
				a.practitioner = true
				off("%s uses the whole input (%s)", name, r)
				return false
			}
			first, ok := r[1].Value.(ast.String)
			if !ok {
				a.practitioner = true
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
				a.practitioner = true
			}
			return false
		})
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if !e.IsCall() {
				return false
			}
			op := e.Operator().String()
			if slices.Contains(nondeterministic, op) {
				off("%s calls %s", name, op)
			}
			if !comparisons[op] {
				return false
			}
			ops := e.Operands()
			if len(ops) != 2 {
				return false
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
					a.literals = append(a.literals, v.Int64())
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
	}
	return a
}

func isString(t *ast.Term, want ...string) bool {
	s, ok := t.Value.(ast.String)
	return ok && slices.Contains(want, string(s))
}

// String says, for the report, how decisions were evaluated.
func (a analysis) String() string {
	if !a.memo {
		return "every decision evaluated: " + a.reason
	}
	var b strings.Builder
	b.WriteString("decisions memoised on the input without its time and the time's place among the protocol and consent dates")
	if !a.practitioner {
		b.WriteString(" (the policy does not read the practitioner)")
	}
	return b.String()
}
