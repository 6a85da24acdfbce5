package consent

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/childrens-trust/trustgate/internal/nhs"
	"github.com/childrens-trust/trustgate/internal/policy"
)

// Outcomes of a consent decision. A refusal is recorded as carefully as a
// consent.
const (
	Given   = "given"
	Refused = "refused"
)

// Deciders: who gave or refused consent. "self" is the child, assessed as
// competent (Gillick); the others hold parental responsibility.
var Deciders = []string{"self", "parent", "carer", "guardian"}

// Methods: how a consent, refusal or withdrawal was obtained.
var Methods = []string{"written", "verbal", "electronic"}

// Status is a record's state at an instant; it is derived, never stored.
type Status string

// The statuses, as the policy derives them (policies/sharing.rego).
const (
	StatusActive      Status = "active"
	StatusNotYetValid Status = "not_yet_valid"
	StatusExpired     Status = "expired"
	StatusWithdrawn   Status = "withdrawn"
	StatusRefused     Status = "refused"
)

// Limits on one record.
const (
	MaxPurposes   = 16
	MaxCategories = 32
	MaxRecipients = 64 // per kind (partners, types, protocols)
	MaxTextLen    = 128
)

// Actor is a practitioner acting for a partner agency, from the verified
// token.
type Actor struct {
	Partner      string `json:"partner"`
	Practitioner string `json:"practitioner"`
	Role         string `json:"role,omitempty"`
}

// Competence is the assessment of a child who decides for themselves.
type Competence struct {
	AssessedCompetent bool   `json:"assessed_competent"`
	AssessedBy        string `json:"assessed_by"`
}

// Recipients names who a consent covers: partners by id, partners by type,
// or the signatories of a protocol (while it is in force).
type Recipients struct {
	Partners  []string `json:"partners"`
	Types     []string `json:"types"`
	Protocols []string `json:"protocols"`
}

// Withdrawal ends a consent (or a refusal) for every decision evaluated
// after it is recorded. It does not undo what was lawfully shared before.
type Withdrawal struct {
	By          string    `json:"by"` // one of Deciders
	At          time.Time `json:"at"` // when the person withdrew
	Obtained    string    `json:"obtained"`
	EvidenceRef string    `json:"evidence_ref,omitempty"`
	RecordedBy  Actor     `json:"recorded_by"`
	RecordedAt  time.Time `json:"recorded_at"`
	ReceiptID   string    `json:"receipt_id"`
	Receipt     string    `json:"receipt"` // compact JWS
}

// Record is one consent or refusal of consent about one child.
type Record struct {
	ID         string      `json:"id"`
	Subject    string      `json:"subject"` // the keyed pseudonym of the NHS number, never the number
	Outcome    string      `json:"outcome"`
	GivenBy    string      `json:"given_by"`
	Competence *Competence `json:"competence,omitempty"`
	Purposes   []string    `json:"purposes"`
	Categories []string    `json:"categories"`
	Recipients Recipients  `json:"recipients"`
	ValidFrom  time.Time   `json:"valid_from"`
	ValidUntil time.Time   `json:"valid_until"` // zero: until withdrawn
	Obtained   string      `json:"obtained"`
	// EvidenceRef is the reference of the signed form, note or message in
	// the recording agency's own system.
	EvidenceRef string      `json:"evidence_ref"`
	RecordedBy  Actor       `json:"recorded_by"`
	RecordedAt  time.Time   `json:"recorded_at"`
	ReceiptID   string      `json:"receipt_id"`
	Receipt     string      `json:"receipt"` // compact JWS
	Withdrawal  *Withdrawal `json:"withdrawal,omitempty"`
}

// Status derives the record's status at now, exactly as the policy does:
// withdrawn, then refused, then not yet valid, expired or active.
func (r *Record) Status(now time.Time) Status {
	switch {
	case r.Withdrawal != nil:
		return StatusWithdrawn
	case r.Outcome == Refused:
		return StatusRefused
	case now.Before(r.ValidFrom):
		return StatusNotYetValid
	case !r.ValidUntil.IsZero() && !now.Before(r.ValidUntil):
		return StatusExpired
	default:
		return StatusActive
	}
}

