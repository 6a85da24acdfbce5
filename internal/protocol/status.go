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
	// Withdrawals are the verdicts on the signed withdrawals beside the
	// protocol (FILE.withdrawals.json), in file order.
	Withdrawals []WithdrawalResult `json:"withdrawals"`
	// Until is the first instant the protocol is no longer in force: the
	// earlier of expires and the effective time of the first verified
	// withdrawal by a signatory. Zero when the file did not parse.
	Until time.Time `json:"until,omitzero"`
	// Findings locate every reason and warning (file, line, signature).
	Findings []Finding `json:"findings"`
}

// Document is one protocol file and the files beside it, as bytes.
type Document struct {
	File        string // the path (or name) the document was read from
	Doc         []byte // the protocol's exact bytes
	Signatures  []byte // FILE.jws; nil when there is none
	Withdrawals []byte // FILE.withdrawals.json; nil when there is none
}

// Evaluate decides whether one protocol document is in force at now. file
// names it in the Status; doc is its exact bytes; sigs is its signature file
// (nil when there is none). It is EvaluateDocument without withdrawals.
func Evaluate(file string, doc, sigs []byte, reg *registry.Registry, now time.Time) Status {
	return EvaluateDocument(Document{File: file, Doc: doc, Signatures: sigs}, reg, now)
}

// EvaluateDocument decides whether one protocol document is in force at
// now. A protocol is in force if and only if it parses, Lint finds no
// errors, every signatory has exactly one signature and that signature
// verifies, effective_from <= now < expires, no signatory has withdrawn
// with effect at or before now, and every withdrawal beside it verifies.
//
// Reasons, in this order: "invalid: <field>: <reason>" per parse problem;
// "<lint message> (<field>)" per lint error; "no signatures" when sigs is
// empty, else per signatory "no signature from P", "more than one signature
// from P" or "bad signature from P: <reason>", and "bad signature: <reason>"
// for a signature that names no partner; "not yet in force: effective from
// D"; "expired on D" (D is the expires value: the first day no longer in
// force); "bad withdrawal from P: <reason>"; "withdrawn by P from T".
// Warnings: lint warnings, "signature from P who is not a signatory
// (ignored)" for a signature by anyone else, "P withdraws from T: ..." for
// a withdrawal still to come, and withdrawals that do not apply (another
// version, not a signatory). Each reason and warning has a Finding.
func EvaluateDocument(d Document, reg *registry.Registry, now time.Time) Status {
	file, doc, sigs := d.File, d.Doc, d.Signatures
	sum := sha256.Sum256(doc)
	st := Status{File: file, Digest: hex.EncodeToString(sum[:]), Reasons: []string{}, Warnings: []string{}, Findings: []Finding{}}
	f := findings{st: &st, doc: doc}
	sigFile := file + SignatureSuffix
	p, err := Parse(doc)
	if err != nil {
		for _, fe := range FieldErrors(err) {
			msg := "invalid: " + fe.Error()
			st.Reasons = append(st.Reasons, msg)
			f.add(FindingInvalid, SeverityError, file, fe.Field, "", "", msg)
			if fe.Field == "" {
				st.Findings[len(st.Findings)-1].Line = lineOf(fe.Reason)
			}
		}
		if len(st.Reasons) == 0 {
			msg := "invalid: " + err.Error()
			st.Reasons = append(st.Reasons, msg)
			f.add(FindingInvalid, SeverityError, file, "", "", "", msg)
			st.Findings[len(st.Findings)-1].Line = lineOf(err.Error())
		}
	}
	st.Protocol = p
	st.Signatures = VerifySignatures(doc, sigs, p, reg)
	st.Withdrawals = VerifyWithdrawals(d.Withdrawals, reg)
	if p == nil {
		for _, r := range st.Signatures {
			if !r.OK {
				f.add(FindingSignature, SeverityError, sigFile, "", r.Partner, r.KeyID, fmt.Sprintf("bad signature from %s: %s", cmpOr(r.Partner, "?"), r.Reason))
			}
		}
		for _, w := range st.Withdrawals {
			if !w.OK {
				f.add(FindingWithdrawal, SeverityError, file+WithdrawalSuffix, "", w.Partner, w.KeyID, fmt.Sprintf("bad withdrawal from %s: %s", cmpOr(w.Partner, "?"), w.Reason))
			}
		}
		return st
	}
	st.Until = p.Expires.Time()
	for _, pr := range Lint(p, reg, now) {
		msg := fmt.Sprintf("%s (%s)", pr.Message, pr.Field)
		if pr.Severity == SeverityError {
			st.Reasons = append(st.Reasons, msg)
		} else {
			st.Warnings = append(st.Warnings, msg)
		}
		f.add(FindingLint, pr.Severity, file, pr.Field, "", "", msg)
	}
	for _, sr := range signatureReasons(p, sigs, st.Signatures) {
		st.Reasons = append(st.Reasons, sr.msg)
		f.add(sr.kind, SeverityError, sigFile, "", sr.partner, sr.kid, sr.msg)
	}
	for _, r := range st.Signatures {
		if r.Partner != "" && !p.IsSignatory(r.Partner) {
			msg := fmt.Sprintf("signature from %s who is not a signatory (ignored)", r.Partner)
			st.Warnings = append(st.Warnings, msg)
			kind := FindingUnsigned
			if !r.OK {
				kind = FindingSignature // present, and bad: still a broken file
				msg = fmt.Sprintf("bad signature from %s who is not a signatory: %s", r.Partner, r.Reason)
			}
			f.add(kind, SeverityWarning, sigFile, "", r.Partner, r.KeyID, msg)
		}
	}
	switch {
	case now.Before(p.EffectiveFrom.Time()):
		msg := fmt.Sprintf("not yet in force: effective from %s", p.EffectiveFrom)
		st.Reasons = append(st.Reasons, msg)
		f.add(FindingDate, SeverityError, file, "effective_from", "", "", msg)
	case !now.Before(p.Expires.Time()):
		msg := fmt.Sprintf("expired on %s", p.Expires)
		st.Reasons = append(st.Reasons, msg)
		f.add(FindingDate, SeverityError, file, "expires", "", "", msg)
	}
	applyWithdrawals(&st, f, file, now)
	st.InForce = len(st.Reasons) == 0
	return st
}

