package whatif

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/revision"
	"github.com/childrens-trust/trustgate/policies"
	"github.com/childrens-trust/trustgate/protocols"
)

// Proposal is a proposed revision, given as edits to the serving sources:
// files to add or replace (name → content) or, with a nil content, to
// remove, in the policies directory and in the protocols directory. Names
// are plain file names: *.rego and samples.yaml for policies; *.yaml,
// *.yml, *.jws and *.withdrawals.json for protocols (trust.yaml is the
// registry).
type Proposal struct {
	From, To  time.Time
	Policies  map[string]*string
	Protocols map[string]*string
	// AssumeSigned treats a protocol that lacks signatures (or whose
	// signatures no longer verify because it was edited) as signed: the
	// what-if is run before the signatories sign.
	AssumeSigned bool
	Examples     int
}

// ErrProposal classifies a proposal that cannot be used: a bad file name,
// or policies that do not compile (then wrapped with the
// *policy.CompileError).
var ErrProposal = errors.New("invalid proposal")

// ValidName says whether name may be edited in the policies (dir
// "policies") or protocols (dir "protocols") directory of a proposal.
func ValidName(dir, name string) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\`) || len(name) > 128 {
		return fmt.Errorf("%w: %q is not a plain file name", ErrProposal, name)
	}
	switch dir {
	case "policies":
		if strings.HasSuffix(name, ".rego") || name == revision.SamplesFile {
			return nil
		}
		return fmt.Errorf("%w: %q: a policies file is a .rego file or %s", ErrProposal, name, revision.SamplesFile)
	case "protocols":
		for _, suf := range []string{".yaml", ".yml", protocol.SignatureSuffix, protocol.WithdrawalSuffix} {
			if strings.HasSuffix(name, suf) {
				return nil
			}
		}
		return fmt.Errorf("%w: %q: a protocols file is .yaml, .yml, %s or %s", ErrProposal, name, protocol.SignatureSuffix, protocol.WithdrawalSuffix)
	}
	return fmt.Errorf("%w: unknown directory %q", ErrProposal, dir)
}

// ProtocolNote says whether a protocol of the proposal takes part in the
// replay, and why not.
type ProtocolNote struct {
	ID       string   `json:"id,omitempty"`
	Version  string   `json:"version,omitempty"`
	File     string   `json:"file"`
	Included bool     `json:"included"`
	Assumed  bool     `json:"assumed_signed,omitempty"` // included only because AssumeSigned
	Reasons  []string `json:"reasons"`
}

// Result is a what-if report with the proposal it was made against.
type Result struct {
	*Report
	Protocols []ProtocolNote `json:"protocols"`
}

// Runner runs what-if replays against the audit log, for proposals made
// over the serving sources.
type Runner struct {
	Log     *audit.Log
	Sources revision.Sources // the serving sources the proposal edits
	Now     func() time.Time
	// Timeout bounds one run (default 25s: the answer must beat the
	// HTTP write timeout); TempDir is where a proposal is written out.
	Timeout time.Duration
	TempDir string
}

// Run writes the proposal out over a copy of the serving sources, builds
// it, and replays the recorded decisions of [p.From, p.To) against it.
func (r *Runner) Run(ctx context.Context, p Proposal) (*Result, error) {
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	dir, err := os.MkdirTemp(r.TempDir, "trustgate-whatif-")
	if err != nil {
		return nil, fmt.Errorf("what-if: %w", err)
	}
	defer os.RemoveAll(dir)
	src, err := r.materialize(dir, p)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	return Run(ctx, AuditSource(r.Log), src, now, p)
}

// Run builds the proposal at src and replays the decisions of source
// against it (the CLI's entry point; Runner.Run's too).
func Run(ctx context.Context, source Source, src revision.Sources, now time.Time, p Proposal) (*Result, error) {
	rev, err := revision.Proposal(ctx, src, now, p.AssumeSigned)
	if err != nil {
		return nil, fmt.Errorf("what-if: %w: %w", ErrProposal, err)
	}
	rep, err := Replay(ctx, rev.Policy, rev.PolicySources(), source, Options{From: p.From, To: p.To, Examples: p.Examples})
	if err != nil {
		return nil, err
	}
	return &Result{Report: rep, Protocols: Notes(rev, p.AssumeSigned)}, nil
}

// Notes says, for each protocol of a proposal, whether it takes part.
func Notes(rev *revision.Revision, assumeSigned bool) []ProtocolNote {
	out := []ProtocolNote{}
	for _, st := range rev.Protocols {
		n := ProtocolNote{File: filepath.Base(st.File), Reasons: st.Reasons}
		if st.Protocol != nil {
			n.ID, n.Version = st.Protocol.ID, st.Protocol.Version
		}
		n.Included = revision.ProposalIncludes(st, assumeSigned)
		n.Assumed = n.Included && !revision.ProposalIncludes(st, false)
		out = append(out, n)
	}
	return out
}

// materialize copies the serving policies and protocols into dir and
// applies the proposal's edits.
func (r *Runner) materialize(dir string, p Proposal) (revision.Sources, error) {
	src := r.Sources
	pol, prot := filepath.Join(dir, "policies"), filepath.Join(dir, "protocols")
	var err error
	if src.PoliciesDir != "" {
		err = copyDir(pol, os.DirFS(src.PoliciesDir))
	} else {
		err = copyDir(pol, policies.FS)
	}
	if err == nil {
		if src.ProtocolsDir != "" {
			err = copyDir(prot, os.DirFS(src.ProtocolsDir))
		} else {
			err = copyDir(prot, protocols.FS)
		}
	}
	if err != nil {
		return src, fmt.Errorf("what-if: copy the serving sources: %w", err)
	}
	for _, ed := range []struct {
		dir   string
		path  string
		files map[string]*string
	}{{"policies", pol, p.Policies}, {"protocols", prot, p.Protocols}} {
		names := make([]string, 0, len(ed.files))
		for n := range ed.files {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			if err := ValidName(ed.dir, n); err != nil {
				return src, err
			}
			path := filepath.Join(ed.path, n)
			if text := ed.files[n]; text == nil {
				if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return src, fmt.Errorf("what-if: %w", err)
				}
			} else if err := os.WriteFile(path, []byte(*text), 0o600); err != nil {
				return src, fmt.Errorf("what-if: %w", err)
			}
		}
	}
	src.PoliciesDir, src.ProtocolsDir = pol, prot
	if _, edited := p.Protocols[protocol.RegistryFile]; edited || src.Registry == "" {
		src.Registry = "" // the copy's trust.yaml, its key files beside it
	}
	return src, nil
}

// copyDir copies fsys (files and subdirectories, no symlinks) into dir.
func copyDir(dir string, fsys fs.FS) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
}