// Policy maps the record to the policy's input. Times are Unix
// nanoseconds; an open-ended consent has ValidUntilNS 0. A withdrawn
// record always carries the time of its withdrawal (never in the future,
// Withdraw refuses that), so the policy sees it as withdrawn in every
// decision evaluated after the withdrawal was recorded.
func (r *Record) Policy() policy.Consent {
	c := policy.Consent{
		ID:         r.ID,
		Outcome:    r.Outcome,
		GivenBy:    r.GivenBy,
		Competent:  r.GivenBy == "self" && r.Competence != nil && r.Competence.AssessedCompetent,
		Purposes:   nz(r.Purposes),
		Categories: nz(r.Categories),
		Recipients: policy.Recipients{
			Partners:  nz(r.Recipients.Partners),
			Types:     nz(r.Recipients.Types),
			Protocols: nz(r.Recipients.Protocols),
		},
		ValidFromNS: r.ValidFrom.UnixNano(),
	}
	if !r.ValidUntil.IsZero() {
		c.ValidUntilNS = r.ValidUntil.UnixNano()
	}
	if r.Withdrawal != nil {
		c.WithdrawnNS = max(r.Withdrawal.At.UnixNano(), 1)
	}
	return c
}

// Vocabulary is what checking a record needs to know of the Trust: the
// registry's purposes, categories, partners and partner types, and the
// protocols the gateway knows.
type Vocabulary interface {
	HasPurpose(id string) bool
	HasCategory(id string) bool
	HasPartner(id string) bool
	HasPartnerType(t string) bool
	HasProtocol(id string) bool
}

// Check validates a new record against the rules of consent and the Trust's
// vocabulary, as of now, and fills ValidFrom with now when it is zero. The
// first problem is returned as an *Error naming the field (by its JSON
// name) and the reason. It does not look at ID, Subject, RecordedBy,
// RecordedAt or the receipt, which the gateway sets.
func Check(r *Record, v Vocabulary, now time.Time) error {
	switch r.Outcome {
	case "":
		return invalid("outcome", "required: given or refused")
	case Given, Refused:
	default:
		return invalid("outcome", fmt.Sprintf("%q is not one of given, refused", clip(r.Outcome)))
	}
	if r.GivenBy == "" {
		return invalid("given_by", "required: one of "+strings.Join(Deciders, ", "))
	}
	if !slices.Contains(Deciders, r.GivenBy) {
		return invalid("given_by", fmt.Sprintf("%q is not one of %s", clip(r.GivenBy), strings.Join(Deciders, ", ")))
	}
	if r.GivenBy == "self" {
		if r.Competence == nil {
			return invalid("competence", "required when the child decides (given_by self): who assessed the child as competent")
		}
		if !r.Competence.AssessedCompetent {
			return invalid("competence.assessed_competent", "a child assessed as not competent cannot give or refuse consent; record the decision of a person with parental responsibility")
		}
		if err := text("competence.assessed_by", r.Competence.AssessedBy, true); err != nil {
			return err
		}
	} else if r.Competence != nil {
		return invalid("competence", fmt.Sprintf("a competence assessment belongs only to the child's own decision (given_by self), not to a %s's", r.GivenBy))
	}
	if err := vocab("purposes", r.Purposes, MaxPurposes, true, v.HasPurpose, "a purpose of the Trust"); err != nil {
		return err
	}
	if err := vocab("categories", r.Categories, MaxCategories, r.Outcome == Given, v.HasCategory, "a data category of the Trust"); err != nil {
		return err
	}
	rc := r.Recipients
	if len(rc.Partners)+len(rc.Types)+len(rc.Protocols) == 0 {
		return invalid("recipients", "required: name at least one recipient by partner id, partner type or protocol")
	}
	if err := vocab("recipients.partners", rc.Partners, MaxRecipients, false, v.HasPartner, "a partner of the Trust"); err != nil {
		return err
	}
	if err := vocab("recipients.types", rc.Types, MaxRecipients, false, v.HasPartnerType, "a partner type"); err != nil {
		return err
	}
	if err := vocab("recipients.protocols", rc.Protocols, MaxRecipients, false, v.HasProtocol, "a protocol the gateway knows"); err != nil {
		return err
	}
	if r.Outcome == Refused {
		if !r.ValidFrom.IsZero() {
			return invalid("valid_from", "a refusal stands from when it is recorded until it is withdrawn: leave valid_from out")
		}
		if !r.ValidUntil.IsZero() {
			return invalid("valid_until", "a refusal stands until it is withdrawn: leave valid_until out")
		}
	}
	if r.ValidFrom.IsZero() {
		r.ValidFrom = now
	}
	if !r.ValidUntil.IsZero() {
		if !r.ValidUntil.After(now) {
			return invalid("valid_until", "is in the past")
		}
		if !r.ValidUntil.After(r.ValidFrom) {
			return invalid("valid_until", "must be after valid_from")
		}
	}
	if r.Obtained == "" {
		return invalid("obtained", "required: one of "+strings.Join(Methods, ", "))
	}
	if !slices.Contains(Methods, r.Obtained) {
		return invalid("obtained", fmt.Sprintf("%q is not one of %s", clip(r.Obtained), strings.Join(Methods, ", ")))
	}
	if err := text("evidence_ref", r.EvidenceRef, true); err != nil {
		return err
	}
	r.Categories = nz(r.Categories)
	r.Recipients = Recipients{Partners: nz(rc.Partners), Types: nz(rc.Types), Protocols: nz(rc.Protocols)}
	return nil
}

