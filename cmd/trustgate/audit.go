package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// auditCommand is `trustgate audit`: verify, snapshot, report, export
// (docs/auditing.md).
func auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Verify, copy, report on and export the audit log"}
	cmd.AddCommand(auditVerifyCommand(), auditSnapshotCommand(), auditReportCommand(), auditExportCommand(), auditMigrateCommand(),
		auditEntriesCommand(), auditStatsCommand()) // client.go
	return cmd
}

// loadJWKS reads a JWK set from a file or an http(s) URL, waiting at most
// timeout for the URL. A set that is not one, or a URL that answers other
// than 200, is a bad input (exit 1).
func loadJWKS(ctx context.Context, src string, timeout time.Duration) (jwk.Set, error) {
	var b []byte
	if strings.HasPrefix(src, "https://") || strings.HasPrefix(src, "http://") {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%w: jwks: %s answered %s", errFound, src, resp.Status)
		}
		if b, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20)); err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
	} else {
		var err error
		if b, err = os.ReadFile(src); err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
	}
	set, err := jwk.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: jwks: %s is not a JWK set: %w", errFound, src, err)
	}
	return set, nil
}

func auditVerifyCommand() *cobra.Command {
	var (
		db, jwks    string
		checkpoints []string
		timeout     time.Duration
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "verify --db FILE [--checkpoint FILE ...] [--jwks FILE|URL]",
		Short: "Check the whole log offline: chain, Merkle tree, checkpoints, index; name the first bad entry",
		Long: `Recomputes the hash chain and the Merkle tree over every entry, checks every
checkpoint stored in the file and every checkpoint given with --checkpoint (kept
outside the gateway) against the recomputed roots, checks their signatures with
the keys in --jwks (the Trust's copy of the gateway's /.well-known/jwks.json), and
checks the query index. Exit status 1 names the first damage found.
To verify a running gateway's log, take a snapshot first (trustgate audit snapshot).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := audit.VerifyOptions{OpenTimeout: timeout}
			if jwks != "" {
				set, err := loadJWKS(cmd.Context(), jwks, timeout)
				if err != nil {
					return err
				}
				o.Keys = set
			}
			for _, f := range checkpoints {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				o.Checkpoints = append(o.Checkpoints, audit.ExternalCheckpoint{Name: filepath.Base(f), JWS: b})
			}
			rep, err := audit.VerifyFile(cmd.Context(), db, o)
			if errors.Is(err, audit.ErrBadCheckpoint) {
				return fmt.Errorf("%w: %w", errFound, err)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, verifyResultOf(rep, o.Checkpoints))
			}
			fmt.Fprintf(out, "audit log OK: %d entries\n  chain head  %s\n  Merkle root %s\n  index       %d postings match the entries\n", rep.Entries, rep.Head, rep.Root, rep.Postings)
			if rep.Latest != nil {
				fmt.Fprintf(out, "  checkpoints %d stored, latest at size %d signed %s (kid %s): root matches\n", rep.Checkpoints, rep.Latest.Size, rep.Latest.Time.Format(time.RFC3339), rep.Latest.KeyID)
			} else {
				fmt.Fprintln(out, "  checkpoints none stored")
			}
			for i, x := range rep.External {
				fmt.Fprintf(out, "  external    %s: size %d signed %s: consistent with the log\n", o.Checkpoints[i].Name, x.Size, x.Time.Format(time.RFC3339))
			}
			if rep.SignaturesChecked {
				fmt.Fprintf(out, "  signatures  every checkpoint verifies with the keys in %s\n", jwks)
			} else {
				fmt.Fprintln(out, "  signatures  NOT checked: give --jwks with the Trust's copy of the gateway's public keys")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&db, "db", ".demo/data/audit.db", "audit log file (a snapshot, or a stopped gateway's log)")
	addFormat(cmd, &asJSON)
	cmd.Flags().StringArrayVar(&checkpoints, "checkpoint", nil, "a checkpoint kept outside the gateway (compact JWS file); repeatable")
	cmd.Flags().StringVar(&jwks, "jwks", "", "the gateway's public keys: a JWK set file or URL")
	addTimeout(cmd, &timeout, 2*time.Second)
	return cmd
}

// verifyResult is `audit verify --format json`: the verified log's
// figures (audit.Report), named as the rest of the JSON the gateway and
// its tools print.
type verifyResult struct {
	OK                bool               `json:"ok"`
	Entries           uint64             `json:"entries"`
	Head              string             `json:"head"`
	Root              string             `json:"root"`
	Postings          uint64             `json:"postings"`
	Checkpoints       int                `json:"checkpoints"`
	Latest            *checkpointResult  `json:"latest_checkpoint"`
	External          []checkpointResult `json:"external_checkpoints"`
	SignaturesChecked bool               `json:"signatures_checked"`
}

type checkpointResult struct {
	Name  string    `json:"name,omitempty"`
	Size  uint64    `json:"size"`
	Root  string    `json:"root"`
	Time  time.Time `json:"time"`
	KeyID string    `json:"kid"`
}

func verifyResultOf(rep *audit.Report, external []audit.ExternalCheckpoint) verifyResult {
	v := verifyResult{OK: true, Entries: rep.Entries, Head: rep.Head, Root: rep.Root, Postings: rep.Postings,
		Checkpoints: rep.Checkpoints, SignaturesChecked: rep.SignaturesChecked, External: []checkpointResult{}}
	if c := rep.Latest; c != nil {
		v.Latest = &checkpointResult{Size: c.Size, Root: c.Root, Time: c.Time, KeyID: c.KeyID}
	}
	for i, c := range rep.External {
		x := checkpointResult{Size: c.Size, Root: c.Root, Time: c.Time, KeyID: c.KeyID}
		if i < len(external) {
			x.Name = external[i].Name
		}
		v.External = append(v.External, x)
	}
	return v
}

func auditMigrateCommand() *cobra.Command {
	var (
		db, jwks string
		timeout  time.Duration
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "migrate --db FILE [--jwks FILE|URL]",
		Short: "Carry a log of an earlier format (2 or 3) into the current one, keeping the old file read-only",
		Long: `Checks the old log (chain, Merkle tree, every stored signed checkpoint; their
signatures too with --jwks), moves it aside to FILE.format-N (made read-only),
and writes a new log at FILE whose first entry commits to the old log's final
root, head and last signed checkpoint, followed by every old entry with its
old seq and hash (docs/audit-format.md §5). Run it with the gateway stopped.
Exit status 1 if the old log does not verify (nothing is changed then).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := audit.MigrateOptions{OpenTimeout: timeout}
			if jwks != "" {
				set, err := loadJWKS(cmd.Context(), jwks, timeout)
				if err != nil {
					return err
				}
				o.Keys = set
			}
			if _, err := os.Stat(db); err != nil {
				return err
			}
			tmp := db + ".migrating"
			rep, err := audit.Migrate(cmd.Context(), db, tmp, o)
			if errors.Is(err, audit.ErrBadCheckpoint) || errors.Is(err, audit.ErrUnsupportedVersion) {
				return fmt.Errorf("%w: %w", errFound, err)
			}
			if err != nil {
				return err
			}
			kept := fmt.Sprintf("%s.format-%d", db, rep.OldFormat)
			if _, err := os.Lstat(kept); err == nil {
				os.Remove(tmp)
				return fmt.Errorf("%s exists: move it away first", kept)
			}
			if err := os.Rename(db, kept); err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, db); err != nil {
				return fmt.Errorf("the new log is at %s (rename it to %s): %w", tmp, db, err)
			}
			return emit(cmd, asJSON, map[string]any{"old_file": kept, "new_file": db, "migration": rep}, func(out io.Writer) {
				fmt.Fprintf(out, "migrated format %d to format 4: %d entries\n  old log     %s (read-only, mode %s)\n  old root    %s\n  old head    %s\n  checkpoints %d matched the old tree\n  new log     %s: %d entries, head %s\n",
					rep.OldFormat, rep.Entries, kept, rep.OldFileMode, rep.OldRoot, rep.OldHead, rep.Checkpoints, db, rep.NewSize, rep.NewHead)
				if !rep.Signatures {
					fmt.Fprintln(out, "  signatures  NOT checked: give --jwks with the Trust's copy of the gateway's public keys")
				}
			})
		},
	}
	cmd.Flags().StringVar(&db, "db", ".demo/data/audit.db", "the audit log file of an earlier format (gateway stopped)")
	cmd.Flags().StringVar(&jwks, "jwks", "", "the gateway's public keys: a JWK set file or URL")
	addTimeout(cmd, &timeout, 2*time.Second)
	addFormat(cmd, &asJSON)
	return cmd
}