func cmpOr(a, b string) string { return cmp.Or(a, b) }

type sigReason struct {
	kind         FindingKind
	partner, kid string
	msg          string
}

func signatureReasons(p *Protocol, sigs []byte, results []SignatureResult) []sigReason {
	if len(results) == 0 && len(strings.TrimSpace(string(sigs))) == 0 {
		return []sigReason{{kind: FindingUnsigned, msg: "no signatures"}}
	}
	var out []sigReason
	for _, r := range results {
		if r.Partner == "" {
			out = append(out, sigReason{FindingSignature, "", r.KeyID, "bad signature: " + r.Reason})
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
			out = append(out, sigReason{FindingUnsigned, s, "", "no signature from " + s})
		case len(mine) > 1:
			out = append(out, sigReason{FindingSignature, s, "", "more than one signature from " + s})
		case !mine[0].OK:
			out = append(out, sigReason{FindingSignature, s, mine[0].KeyID, fmt.Sprintf("bad signature from %s: %s", s, mine[0].Reason)})
		}
	}
	return out
}

// EvaluateFile reads path, path+".jws" and path+".withdrawals.json" (a
// missing signature or withdrawals file means none) and evaluates them.
// Only I/O failures are errors.
func EvaluateFile(path string, reg *registry.Registry, now time.Time) (Status, error) {
	d, err := ReadDocument(path)
	if err != nil {
		return Status{}, err
	}
	return EvaluateDocument(d, reg, now), nil
}

// ReadDocument reads a protocol file and the signature and withdrawals
// files beside it (each nil when absent).
func ReadDocument(path string) (Document, error) {
	d := Document{File: path}
	var err error
	if d.Doc, err = os.ReadFile(path); err != nil {
		return d, fmt.Errorf("protocol: %w", err)
	}
	if d.Signatures, err = readOptional(path + SignatureSuffix); err != nil {
		return d, err
	}
	if d.Withdrawals, err = readOptional(path + WithdrawalSuffix); err != nil {
		return d, err
	}
	return d, nil
}

func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("protocol: %w", err)
	}
	return b, nil
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
			msg := fmt.Sprintf("protocol %s is also in force in %s", id, strings.Join(others, ", "))
			out[i].InForce = false
			out[i].Reasons = append(out[i].Reasons, msg)
			out[i].Findings = append(out[i].Findings, Finding{Kind: FindingDuplicate, Severity: SeverityError, File: out[i].File, Field: "id", Message: msg})
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
		for _, w := range s.Withdrawals {
			verdict := "BAD: " + w.Reason
			if w.OK {
				verdict = fmt.Sprintf("from %s (version %s, signed %s)", NewDate(w.Claims.Effective), w.Claims.Version, w.Claims.SignedAt.Format(time.RFC3339))
			}
			fmt.Fprintf(&b, "  withdrawal %s (kid %s): %s\n", cmp.Or(w.Partner, "?"), cmp.Or(w.KeyID, "?"), verdict)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("format status: %w", err)
	}
	return nil
}
