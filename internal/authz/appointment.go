package authz

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"gopkg.in/yaml.v3"

	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// Scope is how far an appointment reaches.
type Scope string

// The scopes.
const (
	// ScopeAgency: the appointee acts for their own agency only (its
	// overrides' reviews, its own entries).
	ScopeAgency Scope = "agency"
	// ScopeTrust: the appointee acts for the whole Trust (the whole audit
	// log; reloading and replaying the Trust's rules).
	ScopeTrust Scope = "trust"
)

// Kind is the signed-document kind of appointments.
var Kind = protocol.Kind{
	Name:           "appointment",
	SignatureType:  "trustgate-appointment+jws",
	WithdrawalType: "trustgate-appointment-withdrawal+jws",
	IDHeader:       "appointment",
}

// Appointment is one appointment document.
type Appointment struct {
	ID      string `yaml:"id" json:"id"`
	Version string `yaml:"version" json:"version"`
	// Trust is the Trust's id (the registry's): an appointment of one
	// Trust is not valid in another.
	Trust        string `yaml:"trust" json:"trust"`
	Partner      string `yaml:"partner" json:"partner"`
	Practitioner string `yaml:"practitioner" json:"practitioner"`
	Role         string `yaml:"role" json:"role"`
	Scope        Scope  `yaml:"scope" json:"scope"`
	// From (inclusive) and Until (exclusive) bound the appointment.
	From  protocol.Date `yaml:"from" json:"from"`
	Until protocol.Date `yaml:"until" json:"until"`
	// Note says who appointed and why (free text).
	Note string `yaml:"note,omitempty" json:"note,omitempty"`
}

// DocumentID, DocumentVersion and IsSignatory make an Appointment a
// protocol.Signed document: the partner signs it, and for scope trust the
// Trust too.
func (a *Appointment) DocumentID() string      { return a.ID }
func (a *Appointment) DocumentVersion() string { return a.Version }
func (a *Appointment) IsSignatory(s string) bool {
	return s == a.Partner || (a.Scope == ScopeTrust && s == a.Trust)
}

// Signatories are the signers the appointment needs.
func (a *Appointment) Signatories() []string {
	if a.Scope == ScopeTrust {
		return []string{a.Partner, a.Trust}
	}
	return []string{a.Partner}
}

