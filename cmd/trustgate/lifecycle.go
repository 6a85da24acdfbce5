package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/childrens-trust/trustgate/internal/revision"
	"github.com/childrens-trust/trustgate/internal/schema"
	"github.com/childrens-trust/trustgate/internal/whatif"
	"github.com/childrens-trust/trustgate/policies"
)

// Tools for information governance leads (docs/ig-guide.md): run the
// policies' tests, check a revision the way a reload does, lint a
// protocol, withdraw from one. Each exits non-zero when it finds a
// problem, so that it fits a review pipeline.

func policyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Test and check policies; replay decisions against a proposed revision"}
	cmd.AddCommand(policyTestCommand(), policyCheckCommand(), policyWhatIfCommand(), policyExportCommand())
	return cmd
}

func loadPolicies(dir string) (policy.Sources, string, error) {
	if dir == "" {
		src, err := policy.LoadFS(policies.FS)
		return src, "the embedded policies", err
	}
	if _, err := os.Stat(dir); err != nil {
		return policy.Sources{}, dir, err // a missing directory is named as such (exit 1)
	}
	src, err := policy.LoadDir(dir)
	return src, dir, err
}

func policyExportCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "export DIR",
		Short: "Write the embedded policies (Rego, tests, sample decisions) into DIR, to edit them",
		Long: `Write the policies built into this binary - the Rego modules, their tests
and samples.yaml - into DIR (created if needed), so that an IG lead can edit
them and point the gateway's policies_dir at them. Refuses to overwrite a
file.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			names, err := fs.Glob(policies.FS, "*")
			if err != nil {
				return err
			}
			written := []string{}
			for _, n := range names {
				b, err := fs.ReadFile(policies.FS, n)
				if err != nil {
					return err
				}
				f, err := os.OpenFile(filepath.Join(dir, n), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					return err
				}
				if _, err := f.Write(b); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				written = append(written, filepath.Join(dir, n))
			}
			return emit(cmd, asJSON, map[string]any{"dir": dir, "written": written}, func(w io.Writer) {
				for _, f := range written {
					fmt.Fprintf(w, "wrote %s\n", f)
				}
			})
		},
	}
	addFormat(cmd, &asJSON)
	return cmd
}

func policyTestCommand() *cobra.Command {
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:   "test [DIR]",
		Short: "Run the Rego tests of a policies directory (default: the embedded policies) and report coverage",
		Long: `Run every test_ rule of the *_test.rego files in DIR with OPA's tester, as
'opa test' does, and print one line per test (PASS, FAIL, ERROR) with its
file and line, then how much of each policy file the tests reach. Exits 1
when a test fails or the policies do not compile.`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, name, err := loadPolicies(argOr(args, 0))
			if err != nil {
				return err
			}
			rep, err := policy.RunTests(cmd.Context(), src, policy.TestOptions{Coverage: true})
			out := cmd.OutOrStdout()
			if err != nil {
				if ce, ok := err.(*policy.CompileError); ok {
					for _, d := range ce.Diagnostics {
						fmt.Fprintln(out, d)
					}
					return fmt.Errorf("%w: %s do not compile", errFound, name)
				}
				return err
			}
			if asJSON {
				if err := printJSON(out, rep); err != nil {
					return err
				}
			} else {
				printTests(out, rep, quiet)
			}
			if !rep.OK() {
				return fmt.Errorf("%w: %d failed, %d errors, %d passed in %s", errFound, rep.Failed, rep.Errors, rep.Passed, name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	addFormat(cmd, &asJSON)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only failures and the summary")
	return cmd
}

func printTests(w io.Writer, rep *policy.TestReport, quiet bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rep.Results {
		if quiet && r.Passed() {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s:%d\t%s.%s\t(%s)\n", r.Outcome, r.File, r.Row, r.Package, r.Name, r.Duration.Round(10*time.Microsecond))
		if r.Error != "" {
			fmt.Fprintf(tw, "\t\t  %s\t\n", strings.ReplaceAll(r.Error, "\n", " "))
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%d tests: %d passed, %d failed, %d errors, %d skipped\n", rep.Passed+rep.Failed+rep.Errors+rep.Skipped, rep.Passed, rep.Failed, rep.Errors, rep.Skipped)
	if len(rep.Coverage) == 0 {
		return
	}
	fmt.Fprintf(w, "coverage: %.1f%% of the policy lines are reached by the tests\n", rep.CoveragePercent)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range rep.Coverage {
		missed := ""
		if len(c.Missed) > 0 {
			missed = "not reached: lines " + strings.Join(c.Missed, ", ")
		}
		fmt.Fprintf(tw, "  %s\t%.1f%%\t(%d of %d lines)\t%s\n", c.File, c.Percent, c.Covered, c.Covered+c.NotCovered, missed)
	}
	_ = tw.Flush()
}

func policyCheckCommand() *cobra.Command {
	var protocolsDir, registryPath, at string
	var asJSON, assumeSigned bool
	cmd := &cobra.Command{
		Use:   "check [DIR]",
		Short: "Check a policies directory with a protocols directory exactly as a reload does",
		Long: `Load the policies in DIR (default: the embedded policies) with the protocols