func auditSnapshotCommand() *cobra.Command {
	var (
		g       gatewayFlags
		db, out string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "snapshot --out COPY (--gateway URL --token-file F | --db FILE)",
		Short: "Write a consistent copy of the audit log: from a running gateway (auditor token) or a stopped one's file",
		Long: `With --gateway (the default), asks the running gateway for a copy
(GET /v1/audit/snapshot, role auditor), streamed from one read transaction while
the gateway keeps appending; the file is locked by the gateway, so this is the only
way to copy a live log. With --db, copies a log file no process holds.
The copy is written atomically (temporary file, fsync, rename) and then verified.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if cmd.Flags().Changed("db") {
				l, err := audit.Open(db, audit.Options{OpenTimeout: g.timeout, ReadOnly: true})
				if err != nil {
					return err
				}
				defer l.Close()
				if err := l.SnapshotFile(ctx, out); err != nil {
					return err
				}
			} else if err := snapshotFromGateway(ctx, &g, out); err != nil {
				return err
			}
			rep, err := audit.VerifyFile(ctx, out, audit.VerifyOptions{})
			if err != nil {
				return fmt.Errorf("snapshot written to %s, but it does not verify: %w", out, err)
			}
			return emit(cmd, asJSON, map[string]any{"file": out, "verify": verifyResultOf(rep, nil)}, func(w io.Writer) {
				fmt.Fprintf(w, "snapshot written to %s: %d entries, root %s (verify its checkpoints with `trustgate audit verify --db %s --jwks ...`)\n", out, rep.Entries, rep.Root, out)
			})
		},
	}
	g.add(cmd, "auditor", 5*time.Minute)
	cmd.Flags().StringVar(&db, "db", "", "copy this log file offline instead of asking the gateway")
	cmd.Flags().StringVar(&out, "out", "audit-snapshot.db", "where to write the copy")
	addFormat(cmd, &asJSON)
	return cmd
}

func snapshotFromGateway(ctx context.Context, g *gatewayFlags, out string) (err error) {
	resp, err := g.get(ctx, "/v1/audit/snapshot")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	n, err := io.Copy(f, resp.Body)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("snapshot: received %d of %d bytes", n, resp.ContentLength)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}

func auditReportCommand() *cobra.Command {
	var (
		g               gatewayFlags
		subject, jwks   string
		out             string
		withholdPractit bool
		asJSON          bool
	)
	cmd := &cobra.Command{
		Use:   "report --subject NHS [--withhold-practitioners] [--jwks FILE|URL] [--out FILE]",
		Short: "A child's access report: every disclosure and refusal, each proven to be in the signed log",
		Long: `Fetches GET /v1/subjects/{nhs}/access-report (role auditor or ig_lead), checks the
checkpoint's signature (with --jwks: the Trust's copy of the gateway's keys; by default
the gateway's own /.well-known/jwks.json), checks every entry's inclusion proof against
the checkpoint with the RFC 9162 verifier, checks that the entries link up with no gap,
and prints the report. --withhold-practitioners makes the family's copy: practitioners
are removed, recipients and purposes stay. --out writes the report (JSON) for the file.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if subject == "" {
				return &usageError{errors.New("--subject is required: the child's NHS number")}
			}
			ctx := cmd.Context()
			path := "/v1/subjects/" + url.PathEscape(subject) + "/access-report"
			if withholdPractit {
				path += "?withhold_practitioners=true"
			}
			resp, err := g.get(ctx, path)
			if err != nil {
				return err
			}
			raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
			resp.Body.Close()
			if err != nil {
				return err
			}
			var body struct {
				Report audit.AccessReport `json:"report"`
			}
			if err := json.Unmarshal(raw, &body); err != nil {
				return fmt.Errorf("report: %w", err)
			}
			src := jwks
			if src == "" {
				src = strings.TrimRight(g.url, "/") + "/.well-known/jwks.json"
			}
			keys, err := loadJWKS(ctx, src, g.timeout)
			if err != nil {
				return err
			}
			if err := checkReport(&body.Report, keys); err != nil {
				return fmt.Errorf("%w: %w", errFound, err)
			}
			if out != "" {
				if err := os.WriteFile(out, raw, 0o600); err != nil {
					return err
				}
			}
			ans := map[string]any{"report": &body.Report, "checked": true, "keys": src}
			return emit(cmd, asJSON, ans, func(w io.Writer) { printReport(w, &body.Report, src) })
		},
	}
	g.add(cmd, "auditor", 2*time.Minute)
	addFormat(cmd, &asJSON)
	cmd.Flags().StringVar(&subject, "subject", "", "the child's NHS number")
	cmd.Flags().BoolVar(&withholdPractit, "withhold-practitioners", false, "remove practitioners' identities (the family's copy)")
	cmd.Flags().StringVar(&jwks, "jwks", "", "the gateway's public keys (file or URL); default: the gateway's /.well-known/jwks.json")
	cmd.Flags().StringVar(&out, "out", "", "also write the report as JSON to this file")
	return cmd
}

