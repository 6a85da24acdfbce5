package revision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// The checks a revision passes before it is activated, in the order they
// run. Each Problem names the check that raised it.
const (
	CheckLoad         = "load"         // the files could be read (registry, samples, I/O)
	CheckCompile      = "compile"      // the policies compile in strict mode
	CheckTests        = "tests"        // the policies' Rego tests pass
	CheckProtocols    = "protocols"    // every protocol parses and lints without errors
	CheckSignatures   = "signatures"   // every signature and withdrawal present verifies
	CheckAppointments = "appointments" // every appointment file parses, lints, and its signatures and withdrawals verify (internal/authz)
	CheckContinuity   = "continuity"   // no protocol in force drops out for want of a signature
	CheckSamples      = "samples"      // the sample decisions get their expected answers
	CheckProbes       = "probes"       // every rule of every protocol in force evaluates cleanly
	CheckRecorded     = "recorded"     // recent recorded decisions evaluate without error
)

// Problem is one reason a revision was not activated, located as precisely
// as the check allows: the file and line, the signatory and key, the test
// or sample.
type Problem struct {
	Check   string `json:"check"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Partner string `json:"partner,omitempty"`
	KeyID   string `json:"kid,omitempty"`
	Name    string `json:"name,omitempty"` // the test, sample or probe
	Message string `json:"message"`

	kind protocol.FindingKind // for protocol findings
	err  error                // for evaluation problems
}

// String is "check: file:line: [name: ]message".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Check)
	b.WriteString(": ")
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Name != "" {
		b.WriteString(p.Name)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// attrs are the problem's non-empty fields, for a structured log line.
func (p Problem) attrs() []any {
	out := []any{"check", p.Check}
	for _, kv := range [][2]string{{"file", p.File}, {"partner", p.Partner}, {"kid", p.KeyID}, {"name", p.Name}} {
		if kv[1] != "" {
			out = append(out, kv[0], kv[1])
		}
	}
	if p.Line > 0 {
		out = append(out, "line", p.Line)
	}
	return append(out, "message", p.Message)
}

// Step summarises one check.
type Step struct {
	Check    string        `json:"check"`
	OK       bool          `json:"ok"`
	Detail   string        `json:"detail"`
	Duration time.Duration `json:"duration_ns"`
}

// Report is the outcome of loading and checking one revision.
type Report struct {
	Source   string        `json:"source"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// OK: every check passed. Activated: the revision was published (a
	// reload of unchanged sources refreshes the protocol statuses but
	// keeps the active revision's identity: Unchanged).
	OK        bool      `json:"ok"`
	Activated bool      `json:"activated"`
	Unchanged bool      `json:"unchanged,omitempty"`
	Revision  string    `json:"revision,omitempty"` // the candidate's hash, when it compiled
	Previous  string    `json:"previous,omitempty"` // the revision serving before
	Steps     []Step    `json:"steps"`
	Problems  []Problem `json:"problems"`
	// Tests is the Rego test run (nil when the policies did not compile).
	Tests *policy.TestReport `json:"tests,omitempty"`
	// Samples are the sample decisions' outcomes.
	Samples []SampleResult `json:"samples,omitempty"`
}

// Err returns nil for an OK report, else a *RejectedError.
func (r *Report) Err() error {
	if r.OK {
		return nil
	}
	return &RejectedError{Report: r}
}

// Summary is one line: what was checked and what failed first.
func (r *Report) Summary() string {
	if r.OK {
		var parts []string
		for _, s := range r.Steps {
			parts = append(parts, s.Check+" "+s.Detail)
		}
		return "all checks passed: " + strings.Join(parts, "; ")
	}
	first := ""
	if len(r.Problems) > 0 {
		first = ": " + r.Problems[0].String()
	}
	return fmt.Sprintf("%d problem(s)%s", len(r.Problems), first)
}

// RejectedError is a revision that failed its checks. It unwraps to
// ErrBuild.
type RejectedError struct{ Report *Report }

func (e *RejectedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "revision rejected (%s): %d problem(s)", e.Report.Source, len(e.Report.Problems))
	for i, p := range e.Report.Problems {
		if i == 10 {
			fmt.Fprintf(&b, "; … %d more", len(e.Report.Problems)-10)
			break
		}
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrBuild) hold.
func (e *RejectedError) Unwrap() error { return ErrBuild }

// Recorded is a decision input recorded in the audit log, for re-evaluation.
type Recorded struct {
	Seq   uint64
	Input policy.Input
}