in --protocols (default: the embedded demo protocols, unsigned) and apply
every check a reload applies before it activates a revision: a strict
compile, the Rego tests, every protocol parsed and linted, every signature
and withdrawal verified, the sample decisions (DIR/samples.yaml), and a
probe of every rule of every protocol in force. Every problem is printed
with its file and line, or its signature. Exits 1 on any problem.`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now, err := parseInstant(at, time.Now())
			if err != nil {
				return &usageError{fmt.Errorf("--at: %w", err)}
			}
			src := revision.Sources{PoliciesDir: argOr(args, 0), ProtocolsDir: protocolsDir, Registry: registryPath, Settings: policy.Settings{OverrideReviewDays: 5}}
			_, rep := revision.Load(cmd.Context(), src, now, "policy check", revision.Options{AssumeSigned: assumeSigned})
			out := cmd.OutOrStdout()
			if asJSON {
				if err := printJSON(out, rep); err != nil {
					return err
				}
			} else {
				printRevisionReport(out, rep)
			}
			if !rep.OK {
				return fmt.Errorf("%w: %d problem(s)", errFound, len(rep.Problems))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&protocolsDir, "protocols", "", "protocols directory (with trust.yaml); default: the embedded demo protocols")
	cmd.Flags().StringVar(&registryPath, "registry", "", "registry file; default: PROTOCOLS/trust.yaml")
	cmd.Flags().StringVar(&at, "at", "now", "check as of this time (YYYY-MM-DD or RFC 3339)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	addFormat(cmd, &asJSON)
	cmd.Flags().BoolVar(&assumeSigned, "assume-signed", false, "check a draft as if its signatories had signed it (unsigned or edited protocols count as in force)")
	return cmd
}

// printRevisionReport prints a revision check: one line per check, then every
// problem, then the samples.
func printRevisionReport(w io.Writer, rep *revision.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range rep.Steps {
		mark := "ok"
		if !s.OK {
			mark = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Check, mark, s.Detail)
	}
	_ = tw.Flush()
	if len(rep.Problems) > 0 {
		fmt.Fprintf(w, "\n%d problem(s):\n", len(rep.Problems))
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "  %s\n", p)
			if p.Partner != "" || p.KeyID != "" {
				fmt.Fprintf(w, "      signatory %s, key %s\n", cmp.Or(p.Partner, "?"), cmp.Or(p.KeyID, "?"))
			}
		}
	}
	if len(rep.Samples) > 0 {
		fmt.Fprintln(w, "\nsamples:")
		for _, s := range rep.Samples {
			line := fmt.Sprintf("  %-7s %s (line %d)", strings.ToUpper(s.Outcome), s.Name, s.Line)
			if s.Detail != "" {
				line += ": " + s.Detail
			}
			fmt.Fprintln(w, line)
		}
	}
	if rep.OK {
		fmt.Fprintf(w, "\nrevision %s passes every check\n", rep.Revision)
	}
}

// lintLine is one problem protocol lint reports.
type lintLine struct {
	Severity protocol.Severity `json:"severity"`
	Line     int               `json:"line,omitempty"`
	Field    string            `json:"field"`
	Message  string            `json:"message"`
	Check    string            `json:"check"` // schema (docs/schemas) or registry
}

// printLint prints lint problems, one line each with file:line, or as JSON.
func printLint(out io.Writer, path string, lines []lintLine, asJSON bool) {
	if asJSON {
		_ = printJSON(out, map[string]any{"file": path, "problems": append([]lintLine{}, lines...)})
		return
	}
	for _, l := range lines {
		loc := path
		if l.Line > 0 {
			loc = fmt.Sprintf("%s:%d", path, l.Line)
		}
		fmt.Fprintf(out, "%s: %s: %s (%s)\n", l.Severity, loc, l.Message, l.Field)
	}
}

func protocolLintCommand() *cobra.Command {
	var regPath, at string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "lint FILE",
		Short: "Check a protocol against the registry: unknown partners, purposes, categories and roles, rules no one can satisfy, dates out of order",
		Long: `Parse FILE strictly and check it against the partner registry (default:
trust.yaml beside FILE), without looking at signatures. Every problem is
printed with its line and field path. Exits 1 when there is an error;
warnings (a review date passed, a type no signatory has) do not fail.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now, err := parseInstant(at, time.Now())
			if err != nil {
				return &usageError{fmt.Errorf("--at: %w", err)}
			}
			path := args[0]
			rp := cmp.Or(regPath, filepath.Join(filepath.Dir(path), protocol.RegistryFile))
			reg, err := registry.Load(cmd.Context(), rp)
			if err != nil {
				return err
			}
			doc, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			// First the published schema (docs/schemas/protocol.schema.json),
			// the one an editor checks the file with as it is typed.
			sprobs, err := schema.CheckYAML(schema.Protocol, doc)
			if err != nil {
				return fmt.Errorf("%w: %s: %w", errFound, path, err)
			}
			if len(sprobs) > 0 {
				var lines []lintLine
				for _, sp := range sprobs {
					lines = append(lines, lintLine{Severity: protocol.SeverityError, Line: protocol.Locate(doc, sp.Field), Field: sp.Field, Message: sp.Message, Check: "schema"})
				}
				printLint(out, path, lines, asJSON)
				return fmt.Errorf("%w: %s: %d error(s) against docs/schemas/%s", errFound, path, len(sprobs), schema.Protocol)
			}
			p, err := protocol.Parse(doc)
			if err != nil {
				st := protocol.Evaluate(path, doc, nil, reg, now)
				for _, f := range st.Findings {
					if f.Kind == protocol.FindingInvalid {
						fmt.Fprintf(out, "error: %s\n", f)
					}
				}
				return fmt.Errorf("%w: %s is not a valid protocol", errFound, path)
			}
			problems := protocol.Lint(p, reg, now)
			errs := 0
			var lines []lintLine
			for _, pr := range problems {
				lines = append(lines, lintLine{Severity: pr.Severity, Line: protocol.Locate(doc, pr.Field), Field: pr.Field, Message: pr.Message, Check: "registry"})
				if pr.Severity == protocol.SeverityError {
					errs++
				}
			}
			printLint(out, path, lines, asJSON)
			if errs > 0 {
				return fmt.Errorf("%w: %s: %d error(s)", errFound, path, errs)
			}
			if !asJSON {
				fmt.Fprintf(out, "%s (%s version %s): no errors, %d warning(s)\n", path, p.ID, p.Version, len(problems))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&regPath, "registry", "", "registry file; default: trust.yaml beside FILE")
	cmd.Flags().StringVar(&at, "at", "now", "lint as of this time (review dates)")
	addFormat(cmd, &asJSON)
	return cmd
}