// checkReport verifies an access report: the checkpoint's signature, each
// inclusion proof against the checkpoint, and the chain links.
func checkReport(r *audit.AccessReport, keys jwk.Set) error {
	cp, err := audit.ParseCheckpoint([]byte(r.Checkpoint), keys)
	if err != nil {
		return fmt.Errorf("the report's checkpoint: %w", err)
	}
	if cp.Size != r.Size || cp.Root != r.Root {
		return fmt.Errorf("the report's size and root are not those of its signed checkpoint")
	}
	for _, e := range r.Entries {
		if e.Entry == nil || e.Proof == nil {
			return fmt.Errorf("an entry has no proof")
		}
		if e.Proof.Seq != e.Entry.Seq || e.Proof.Size != cp.Size {
			return fmt.Errorf("entry %d: the proof is for entry %d in a tree of %d", e.Entry.Seq, e.Proof.Seq, e.Proof.Size)
		}
		if err := audit.VerifyInclusion(e.Proof, e.Stored, cp.Root); err != nil {
			return fmt.Errorf("entry %d: inclusion proof: %w", e.Entry.Seq, err)
		}
	}
	for i, e := range r.Entries {
		var want uint64
		if i+1 < len(r.Entries) {
			want = r.Entries[i+1].Entry.Seq
		}
		if e.Entry.PrevSubject != want {
			return fmt.Errorf("entry %d links to entry %d about the child, but the report's next entry is %d: an entry is missing", e.Entry.Seq, e.Entry.PrevSubject, want)
		}
	}
	return nil
}