// CheckWithdrawal validates a withdrawal of r as of now and fills At with
// now when it is zero.
func CheckWithdrawal(r *Record, w *Withdrawal, now time.Time) error {
	if r.Withdrawal != nil {
		return conflict("id", fmt.Sprintf("consent %s was already withdrawn (at %s)", r.ID, r.Withdrawal.At.UTC().Format(time.RFC3339)))
	}
	if w.By == "" {
		return invalid("withdrawn_by", "required: one of "+strings.Join(Deciders, ", "))
	}
	if !slices.Contains(Deciders, w.By) {
		return invalid("withdrawn_by", fmt.Sprintf("%q is not one of %s", clip(w.By), strings.Join(Deciders, ", ")))
	}
	if r.GivenBy == "self" && w.By != "self" {
		return invalid("withdrawn_by", "the decision of a child assessed as competent is withdrawn only by the child (self)")
	}
	if w.At.IsZero() {
		w.At = now
	}
	if w.At.After(now) {
		return invalid("withdrawn_at", "is in the future: record a withdrawal once it has been made")
	}
	if w.At.Before(r.RecordedAt) {
		return invalid("withdrawn_at", "is before the consent was recorded")
	}
	if w.Obtained == "" {
		return invalid("obtained", "required: one of "+strings.Join(Methods, ", "))
	}
	if !slices.Contains(Methods, w.Obtained) {
		return invalid("obtained", fmt.Sprintf("%q is not one of %s", clip(w.Obtained), strings.Join(Methods, ", ")))
	}
	return text("evidence_ref", w.EvidenceRef, false)
}

func vocab(field string, vals []string, limit int, required bool, known func(string) bool, what string) error {
	if len(vals) == 0 {
		if required {
			return invalid(field, "required: at least one")
		}
		return nil
	}
	if len(vals) > limit {
		return invalid(field, fmt.Sprintf("at most %d", limit))
	}
	seen := map[string]bool{}
	for i, s := range vals {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !known(s) {
			return invalid(f, fmt.Sprintf("%q is not %s", clip(s), what))
		}
		if seen[s] {
			return invalid(f, fmt.Sprintf("%q is repeated", s))
		}
		seen[s] = true
	}
	return nil
}

// text checks a short reference: printable, at most MaxTextLen characters.
func text(field, s string, required bool) error {
	if strings.TrimSpace(s) == "" {
		if required {
			return invalid(field, "required")
		}
		return nil
	}
	if len([]rune(s)) > MaxTextLen {
		return invalid(field, fmt.Sprintf("at most %d characters", MaxTextLen))
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return invalid(field, "must be printable text (no control characters)")
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func nz(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// NewID returns a new consent id: "cns-" and 20 random hex digits.
func NewID() string { return "cns-" + randomHex(10) }

// NewReviewID returns a new review id: "rev-" and 20 random hex digits.
func NewReviewID() string { return "rev-" + randomHex(10) }

// NewReceiptID returns a random (version 4) UUID, as Kantara receipts use.
func NewReceiptID() string { return nhs.FreeOf(newReceiptID) }

func newReceiptID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomHex(n int) string {
	return nhs.FreeOf(func() string {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	})
}
