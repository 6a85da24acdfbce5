package policy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// This file holds what a revision is checked with before it is activated
// (internal/revision) and what `trustgate policy check` and `policy test`
// run: a strict compile with located diagnostics, the Rego tests through
// OPA's tester, and a strict evaluation for sample decisions.

// Diagnostic is one problem in a policy file, located by file, line and
// column (1-based; 0 when OPA gives no location).
type Diagnostic struct {
	File    string `json:"file"`
	Row     int    `json:"row,omitempty"`
	Col     int    `json:"col,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

// String is "file:row:col: code: message".
func (d Diagnostic) String() string {
	loc := cmp.Or(d.File, "policies")
	if d.Row > 0 {
		loc = fmt.Sprintf("%s:%d:%d", loc, d.Row, d.Col)
	}
	if d.Code != "" {
		return loc + ": " + d.Code + ": " + d.Message
	}
	return loc + ": " + d.Message
}

// CompileError lists every located problem of sources that do not
// compile. It unwraps to ErrCompile.
type CompileError struct{ Diagnostics []Diagnostic }

func (e *CompileError) Error() string {
	parts := make([]string, 0, len(e.Diagnostics))
	for _, d := range e.Diagnostics {
		parts = append(parts, d.String())
	}
	return "policy does not compile: " + strings.Join(parts, "; ")
}

// Unwrap makes errors.Is(err, ErrCompile) hold.
func (e *CompileError) Unwrap() error { return ErrCompile }

// maxDiagnostics bounds what a CompileError carries.
const maxDiagnostics = 50

func diagnostics(err error) []Diagnostic {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		var one *ast.Error
		if errors.As(err, &one) {
			errs = ast.Errors{one}
		}
	}
	out := []Diagnostic{}
	for _, e := range errs {
		d := Diagnostic{Code: e.Code, Message: e.Message}
		if e.Location != nil {
			d.File, d.Row, d.Col = e.Location.File, e.Location.Row, e.Location.Col
		}
		out = append(out, d)
	}
	if len(out) == 0 && err != nil {
		out = append(out, Diagnostic{Message: err.Error()})
	}
	slices.SortStableFunc(out, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Row, b.Row), cmp.Compare(a.Col, b.Col))
	})
	if len(out) > maxDiagnostics {
		out = out[:maxDiagnostics]
	}
	return out
}

// parse parses every module and test of src in Rego v1.
func parse(src Sources) (map[string]*ast.Module, error) {
	mods := map[string]*ast.Module{}
	var errs ast.Errors
	for _, set := range []map[string]string{src.Modules, src.Tests} {
		for name, text := range set {
			m, err := ast.ParseModuleWithOpts(name, text, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
			if err != nil {
				var pe ast.Errors
				if errors.As(err, &pe) {
					errs = append(errs, pe...)
				} else {
					errs = append(errs, ast.NewError(ast.ParseErr, &ast.Location{File: name}, "%v", err))
				}
				continue
			}
			mods[name] = m
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return mods, nil
}

// Check compiles every module and every test of src together, in strict
// Rego v1 mode (what `opa check --strict` does), and checks that Query is
// defined by the modules. It returns nil or a *CompileError with located
// diagnostics.
func Check(src Sources) error {
	if len(src.Modules) == 0 {
		return &CompileError{Diagnostics: []Diagnostic{{Message: "no policy modules (.rego files other than *_test.rego)"}}}
	}
	mods, err := parse(src)
	if err != nil {
		return &CompileError{Diagnostics: diagnostics(err)}
	}
	c := ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1).WithEnablePrintStatements(true)
	if c.Compile(mods); c.Failed() {
		return &CompileError{Diagnostics: diagnostics(c.Errors)}
	}
	ref := ast.MustParseRef(Query)
	defined := false
	for name, m := range mods {
		if src.Modules[name] == "" {
			continue // a test file does not define the decision
		}
		for _, r := range m.Rules {
			if r.Ref().GroundPrefix().Equal(ref) || r.Path().Equal(ref) {
				defined = true
			}
		}
	}
	if !defined {
		return &CompileError{Diagnostics: []Diagnostic{{Message: "no module defines " + Query + " (the decision every revision must give)"}}}
	}
	return nil
}

// TestOptions tune RunTests.
type TestOptions struct {
	Coverage bool          // measure which policy lines the tests reach
	Timeout  time.Duration // per test; default 5s
	Parallel int           // tests run at once; default: OPA's (the CPUs)
}

// TestResult is the outcome of one Rego test.
type TestResult struct {
	Package  string        `json:"package"`
	Name     string        `json:"name"`
	File     string        `json:"file"`
	Row      int           `json:"row"`
	Outcome  string        `json:"outcome"` // PASS, FAIL, ERROR, SKIPPED
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Passed reports whether the test passed.
func (r TestResult) Passed() bool { return r.Outcome == "PASS" }

// FileCoverage is the test coverage of one policy file.
type FileCoverage struct {
	File       string  `json:"file"`
	Covered    int     `json:"covered_lines"`
	NotCovered int     `json:"not_covered_lines"`
	Percent    float64 `json:"percent"`
	// Missed lists the first lines the tests never reach ("12", "30-34").
	Missed []string `json:"missed,omitempty"`
}

// TestReport is the outcome of every test of a revision.
type TestReport struct {
	Results  []TestResult   `json:"results"`
	Passed   int            `json:"passed"`
	Failed   int            `json:"failed"`
	Errors   int            `json:"errors"`
	Skipped  int            `json:"skipped"`
	Coverage []FileCoverage `json:"coverage,omitempty"` // policy files only, not tests
	// CoveragePercent is over every policy file together.
	CoveragePercent float64 `json:"coverage_percent,omitempty"`
}

// OK reports whether there was at least one test and none failed or
// errored.
func (r *TestReport) OK() bool { return r.Passed > 0 && r.Failed == 0 && r.Errors == 0 }

// RunTests runs every test_ rule of src's test files with OPA's tester,
// against an empty store (tests bring their data with `with`), exactly as
// `opa test` does. Results are sorted by file and line. Sources that do not
// compile are a *CompileError; a run cut short by ctx is ctx's error.
func RunTests(ctx context.Context, src Sources, o TestOptions) (*TestReport, error) {
	mods, err := parse(src)
	if err != nil {
		return nil, &CompileError{Diagnostics: diagnostics(err)}
	}
	store := inmem.New()
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return nil, fmt.Errorf("policy tests: %w", err)
	}
	defer store.Abort(ctx, txn)
	runner := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1).WithEnablePrintStatements(true)).
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(store).
		CapturePrintOutput(true).
		SetModules(mods).
		SetTimeout(cmp.Or(o.Timeout, 5*time.Second))
	if o.Parallel > 0 {
		runner = runner.SetParallel(o.Parallel)
	}
	var cov *cover.Cover
	if o.Coverage {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov)
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return nil, &CompileError{Diagnostics: diagnostics(err)}
	}
	rep := &TestReport{Results: []TestResult{}}
	for r := range ch {
		tr := TestResult{Package: strings.TrimPrefix(r.Package, "data."), Name: r.Name, Duration: r.Duration}
		if r.Location != nil {
			tr.File, tr.Row = r.Location.File, r.Location.Row
		}
		switch {
		case r.Skip:
			tr.Outcome = "SKIPPED"
			rep.Skipped++
		case r.Error != nil:
			tr.Outcome, tr.Error = "ERROR", r.Error.Error()
			rep.Errors++
		case r.Fail:
			tr.Outcome = "FAIL"
			if r.FailedAt != nil && r.FailedAt.Location != nil {
				tr.Error = fmt.Sprintf("failed at %s:%d: %s", r.FailedAt.Location.File, r.FailedAt.Location.Row, r.FailedAt.Location.Text)
			}
			rep.Failed++
		default:
			tr.Outcome = "PASS"
			rep.Passed++
		}
		rep.Results = append(rep.Results, tr)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("policy tests: %w", err)
	}
	slices.SortFunc(rep.Results, func(a, b TestResult) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Row, b.Row), cmp.Compare(a.Name, b.Name))
	})
	if cov != nil {
		report := cov.Report(mods)
		covered, notCovered := 0, 0
		for name := range src.Modules {
			fr := report.Files[name]
			fc := FileCoverage{File: name}
			if fr != nil {
				fc.Covered, fc.NotCovered = fr.CoveredLines, fr.NotCoveredLines
				for _, rg := range fr.NotCovered {
					span := fmt.Sprint(rg.Start.Row)
					if rg.End.Row != rg.Start.Row {
						span = fmt.Sprintf("%d-%d", rg.Start.Row, rg.End.Row)
					}
					if len(fc.Missed) > 0 && fc.Missed[len(fc.Missed)-1] == span {
						continue
					}
					if len(fc.Missed) == 10 {
						fc.Missed = append(fc.Missed, "…")
						break
					}
					fc.Missed = append(fc.Missed, span)
				}
			}
			if total := fc.Covered + fc.NotCovered; total > 0 {
				fc.Percent = 100 * float64(fc.Covered) / float64(total)
			}
			covered += fc.Covered
			notCovered += fc.NotCovered
			rep.Coverage = append(rep.Coverage, fc)
		}
		slices.SortFunc(rep.Coverage, func(a, b FileCoverage) int { return cmp.Compare(a.File, b.File) })
		if covered+notCovered > 0 {
			rep.CoveragePercent = 100 * float64(covered) / float64(covered+notCovered)
		}
	}
	return rep, nil
}

// ErrMalformed classifies a decision that Decide would have turned into a
// deny because the policy's answer was undefined, not an object, malformed
// or inconsistent with the input: a policy bug, not a decision.
var ErrMalformed = errors.New("policy decision malformed")

// Probe evaluates in like Decide, but strictly: where Decide fails closed
// with a deny (an undefined, malformed or inconsistent answer), Probe
// returns an error wrapping ErrMalformed; an evaluation error wraps
// ErrEvaluation. It is what sample decisions are checked with before a
// revision is activated.
func (r *Revision) Probe(ctx context.Context, in *Input) (*Decision, error) {
	rs, err := r.prepared.Eval(ctx, rego.EvalParsedInput(in.value(nil)))
	if err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrEvaluation, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, fmt.Errorf("policy: %w: %s is undefined", ErrMalformed, Query)
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("policy: %w: the decision is not an object", ErrMalformed)
	}
	d, err := decodeDecision(m)
	if err != nil {
		return nil, fmt.Errorf("policy: %w: %v", ErrMalformed, err)
	}
	if err := d.check(in.Categories); err != nil {
		return nil, fmt.Errorf("policy: %w: %v", ErrMalformed, err)
	}
	return d, nil
}