// Options tune Load.
type Options struct {
	// Previous is the revision serving now (nil at start-up): the
	// continuity check compares against it.
	Previous *Revision
	// Recent returns recently recorded decision inputs; each must evaluate
	// without error. Optional.
	Recent func(ctx context.Context) ([]Recorded, error)
	// SkipTests skips the Rego tests (never on a reload; for tools).
	SkipTests bool
	// AssumeSigned checks a draft before its signatories sign: a protocol
	// that is unsigned, or whose signatures no longer verify because it
	// was edited, is checked as if signed (never on a reload: `trustgate
	// policy check --assume-signed`).
	AssumeSigned bool
}

// Load reads, compiles and checks a revision as of now. It returns the
// revision only when every check passes; the report says what was checked
// and, precisely, every problem found. It never publishes.
func Load(ctx context.Context, src Sources, now time.Time, source string, o Options) (*Revision, *Report) {
	rep := &Report{Source: source, Started: now, Steps: []Step{}, Problems: []Problem{}}
	if o.Previous != nil {
		rep.Previous = o.Previous.Hash()
	}
	start := time.Now()
	defer func() { rep.Duration = time.Since(start) }()
	step := func(check string, t0 time.Time, before int, detail string) {
		rep.Steps = append(rep.Steps, Step{Check: check, OK: len(rep.Problems) == before, Detail: detail, Duration: time.Since(t0)})
	}

	t0 := time.Now()
	in, err := readInputs(ctx, src, now)
	if err != nil {
		rep.Problems = append(rep.Problems, loadProblem(err))
		step(CheckLoad, t0, 0, "the files could not be read")
		return nil, rep
	}
	step(CheckLoad, t0, 0, fmt.Sprintf("%d policy files, %d protocol files, %d samples", len(in.files), len(in.statuses), len(in.samples)))

	// Policies: compile, then the tests (concurrently with the protocol
	// checks, which do not need them).
	t0, n := time.Now(), len(rep.Problems)
	compiled := true
	if err := policy.Check(in.pol); err != nil {
		compiled = false
		rep.Problems = append(rep.Problems, compileProblems(err)...)
	}
	step(CheckCompile, t0, n, fmt.Sprintf("%d modules, %d test files", len(in.pol.Modules), len(in.pol.Tests)))

	var tests *policy.TestReport
	var testErr error
	var wg sync.WaitGroup
	if compiled && !o.SkipTests {
		wg.Go(func() { tests, testErr = runTestsCached(ctx, in.pol) })
	}

	t0, n = time.Now(), len(rep.Problems)
	rep.Problems = append(rep.Problems, protocolProblems(in.statuses, CheckProtocols)...)
	step(CheckProtocols, t0, n, protocolDetail(in.statuses))
	t0, n = time.Now(), len(rep.Problems)
	sigProblems := protocolProblems(in.statuses, CheckSignatures)
	if o.AssumeSigned {
		sigProblems = slices.DeleteFunc(sigProblems, func(p Problem) bool { return p.kind == protocol.FindingSignature })
		in.statuses = assumeSigned(in.statuses, now)
	}
	rep.Problems = append(rep.Problems, sigProblems...)
	step(CheckSignatures, t0, n, fmt.Sprintf("%d signatures, %d withdrawals", countSigs(in.statuses), countWithdrawals(in.statuses)))
	t0, n = time.Now(), len(rep.Problems)
	valid := 0
	for _, st := range in.appts {
		if st.Valid {
			valid++
		}
		for _, f := range st.Faults {
			rep.Problems = append(rep.Problems, Problem{Check: CheckAppointments, File: st.File, Message: f})
		}
	}
	step(CheckAppointments, t0, n, fmt.Sprintf("%d appointment files, %d valid", len(in.appts), valid))
	if o.Previous != nil {
		t0, n = time.Now(), len(rep.Problems)
		rep.Problems = append(rep.Problems, continuity(o.Previous, in.statuses, now)...)
		step(CheckContinuity, t0, n, "against "+short(o.Previous.Hash()))
	}

	if compiled && !o.SkipTests {
		t0, n = time.Now(), len(rep.Problems)
		wg.Wait()
		switch {
		case testErr != nil:
			rep.Problems = append(rep.Problems, Problem{Check: CheckTests, Message: testErr.Error(), err: testErr})
			step(CheckTests, t0, n, "the tests could not run")
		default:
			rep.Tests = tests
			rep.Problems = append(rep.Problems, testProblems(tests)...)
			step(CheckTests, t0, n, fmt.Sprintf("%d passed, %d failed, %d errors", tests.Passed, tests.Failed, tests.Errors))
		}
	}
	if !compiled {
		return nil, rep
	}

	rev, err := in.build(ctx, src, now, source, true)
	if err != nil {
		rep.Problems = append(rep.Problems, compileProblems(err)...)
		return nil, rep
	}
	rep.Revision = rev.Hash()

	t0, n = time.Now(), len(rep.Problems)
	pass, skipped := 0, 0
	for _, s := range rev.Samples {
		r := evalSample(ctx, rev, s, now)
		if ctx.Err() != nil {
			break // out of time: reported below
		}
		rep.Samples = append(rep.Samples, r)
		switch r.Outcome {
		case "pass":
			pass++
		case "skipped":
			skipped++
		default:
			rep.Problems = append(rep.Problems, Problem{Check: CheckSamples, File: samplesFile(src), Line: r.Line, Name: r.Name, Message: r.Detail})
		}
	}
	step(CheckSamples, t0, n, samplesDetail(rev, pass, skipped))

	t0, n = time.Now(), len(rep.Problems)
	probes := probeInputs(rev, now)
	for _, p := range probes {
		if _, err := rev.Policy.Probe(ctx, &p.in); err != nil {
			rep.Problems = append(rep.Problems, Problem{Check: CheckProbes, File: p.file, Line: p.line, Name: p.name, Message: err.Error(), err: err})
		}
		if ctx.Err() != nil {
			break
		}
	}
	step(CheckProbes, t0, n, fmt.Sprintf("%d inputs over %d protocols in force", len(probes), len(rev.Policy.Data().Protocols)))

	if o.Recent != nil {
		t0, n = time.Now(), len(rep.Problems)
		recs, err := o.Recent(ctx)
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{Check: CheckRecorded, Message: "recent decisions could not be read: " + err.Error()})
		}
		failed := 0
		for _, r := range recs {
			in := r.Input
			if _, err := rev.Policy.Probe(ctx, &in); err != nil {
				if ctx.Err() != nil {
					break
				}
				failed++
				if failed <= 5 {
					rep.Problems = append(rep.Problems, Problem{Check: CheckRecorded, Name: fmt.Sprintf("audit seq %d", r.Seq), Message: err.Error(), err: err})
				}
			}
		}
		if failed > 5 {
			rep.Problems = append(rep.Problems, Problem{Check: CheckRecorded, Message: fmt.Sprintf("… and %d more recorded decisions fail to evaluate", failed-5)})
		}
		step(CheckRecorded, t0, n, fmt.Sprintf("%d recent decisions re-evaluated", len(recs)))
	}
	if err := ctx.Err(); err != nil {
		// Out of time: what failed is the reload, not the items checked.
		rep.Problems = slices.DeleteFunc(rep.Problems, func(p Problem) bool {
			return errors.Is(p.err, context.DeadlineExceeded) || errors.Is(p.err, context.Canceled)
		})
		rep.Problems = append(rep.Problems, Problem{Check: CheckLoad, Message: "the checks did not finish in time: " + err.Error()})
	}
	if len(rep.Problems) > 0 {
		return nil, rep
	}
	rep.OK = true
	return rev, rep
}