func printReport(w io.Writer, r *audit.AccessReport, keys string) {
	cp, _ := audit.ParseCheckpoint([]byte(r.Checkpoint), nil)
	fmt.Fprintf(w, "Access report: %d entries about the child (pseudonym %s…)\n", len(r.Entries), short(r.Subject, 12))
	fmt.Fprintf(w, "Checkpoint: size %d, root %s, signed %s by key %s (verified with %s)\n", r.Size, r.Root, cp.Time.Format(time.RFC3339), cp.KeyID, keys)
	fmt.Fprintf(w, "Every entry's inclusion proof verifies against it, and the entries link with no gap.\n")
	if r.PractitionersWithheld {
		fmt.Fprintln(w, "Practitioners' identities are withheld in this copy.")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tWHAT\tREQUESTER\tPRACTITIONER\tPROVIDER\tPURPOSE\tPROTOCOL\tBASIS / OVERRIDE")
	for _, re := range r.Entries {
		e := re.Entry
		what := string(e.Kind)
		if e.Decision != "" {
			what += ":" + e.Decision
		}
		basis := e.LawfulBasis
		if e.OverrideGround != "" {
			basis = "override: " + e.OverrideGround
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format("2006-01-02 15:04"), what,
			dash(e.Requester), dash(e.Practitioner), dash(e.Provider), dash(e.Purpose), dash(strings.Trim(e.Protocol+" v"+e.ProtocolVersion, " v")), dash(short(basis, 48)))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func auditExportCommand() *cobra.Command {
	var (
		db, from, to, format, out string
		timeout                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "export --db FILE [--from T] [--to T] --format jsonl|csv [--out FILE]",
		Short: "Export entries in a time range as JSON lines or CSV, streaming (a snapshot or a stopped gateway's log)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseWhen("--from", from)
			if err != nil {
				return err
			}
			t, err := parseWhen("--to", to)
			if err != nil {
				return err
			}
			if format == "json" { // the shared --format json: JSON lines
				format = audit.FormatJSONL
			}
			if format != audit.FormatJSONL && format != audit.FormatCSV {
				return &usageError{fmt.Errorf("--format must be jsonl (or json) or csv")}
			}
			l, err := audit.Open(db, audit.Options{OpenTimeout: timeout, ReadOnly: true})
			if err != nil {
				return err
			}
			defer l.Close()
			var w io.Writer = cmd.OutOrStdout()
			if out != "" {
				fh, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer fh.Close()
				w = fh
			}
			n, err := l.Export(cmd.Context(), w, f, t, format)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d entries\n", n)
			return nil
		},
	}
	cmd.Flags().StringVar(&db, "db", ".demo/data/audit.db", "audit log file (a snapshot, or a stopped gateway's log)")
	cmd.Flags().StringVar(&from, "from", "", "first time included (RFC 3339 or YYYY-MM-DD)")
	cmd.Flags().StringVar(&to, "to", "", "first time excluded (RFC 3339 or YYYY-MM-DD)")
	cmd.Flags().StringVar(&format, "format", audit.FormatJSONL, "jsonl (json: the same, one entry per line) or csv")
	cmd.Flags().StringVar(&out, "out", "", "write to this file instead of standard output")
	addTimeout(cmd, &timeout, 2*time.Second)
	return cmd
}

func parseWhen(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, &usageError{fmt.Errorf("%s: %q is not an RFC 3339 time or a YYYY-MM-DD date", flag, s)}
}