func protocolWithdrawCommand() *cobra.Command {
	var keyPath, partner, effective string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "withdraw --key KEY --effective TIME FILE",
		Short: "Withdraw a signatory from a protocol with a signed withdrawal (FILE.withdrawals.json)",
		Long: `Sign, with the signatory's private key, a withdrawal from the protocol in
FILE (its id and version) from TIME (YYYY-MM-DD, RFC 3339 or "now"), and
add it to FILE.withdrawals.json beside the protocol. Once the gateway has
loaded it, the protocol is in force for no one from TIME. See
docs/protocols.md.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, who, at, now, err := withdrawalArgs(keyPath, effective, partner)
			if err != nil {
				return err
			}
			if err := protocol.WithdrawFile(args[0], key, who, at, now); err != nil {
				if errors.Is(err, protocol.ErrNotSignatory) || errors.Is(err, protocol.ErrInvalid) || errors.Is(err, protocol.ErrWithdrawalFile) {
					return fmt.Errorf("%w: %w", errFound, err)
				}
				return err
			}
			res := withdrawnResult{File: args[0], Signer: who, Effective: at.UTC(), Withdrawals: args[0] + protocol.WithdrawalSuffix}
			return emit(cmd, asJSON, res, func(w io.Writer) {
				fmt.Fprintf(w, "%s withdraws from %s from %s (%s)\nthe protocol is in force for no one from then, once the gateway has reloaded\n",
					who, args[0], at.UTC().Format(time.RFC3339), res.Withdrawals)
			})
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "the signatory's private JWK (required)")
	cmd.Flags().StringVar(&partner, "partner", "", "partner id; default: from the key's kid")
	cmd.Flags().StringVar(&effective, "effective", "", `when the withdrawal takes effect: YYYY-MM-DD, RFC 3339 or "now" (required)`)
	addFormat(cmd, &asJSON)
	return cmd
}

// parseInstant reads "now", a date (midnight UTC) or an RFC 3339 time.
func parseInstant(s string, now time.Time) (time.Time, error) {
	switch s {
	case "", "now":
		return now, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not now, YYYY-MM-DD or RFC 3339", s)
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MaximumNArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

func argOr(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}

func policyWhatIfCommand() *cobra.Command {
	var policiesDir, protocolsDir, registryPath, since, from, to, db string
	var assumeSigned, asJSON bool
	var examples int
	var g gatewayFlags
	cmd := &cobra.Command{
		Use:   "whatif --policies DIR --protocols DIR --since 30d (--db FILE | --gateway URL)",
		Short: "Replay the recorded decisions of a period against a proposed revision; report what would change",
		Long: `Build the revision in --policies (default: the embedded policies) and
--protocols (default: the embedded demo protocols), replay against it every
decision recorded in the audit log --db during the period (--since, or
--from and --to), and report the decisions whose outcome would change:
allow to deny, deny to allow, categories widened or narrowed, another rule,
or a failure to evaluate; grouped by change, protocol rule and purpose,
with counts and example audit sequence numbers.

With --assume-signed (the default) a protocol that lacks signatures, or
whose signatures no longer verify because it was edited, is replayed as if
signed: run the what-if before collecting signatures. The audit log is
opened read-only; a running gateway holds it, so run this on a snapshot
(GET /v1/audit/snapshot), or give --gateway and an ig_lead's --token: the
files of --policies and --protocols are then sent to the gateway
(POST /v1/admin/whatif), which replays its own log against them.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			p := whatif.Proposal{To: now, AssumeSigned: assumeSigned, Examples: examples}
			var err error
			if to != "" {
				if p.To, err = parseInstant(to, now); err != nil {
					return &usageError{fmt.Errorf("--to: %w", err)}
				}
			}
			switch {
			case from != "" && cmd.Flags().Changed("since"):
				return &usageError{fmt.Errorf("give --since or --from, not both")}
			case from != "":
				if p.From, err = parseInstant(from, now); err != nil {
					return &usageError{fmt.Errorf("--from: %w", err)}
				}
			default:
				d, err := whatif.ParseSince(since)
				if err != nil {
					return &usageError{fmt.Errorf("--since: %w", err)}
				}
				p.From = p.To.Add(-d)
			}
			if db == "" && (cmd.Flags().Changed("gateway") || os.Getenv(envAddr) != "") {
				return whatIfViaGateway(cmd, &g, policiesDir, protocolsDir, p, asJSON)
			}
			if db == "" {
				return &usageError{fmt.Errorf("--db or --gateway (or $%s) is required", envAddr)}
			}
			l, err := audit.Open(db, audit.Options{ReadOnly: true, OpenTimeout: g.timeout})
			if err != nil {
				return err
			}
			defer l.Close()
			src := revision.Sources{PoliciesDir: policiesDir, ProtocolsDir: protocolsDir, Registry: registryPath, Settings: policy.Settings{OverrideReviewDays: 5}}
			res, err := whatif.Run(cmd.Context(), whatif.AuditSource(l), src, now, p)
			if err != nil {
				var ce *policy.CompileError
				if errors.As(err, &ce) {
					for _, d := range ce.Diagnostics {
						fmt.Fprintln(cmd.OutOrStdout(), d)
					}
					return fmt.Errorf("%w: the proposed policies do not compile", errFound)
				}
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			printWhatIf(cmd.OutOrStdout(), res)
			return nil
		},
	}
	cmd.Flags().StringVar(&policiesDir, "policies", "", "proposed policies directory; default: the embedded policies")
	cmd.Flags().StringVar(&protocolsDir, "protocols", "", "proposed protocols directory (with trust.yaml); default: the embedded demo protocols")
	cmd.Flags().StringVar(&registryPath, "registry", "", "registry file; default: PROTOCOLS/trust.yaml")
	cmd.Flags().StringVar(&since, "since", "30d", "the period: the last N hours (h), days (d) or weeks (w) before --to")
	cmd.Flags().StringVar(&from, "from", "", "the period's start (YYYY-MM-DD or RFC 3339), instead of --since")
	cmd.Flags().StringVar(&to, "to", "", "the period's end (default: now)")
	cmd.Flags().StringVar(&db, "db", "", "the audit log (a snapshot, or the log of a stopped gateway)")
	cmd.Flags().BoolVar(&assumeSigned, "assume-signed", true, "replay protocols that lack signatures as if signed")
	cmd.Flags().IntVar(&examples, "examples", 5, "example audit sequence numbers per group")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	addFormat(cmd, &asJSON)
	g.add(cmd, "ig_lead", 2*time.Minute)
	cmd.Flags().Lookup("gateway").Usage = "without --db: ask this running gateway (" + envAddr + "); the proposal's files are sent to POST /v1/admin/whatif (role ig_lead)"
	return cmd
}