func samplesFile(src Sources) string {
	if src.PoliciesDir == "" {
		return "policies/" + SamplesFile + " (embedded)"
	}
	return src.PoliciesDir + "/" + SamplesFile
}

func loadProblem(err error) Problem {
	var se *SampleError
	if errors.As(err, &se) {
		return Problem{Check: CheckSamples, File: se.File, Line: se.Line, Message: se.Message}
	}
	return Problem{Check: CheckLoad, Message: err.Error()}
}

func compileProblems(err error) []Problem {
	var ce *policy.CompileError
	if !errors.As(err, &ce) {
		return []Problem{{Check: CheckCompile, Message: err.Error()}}
	}
	out := make([]Problem, 0, len(ce.Diagnostics))
	for _, d := range ce.Diagnostics {
		msg := d.Message
		if d.Code != "" {
			msg = d.Code + ": " + msg
		}
		out = append(out, Problem{Check: CheckCompile, File: d.File, Line: d.Row, Message: msg})
	}
	return out
}

func testProblems(r *policy.TestReport) []Problem {
	var out []Problem
	for _, t := range r.Results {
		if t.Passed() || t.Outcome == "SKIPPED" {
			continue
		}
		msg := t.Outcome
		if t.Error != "" {
			msg += ": " + t.Error
		}
		out = append(out, Problem{Check: CheckTests, File: t.File, Line: t.Row, Name: t.Package + "." + t.Name, Message: msg})
	}
	if r.Passed+r.Failed+r.Errors == 0 {
		out = append(out, Problem{Check: CheckTests, Message: "the policies have no tests (test_ rules in *_test.rego files)"})
	}
	return out
}