// ErrInvalid classifies an appointment document that fails Parse.
var ErrInvalid = errors.New("invalid appointment")

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{1,63}$`)

// Parse decodes one appointment strictly (unknown keys are errors) and
// checks its structure; it does not consult the registry (Lint does).
func Parse(doc []byte) (*Appointment, error) {
	var a Appointment
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&a); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty document", ErrInvalid)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalid)
	}
	var problems []string
	add := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	for _, f := range []struct{ name, v string }{{"id", a.ID}, {"trust", a.Trust}, {"partner", a.Partner}, {"role", a.Role}} {
		if !idPattern.MatchString(f.v) {
			add(f.name, "%q is not a valid identifier", f.v)
		}
	}
	if strings.TrimSpace(a.Version) == "" {
		add("version", "is required")
	}
	if why := PractitionerID(a.Practitioner); why != "" {
		add("practitioner", "%s", why)
	}
	if a.Scope != ScopeAgency && a.Scope != ScopeTrust {
		add("scope", "%q is not one of agency, trust", a.Scope)
	}
	if a.From.IsZero() {
		add("from", "is required (YYYY-MM-DD or RFC 3339)")
	}
	if a.Until.IsZero() {
		add("until", "is required (YYYY-MM-DD or RFC 3339)")
	}
	if !a.From.IsZero() && !a.Until.IsZero() && !a.From.Before(a.Until) {
		add("until", "%s is not after from %s", a.Until, a.From)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return &a, nil
}

// PractitionerID says why id is not a practitioner id (a token's sub), or
// "" when it is one.
func PractitionerID(id string) string {
	n := utf8.RuneCountInString(id)
	switch {
	case id == "":
		return "required: the practitioner's id in their agency"
	case n > 128 || !utf8.ValidString(id):
		return "at most 128 characters of valid UTF-8"
	}
	for _, r := range id {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return "must not contain spaces or control characters"
		}
	}
	return ""
}

// Lint checks an appointment against the registry: the Trust's id, a
// partner of the Trust, a role of the vocabulary that is appointed and
// that the partner may hold, and (scope trust) registered Trust keys.
func Lint(a *Appointment, reg *registry.Registry) []string {
	var out []string
	if a.Trust != reg.ID() {
		out = append(out, fmt.Sprintf("trust: %q is not this Trust (%s)", a.Trust, reg.ID()))
	}
	if _, ok := reg.Partner(a.Partner); !ok {
		out = append(out, fmt.Sprintf("partner: %q is not a partner of the Trust", a.Partner))
	}
	role, ok := reg.Role(a.Role)
	switch {
	case !ok:
		out = append(out, fmt.Sprintf("role: %q is not in the Trust's role vocabulary", a.Role))
	case !role.Appointed:
		out = append(out, fmt.Sprintf("role: %s is not an appointed role (any practitioner of a partner that may hold it asserts it)", a.Role))
	case !reg.MayHold(a.Partner, a.Role):
		out = append(out, fmt.Sprintf("role: %s may not hold %s (the registry's held_by)", a.Partner, a.Role))
	}
	if a.Scope == ScopeTrust {
		if set, _ := reg.SignerKeys(reg.ID()); set == nil || set.Len() == 0 {
			out = append(out, "scope: trust needs the Trust's own keys in the registry (jwks_file), which it has not")
		}
	}
	return out
}

// Status is the verdict on one appointment file.
type Status struct {
	File        string       `json:"file"`
	Digest      string       `json:"digest"`
	Appointment *Appointment `json:"appointment"`
	// Valid: parses, lints clean, signed by every signatory, not
	// withdrawn. Whether it is in force at a time also needs From <= t <
	// Until (Model.Authorize).
	Valid bool `json:"valid"`
	// InForce is Valid and the evaluation time within its period.
	InForce bool `json:"in_force"`
	// Until is the first instant it no longer holds: until, or the
	// effective time of a verified withdrawal if earlier.
	Until   time.Time `json:"until,omitzero"`
	Reasons []string  `json:"reasons"`
	// Faults are the reasons that make the file unfit to load (it does
	// not parse or lint, a signature or withdrawal present does not
	// verify, its id is used twice): a reload carrying one is refused.
	// Missing signatures and withdrawals are ordinary states.
	Faults      []string                    `json:"faults,omitempty"`
	Warnings    []string                    `json:"warnings"`
	Signatures  []protocol.SignatureResult  `json:"signatures"`
	Withdrawals []protocol.WithdrawalResult `json:"withdrawals"`
}

// Evaluate judges one appointment document, its signature file and its
// withdrawals file (either may be nil) as of now.
func Evaluate(file string, doc, sigs, withdrawals []byte, reg *registry.Registry, now time.Time) Status {
	sum := sha256.Sum256(doc)
	st := Status{File: file, Digest: hex.EncodeToString(sum[:]), Reasons: []string{}, Warnings: []string{},
		Signatures: []protocol.SignatureResult{}, Withdrawals: []protocol.WithdrawalResult{}}
	fault := func(msg string) {
		st.Reasons = append(st.Reasons, msg)
		st.Faults = append(st.Faults, msg)
	}
	a, err := Parse(doc)
	if err != nil {
		fault(err.Error())
		return st
	}
	st.Appointment, st.Until = a, a.Until.Time()
	for _, p := range Lint(a, reg) {
		fault("lint: " + p)
	}
	st.Signatures = protocol.VerifyDocument(Kind, doc, sigs, a, reg)
	signed := map[string]int{}
	for _, r := range st.Signatures {
		switch {
		case !r.OK:
			fault(fmt.Sprintf("bad signature from %s: %s", cmpOr(r.Partner, "?"), r.Reason))
		case !a.IsSignatory(r.Partner):
			st.Warnings = append(st.Warnings, fmt.Sprintf("signature from %s who is not a signatory (ignored)", r.Partner))
		default:
			signed[r.Partner]++
		}
	}
	for _, s := range a.Signatories() {
		switch signed[s] {
		case 0:
			st.Reasons = append(st.Reasons, "not signed by "+s)
		case 1:
		default:
			st.Reasons = append(st.Reasons, "more than one signature from "+s)
		}
	}
	st.Withdrawals = protocol.VerifyDocumentWithdrawals(Kind, withdrawals, reg)
	for _, w := range st.Withdrawals {
		switch {
		case !w.OK:
			// Fail closed: a withdrawal that cannot be checked is not ignored.
			fault(fmt.Sprintf("bad withdrawal from %s: %s", cmpOr(w.Partner, "?"), w.Reason))
		case w.Claims.Protocol != a.ID || w.Claims.Version != a.Version:
			st.Warnings = append(st.Warnings, fmt.Sprintf("withdrawal by %s of %s version %s does not apply (ignored)", w.Partner, w.Claims.Protocol, w.Claims.Version))
		case !a.IsSignatory(w.Partner):
			st.Warnings = append(st.Warnings, fmt.Sprintf("withdrawal by %s who is not a signatory (ignored)", w.Partner))
		default:
			if w.Claims.Effective.Before(st.Until) {
				st.Until = w.Claims.Effective
			}
			if !now.Before(w.Claims.Effective) {
				st.Reasons = append(st.Reasons, fmt.Sprintf("withdrawn by %s from %s", w.Partner, w.Claims.Effective.UTC().Format(time.RFC3339)))
			} else {
				st.Warnings = append(st.Warnings, fmt.Sprintf("%s withdraws it from %s", w.Partner, w.Claims.Effective.UTC().Format(time.RFC3339)))
			}
		}
	}
	st.Valid = len(st.Reasons) == 0
	// A withdrawal already in effect is a reason, so Valid is false then;
	// an appointment still to start or already over is valid but not in
	// force.
	st.InForce = st.Valid && !now.Before(a.From.Time()) && now.Before(st.Until)
	if st.Valid && !now.Before(st.Until) {
		st.Warnings = append(st.Warnings, "ended on "+protocol.NewDate(st.Until).String())
	}
	return st
}

func cmpOr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// Sign adds signer's signature (the partner's, or the Trust's) over an
// appointment document to its existing signature file.
func Sign(doc, existing []byte, key jwk.Key, signer string) ([]byte, error) {
	a, err := Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return protocol.SignDocument(Kind, a, doc, existing, key, signer)
}

// Withdraw adds signer's signed withdrawal of the appointment, from
// effective, to its existing withdrawals file.
func Withdraw(doc, existing []byte, key jwk.Key, signer string, effective, signedAt time.Time) ([]byte, error) {
	a, err := Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("withdraw: %w", err)
	}
	return protocol.WithdrawDocument(Kind, a, existing, key, signer, effective, signedAt)
}

// sortStatuses orders statuses by file.
func sortStatuses(sts []Status) {
	slices.SortFunc(sts, func(a, b Status) int { return strings.Compare(a.File, b.File) })
}
