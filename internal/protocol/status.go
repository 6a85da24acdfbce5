package protocol

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/childrens-trust/trustgate/internal/registry"
)

// RegistryFile is the partner registry's file name; LoadDir skips it.
const RegistryFile = "trust.yaml"

// Status is the verdict on one protocol file as of a given time.
type Status struct {
	// File is the path the document was read from (or the name given to
	// Evaluate).
	File string `json:"file"`
	// Digest is the hex SHA-256 of the file's bytes: what was signed.
	Digest string `json:"digest"`
	// Protocol is the parsed document; nil when it did not parse.
	Protocol *Protocol `json:"protocol"`
	InForce  bool      `json:"in_force"`
	// Reasons says why the protocol is not in force; empty iff InForce.
	Reasons []string `json:"reasons"`
	// Warnings never keep a protocol out of force.
	Warnings   []string          `json:"warnings"`
	Signatures []SignatureResult `json:"signatures"`
}

// Evaluate decides whether one protocol document is in force at now. file
// names it in the Status; doc is its exact bytes; sigs is its signature file
// (nil when there is none). A protocol is in force if and only if it
// parses, Lint finds no errors, every signatory has exactly one signature
// and that signature verifies, and effective_from <= now < expires.
//
// Reasons, in this order: "invalid: <field>: <reason>" per parse problem;
// "<lint message> (<field>)" per lint error; "no signatures" when sigs is
// empty, else per signatory "no signature from P", "more than one signature
// from P" or "bad signature from P: <reason>", and "bad signature: <reason>"
// for a signature that names no partner; "not yet in force: effective from
// D"; "expired on D" (D is the expires value: the first day no longer in
// force). Warnings: lint warnings, and "signature from P who is not a
// signatory (ignored)" for a signature by anyone else.
func Evaluate(file string, doc, sigs []byte, reg *registry.Registry, now time.Time) Status {
	sum := sha256.Sum256(doc)
	st := Status{File: file, Digest: hex.EncodeToString(sum[:]), Reasons: []string{}, Warnings: []string{}}
	p, err := Parse(doc)
	if err != nil {
		for _, fe := range FieldErrors(err) {
			st.Reasons = append(st.Reasons, "invalid: "+fe.Error())
		}
		if len(st.Reasons) == 0 {
			st.Reasons = append(st.Reasons, "invalid: "+err.Error())
		}
	}
	st.Protocol = p
	st.Signatures = VerifySignatures(doc, sigs, p, reg)
	if p == nil {
		return st
	}
	for _, pr := range Lint(p, reg, now) {
		msg := fmt.Sprintf("%s (%s)", pr.Message, pr.Field)
		if pr.Severity == SeverityError {
			st.Reasons = append(st.Reasons, msg)
		} else {
			st.Warnings = append(st.Warnings, msg)
		}
	}
	st.Reasons = append(st.Reasons, signatureReasons(p, sigs, st.Signatures)...)
	for _, r := range st.Signatures {
		if r.Partner != "" && !p.IsSignatory(r.Partner) {
			st.Warnings = append(st.Warnings, fmt.Sprintf("signature from %s who is not a signatory (ignored)", r.Partner))
		}
	}
	switch {
	case now.Before(p.EffectiveFrom.Time()):
		st.Reasons = append(st.Reasons, fmt.Sprintf("not yet in force: effective from %s", p.EffectiveFrom))
	case !now.Before(p.Expires.Time()):
		st.Reasons = append(st.Reasons, fmt.Sprintf("expired on %s", p.Expires))
	}
	st.InForce = len(st.Reasons) == 0
	return st
}

func signatureReasons(p *Protocol, sigs []byte, results []SignatureResult) []string {
	if len(results) == 0 && len(strings.TrimSpace(string(sigs))) == 0 {
		return []string{"no signatures"}
	}
	var out []string
	for _, r := range results {
		if r.Partner == "" {
			out = append(out, "bad signature: "+r.Reason)
		}
	}
	for _, s := range p.Signatories {
		var mine []SignatureResult
		for _, r := range results {
			if r.Partner == s {
				mine = append(mine, r)
			}
		}
		switch {
		case len(mine) == 0:
			out = append(out, "no signature from "+s)
		case len(mine) > 1:
			out = append(out, "more than one signature from "+s)
		case !mine[0].OK:
			out = append(out, fmt.Sprintf("bad signature from %s: %s", s, mine[0].Reason))
		}
	}
	return out
}