// protocolProblems turns the findings that make a protocols directory
// unfit to load into problems: for CheckProtocols, files that do not parse,
// lint errors and two files in force with one id; for CheckSignatures,
// signatures and withdrawals that are present and do not verify. Missing
// signatures, dates and valid withdrawals are ordinary states, not
// problems (see continuity).
func protocolProblems(statuses []protocol.Status, check string) []Problem {
	var out []Problem
	for _, st := range statuses {
		for _, f := range st.Findings {
			var mine bool
			switch f.Kind {
			case protocol.FindingInvalid, protocol.FindingDuplicate:
				mine = check == CheckProtocols
			case protocol.FindingLint:
				mine = check == CheckProtocols && f.Severity == protocol.SeverityError
			case protocol.FindingSignature, protocol.FindingWithdrawal:
				mine = check == CheckSignatures
			}
			if mine {
				out = append(out, Problem{Check: check, File: f.File, Line: f.Line, Partner: f.Partner, KeyID: f.KeyID, Message: f.Message, kind: f.Kind})
			}
		}
	}
	return out
}

// continuity refuses a candidate in which a protocol in force now (in the
// serving revision) would stop being in force for any reason other than
// its dates, a signatory's withdrawal, or its file being removed: a
// protocol being edited or re-signed in place must not drop out of force.
// A protocol whose id is in force in the candidate (a new version) is
// fine.
func continuity(prev *Revision, next []protocol.Status, now time.Time) []Problem {
	inForce := map[string]bool{}
	for _, st := range next {
		if st.InForce {
			inForce[st.Protocol.ID] = true
		}
	}
	var out []Problem
	for _, old := range prev.Protocols {
		if !old.InForce || !now.Before(old.Until) || inForce[old.Protocol.ID] {
			continue
		}
		i := slices.IndexFunc(next, func(s protocol.Status) bool { return s.File == old.File })
		if i < 0 {
			continue // the file was removed: retiring a protocol is deliberate
		}
		st := next[i]
		ordinary := true
		var why []string
		for _, f := range st.Findings {
			if f.Severity != protocol.SeverityError {
				continue
			}
			why = append(why, f.Message)
			if f.Kind != protocol.FindingDate && f.Kind != protocol.FindingWithdrawn {
				ordinary = false
			}
		}
		if ordinary {
			continue
		}
		out = append(out, Problem{Check: CheckContinuity, File: st.File, Message: fmt.Sprintf(
			"%s is in force now and would not be after this reload (%s); restore its signatures, or remove the file to retire it",
			old.Protocol.ID, strings.Join(why, "; "))})
	}
	return out
}

// assumeSigned returns the statuses with every protocol that only lacks
// valid signatures marked in force (when its dates and withdrawals allow).
func assumeSigned(sts []protocol.Status, now time.Time) []protocol.Status {
	out := slices.Clone(sts)
	for i, st := range out {
		if st.InForce || !ProposalIncludes(st, true) {
			continue
		}
		if now.Before(st.Protocol.EffectiveFrom.Time()) || !now.Before(st.Until) {
			continue
		}
		st.InForce = true
		st.Reasons = []string{}
		st.Warnings = append(slices.Clone(st.Warnings), "checked as if signed")
		out[i] = st
	}
	return out
}

func protocolDetail(sts []protocol.Status) string {
	n := 0
	for _, s := range sts {
		if s.InForce {
			n++
		}
	}
	return fmt.Sprintf("%d files, %d in force", len(sts), n)
}

func countSigs(sts []protocol.Status) (n int) {
	for _, s := range sts {
		n += len(s.Signatures)
	}
	return n
}