// whatIfViaGateway sends the files of the proposal's directories to a
// running gateway, which replays its own audit log against them.
func whatIfViaGateway(cmd *cobra.Command, g *gatewayFlags, policiesDir, protocolsDir string, p whatif.Proposal, asJSON bool) error {
	req := map[string]any{"from": p.From.UTC().Format(time.RFC3339Nano), "to": p.To.UTC().Format(time.RFC3339Nano),
		"assume_signed": p.AssumeSigned, "examples": p.Examples}
	for key, dir := range map[string]string{"policies": policiesDir, "protocols": protocolsDir} {
		if dir == "" {
			continue
		}
		files, err := proposalFiles(key, dir)
		if err != nil {
			return err
		}
		req[key] = files
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	resp, err := g.do(cmd.Context(), http.MethodPost, "/v1/admin/whatif", body)
	if err != nil {
		return fmt.Errorf("what-if: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("what-if: %w", err)
	}
	var answer struct {
		WhatIf      *whatif.Result      `json:"whatif"`
		Diagnostics []policy.Diagnostic `json:"diagnostics"`
		Error       struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return fmt.Errorf("%w: what-if: the gateway answered %s: %s", errFound, resp.Status, raw)
	}
	out := cmd.OutOrStdout()
	switch {
	case resp.StatusCode == http.StatusUnprocessableEntity:
		for _, d := range answer.Diagnostics {
			fmt.Fprintln(out, d)
		}
		return fmt.Errorf("%w: %s", errFound, answer.Error.Message)
	case resp.StatusCode != http.StatusOK || answer.WhatIf == nil:
		return gatewayError(resp, raw)
	case asJSON:
		return printJSON(out, answer.WhatIf)
	}
	printWhatIf(out, answer.WhatIf)
	return nil
}

// proposalFiles reads the files of dir a proposal may carry. A protocol
// without a signature or withdrawals file beside it is sent with that
// file removed (null), so the proposal is the directory as it is.
func proposalFiles(kind, dir string) (map[string]*string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]*string{}
	for _, e := range entries {
		if e.IsDir() || whatif.ValidName(kind, e.Name()) != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		text := string(b)
		files[e.Name()] = &text
	}
	if kind == "protocols" {
		for name := range files {
			if ext := filepath.Ext(name); (ext == ".yaml" || ext == ".yml") && name != protocol.RegistryFile {
				for _, suffix := range []string{protocol.SignatureSuffix, protocol.WithdrawalSuffix} {
					if _, ok := files[name+suffix]; !ok {
						files[name+suffix] = nil
					}
				}
			}
		}
	}
	return files, nil
}

func printWhatIf(w io.Writer, res *whatif.Result) {
	fmt.Fprintln(w, res.Summary())
	fmt.Fprintf(w, "%s (%d policy evaluations, %s)\n", res.Method, res.Evaluations, res.Duration.Round(time.Millisecond))
	if len(res.Groups) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CHANGE\tRULE\tPURPOSE\tCOUNT\tEXAMPLES (audit seq)")
		for _, g := range res.Groups {
			ex := make([]string, len(g.Examples))
			for i, s := range g.Examples {
				ex[i] = fmt.Sprint(s)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", g.Change, g.Rule, g.Purpose, g.Count, strings.Join(ex, ", "))
		}
		_ = tw.Flush()
	}
	fmt.Fprintln(w, "\nprotocols of the proposal:")
	for _, n := range res.Protocols {
		id := cmp.Or(n.ID, "?")
		switch {
		case n.Assumed:
			fmt.Fprintf(w, "  %s v%s (%s): replayed as if signed (%s)\n", id, n.Version, n.File, strings.Join(n.Reasons, "; "))
		case n.Included:
			fmt.Fprintf(w, "  %s v%s (%s): replayed\n", id, n.Version, n.File)
		default:
			fmt.Fprintf(w, "  %s (%s): NOT replayed: %s\n", id, n.File, strings.Join(n.Reasons, "; "))
		}
	}
}

// withdrawalArgs reads what a signed withdrawal (of a protocol or of an
// appointment) needs from its flags: the signer's private key, who signs
// (as, or the partner named by the key's kid), and the instant it takes
// effect (--effective, read as of now).
func withdrawalArgs(keyPath, effective, as string) (key jwk.Key, who string, at, now time.Time, err error) {
	if keyPath == "" || effective == "" {
		return nil, "", at, now, &usageError{fmt.Errorf("--key and --effective are required")}
	}
	now = time.Now()
	if at, err = parseInstant(effective, now); err != nil {
		return nil, "", at, now, &usageError{fmt.Errorf("--effective: %w", err)}
	}
	key, kidSigner, err := protocol.ReadPrivateKey(keyPath)
	if err != nil {
		return nil, "", at, now, err
	}
	return key, cmp.Or(as, kidSigner), at, now, nil
}