// EvaluateFile reads path and path+".jws" (a missing signature file means no
// signatures) and evaluates them. Only I/O failures are errors.
func EvaluateFile(path string, reg *registry.Registry, now time.Time) (Status, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return Status{}, fmt.Errorf("protocol: %w", err)
	}
	sigs, err := os.ReadFile(path + SignatureSuffix)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Status{}, fmt.Errorf("protocol: %w", err)
	}
	return Evaluate(path, doc, sigs, reg, now), nil
}

// LoadDir evaluates every *.yaml and *.yml file directly in dir except the
// registry file (trust.yaml), each with its .jws beside it. A file that does
// not parse is still returned, with its reasons. When more than one file
// with the same protocol id would be in force, none of them is. Statuses are
// sorted by protocol id (files that did not parse first), then file.
// Only I/O failures are errors.
func LoadDir(dir string, reg *registry.Registry, now time.Time) ([]Status, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("protocol: %w", err)
	}
	out := []Status{}
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if e.IsDir() || name == RegistryFile || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		st, err := EvaluateFile(filepath.Join(dir, name), reg, now)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	inForce := map[string][]int{}
	for i, st := range out {
		if st.InForce {
			inForce[st.Protocol.ID] = append(inForce[st.Protocol.ID], i)
		}
	}
	for id, idx := range inForce {
		if len(idx) < 2 {
			continue
		}
		for _, i := range idx {
			var others []string
			for _, j := range idx {
				if j != i {
					others = append(others, out[j].File)
				}
			}
			out[i].InForce = false
			out[i].Reasons = append(out[i].Reasons,
				fmt.Sprintf("protocol %s is also in force in %s", id, strings.Join(others, ", ")))
		}
	}
	slices.SortFunc(out, func(a, b Status) int {
		return cmp.Or(cmp.Compare(statusID(a), statusID(b)), cmp.Compare(a.File, b.File))
	})
	return out, nil
}

func statusID(s Status) string {
	if s.Protocol == nil {
		return ""
	}
	return s.Protocol.ID
}

// FormatStatus writes a table of the statuses (one row each), then for each
// one the reasons it is not in force, its warnings and its signatures. It is
// the output of `trustgate protocol list` and `protocol verify`.
func FormatStatus(w io.Writer, statuses []Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTOCOL\tVERSION\tSTATUS\tEFFECTIVE\tEXPIRES\tSIGNED\tDIGEST\tFILE")
	for _, s := range statuses {
		id, version, from, until, signed := "-", "-", "-", "-", "-"
		if p := s.Protocol; p != nil {
			id, version = p.ID, p.Version
			from, until = cmp.Or(p.EffectiveFrom.String(), "-"), cmp.Or(p.Expires.String(), "-")
			n := 0
			for _, sig := range s.Signatures {
				if sig.OK && p.IsSignatory(sig.Partner) {
					n++
				}
			}
			signed = fmt.Sprintf("%d/%d", n, len(p.Signatories))
		}
		state := "in force"
		if !s.InForce {
			state = "NOT IN FORCE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.12s\t%s\n", id, version, state, from, until, signed, s.Digest, s.File)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("format status: %w", err)
	}
	var b strings.Builder
	for _, s := range statuses {
		name := s.File
		if s.Protocol != nil {
			name = fmt.Sprintf("%s (%s)", s.Protocol.ID, s.File)
		}
		fmt.Fprintf(&b, "\n%s\n", name)
		for _, r := range s.Reasons {
			fmt.Fprintf(&b, "  not in force: %s\n", r)
		}
		for _, r := range s.Warnings {
			fmt.Fprintf(&b, "  warning: %s\n", r)
		}
		for _, sig := range s.Signatures {
			verdict := "ok"
			if !sig.OK {
				verdict = "BAD: " + sig.Reason
			}
			who := cmp.Or(sig.Partner, "?")
			fmt.Fprintf(&b, "  signature %s (kid %s): %s\n", who, cmp.Or(sig.KeyID, "?"), verdict)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("format status: %w", err)
	}
	return nil
}