func countWithdrawals(sts []protocol.Status) (n int) {
	for _, s := range sts {
		n += len(s.Withdrawals)
	}
	return n
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Rego tests are a pure function of the policy sources (they run on an
// empty store and bring their data with `with`), so a reload that changes
// only protocols does not run them again.
var testCache struct {
	sync.Mutex
	key string
	rep *policy.TestReport
}

func runTestsCached(ctx context.Context, src policy.Sources) (*policy.TestReport, error) {
	key := sourcesKey(src)
	testCache.Lock()
	defer testCache.Unlock()
	if testCache.key == key {
		return testCache.rep, nil
	}
	rep, err := policy.RunTests(ctx, src, policy.TestOptions{})
	if err != nil {
		return nil, err
	}
	testCache.key, testCache.rep = key, rep
	return rep, nil
}

func sourcesKey(src policy.Sources) string {
	h := sha256.New()
	for _, set := range []map[string]string{src.Modules, src.Tests} {
		names := make([]string, 0, len(set))
		for n := range set {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(h, "%s %d\n%s", n, len(set[n]), set[n])
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// probe is one generated input: for every rule of every protocol in the
// policy data, a request that the rule is about, with and without consent,
// and with an override where the rule allows one. Probes check that every
// path of the policy evaluates to a well-formed decision, not what the
// decision is (that is the samples' and the tests' job).
type probe struct {
	name string
	file string
	line int
	in   policy.Input
}

func probeInputs(rev *Revision, now time.Time) []probe {
	files := map[string]protocol.Status{}
	for _, st := range rev.Protocols {
		if st.Protocol != nil {
			files[st.Protocol.ID+"\x00"+st.Digest] = st
		}
	}
	var out []probe
	for _, pd := range rev.Policy.Data().Protocols {
		st := files[pd.ID+"\x00"+pd.Digest]
		at := now.UnixNano()
		if at < pd.EffectiveFromNS {
			at = pd.EffectiveFromNS
		}
		if at >= pd.ExpiresNS || st.Protocol == nil {
			continue
		}
		resolved := protocol.Resolve(st.Protocol, rev.Registry)
		for _, r := range resolved.Rules {
			if len(r.ProviderPartners) == 0 || len(r.RequesterPartners) == 0 {
				continue
			}
			prov, _ := rev.Registry.Partner(r.ProviderPartners[0])
			reqID := r.RequesterPartners[0]
			if reqID == prov.ID && len(r.RequesterPartners) > 1 {
				reqID = r.RequesterPartners[1]
			}
			req, _ := rev.Registry.Partner(reqID)
			role := "practitioner"
			if len(r.Requesters.Roles) > 0 {
				role = r.Requesters.Roles[0]
			}
			base := policy.Input{
				TimeNS:     at,
				Requester:  policy.Requester{Partner: req.ID, Type: string(req.Type), Practitioner: "probe", Role: role},
				Provider:   policy.Provider{Partner: prov.ID, Type: string(prov.Type), Sensitive: prov.Sensitive},
				Categories: slices.Clone(r.Categories),
				Consents:   []policy.Consent{},
			}
			for _, purpose := range r.Purposes {
				name := fmt.Sprintf("%s rule %s, purpose %s", pd.ID, r.ID, purpose)
				in := base
				in.Purpose = purpose
				out = append(out, probe{name: name + ", no consent", file: st.File, in: in})
				with := in
				with.Consents = []policy.Consent{{
					ID: "probe-consent", Outcome: "given", GivenBy: "parent", Purposes: []string{purpose},
					Categories:  slices.Clone(r.Categories),
					Recipients:  policy.Recipients{Partners: []string{req.ID}, Types: []string{}, Protocols: []string{pd.ID}},
					ValidFromNS: at - int64(time.Hour),
				}}
				out = append(out, probe{name: name + ", with consent", file: st.File, in: with})
				if r.Consent == protocol.ConsentOverridable && len(r.OverrideRoles) > 0 && len(r.OverrideGrounds) > 0 {
					ov := in
					ov.Requester.Role = r.OverrideRoles[0]
					ov.Override = policy.Override{Ground: r.OverrideGrounds[0], Justified: true}
					out = append(out, probe{name: name + ", override", file: st.File, in: ov})
				}
			}
		}
	}
	return out
}

// samplesDetail sums up the sample decisions, and says plainly when none
// of them tested this Trust: the shipped samples.yaml describes the demo
// Trust, so a new Trust's policy check would otherwise pass on "0 passed,
// 7 skipped" without a word.
func samplesDetail(rev *Revision, pass, skipped int) string {
	total := len(rev.Samples)
	d := fmt.Sprintf("%d passed, %d failed, %d skipped", pass, total-pass-skipped, skipped)
	var theirs string
	if total > 0 {
		theirs = rev.Samples[0].Trust
	}
	switch {
	case theirs != "" && rev.Registry != nil && theirs != rev.Registry.ID():
		d += fmt.Sprintf(": these are the samples of %s (the trust samples.yaml names), not of this Trust, %s, which has no sample decisions of its own; write a samples.yaml with trust: %s (docs/ig-guide.md)",
			theirs, rev.Registry.ID(), rev.Registry.ID())
	case total == 0:
		d += ": this Trust has no sample decisions; add some to samples.yaml (docs/ig-guide.md)"
	case skipped == total:
		d += ": none of the samples is about this Trust's partners and protocols in force (the shipped samples.yaml describes the demo Trust); write samples of your own (docs/ig-guide.md)"
	}
	return d
}
