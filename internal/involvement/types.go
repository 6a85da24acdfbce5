package involvement

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Kinds is the closed vocabulary of involvement kinds.
var Kinds = []string{
	"early_help", "child_in_need", "child_protection_plan", "looked_after",
	"youth_justice", "health", "education_welfare",
	// The sensitive services' kinds: an involvement of one of these kinds
	// is shielded whatever agency records it.
	"mental_health", "sexual_health", "substance_misuse",
}

// ShieldedKinds are the kinds whose involvement is shielded.
var ShieldedKinds = []string{"mental_health", "sexual_health", "substance_misuse"}

// Why an involvement ended.
const (
	EndedByAgency   = "ended"    // the agency ended it
	EndedByCaseload = "caseload" // the agency's caseload sync no longer listed it
	EndedLapsed     = "lapsed"   // not renewed within the active period
)

// Errors. A *FieldError names the field; ErrNotFound, ErrConflict and
// ErrUnavailable classify the others (the server maps them once).
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("involvement index unavailable")
)

// FieldError is bad input: the field and the reason.
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func bad(field, format string, a ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// Actor is who made a change (from the verified token).
type Actor struct {
	Partner      string `json:"partner"`
	Practitioner string `json:"practitioner"`
	Role         string `json:"role,omitempty"`
}

// Contact is how to reach a practitioner through their agency: a work
// telephone number and a work e-mail address (either or both).
type Contact struct {
	Phone string `json:"phone,omitempty"`
	Email string `json:"email,omitempty"`
}

var (
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)
	codePattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	phonePattern = regexp.MustCompile(`^\+?[0-9][0-9 ]{5,19}$`)
	emailPattern = regexp.MustCompile(`^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`)
)

// CheckPractitioner says why id is not a practitioner id, or "".
func CheckPractitioner(id string) string {
	if id == "" {
		return "required: the practitioner's id in their agency"
	}
	if !idPattern.MatchString(id) {
		return "must be an identifier: 1 to 64 letters, digits, '.', '_', ':' or '-' (no free text)"
	}
	return ""
}

// Check validates c (field is its name in the request).
func (c Contact) Check(field string) error {
	if c.Phone == "" && c.Email == "" {
		return bad(field, "required: a work phone or e-mail address through which the agency reaches the practitioner")
	}
	if c.Phone != "" && !phonePattern.MatchString(c.Phone) {
		return bad(field+".phone", "must be a telephone number (digits and spaces, optional leading +)")
	}
	if c.Email != "" && (len(c.Email) > 254 || !emailPattern.MatchString(c.Email)) {
		return bad(field+".email", "must be an e-mail address")
	}
	return nil
}

// Involvement is one agency's involvement with one child.
type Involvement struct {
	ID string `json:"id"`
	// Subject is the child's pseudonym (hex), never the NHS number.
	Subject      string  `json:"subject"`
	Partner      string  `json:"partner"`
	Practitioner string  `json:"practitioner"`
	Contact      Contact `json:"contact"`
	// Service is the agency's code for the service involved (e.g.
	// "family-support", "clinic-b"); Kind is from Kinds.
	Service string `json:"service"`
	Kind    string `json:"kind"`
	// Concern marks an involvement whose practitioner is concerned about
	// the child and seeks a match with others who are.
	Concern bool `json:"concern"`
	// ShareWithMatches lets a shielded service's involvement be named to
	// the practitioners it is matched with (the policy decides).
	ShareWithMatches bool `json:"share_with_matches,omitempty"`
	// Shielded is set by the gateway: the agency is a sensitive service,
	// or the kind is one of ShieldedKinds.
	Shielded bool      `json:"shielded"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end,omitzero"`
	// EndReason is one of EndedByAgency, EndedByCaseload, EndedLapsed.
	EndReason string `json:"end_reason,omitempty"`
	// RenewedAt is the start or the last renewal: an active involvement
	// lapses ActiveFor after it.
	RenewedAt  time.Time `json:"renewed_at"`
	RecordedAt time.Time `json:"recorded_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	UpdatedBy  Actor     `json:"updated_by"`
	RequestID  string    `json:"request_id"`
}

// Active reports whether the involvement has not ended at t.
func (v *Involvement) Active(t time.Time) bool { return v.End.IsZero() || v.End.After(t) }

// key is the natural key of an agency's involvement: one active
// involvement per agency, child, service and kind.
func (v *Involvement) key() string { return v.Subject + "|" + v.Service + "|" + v.Kind }

// Check validates what an agency sends (field prefix p, e.g. "" or
// "involvements[3].").
func (v *Involvement) Check(p string) error {
	if why := CheckPractitioner(v.Practitioner); why != "" {
		return bad(p+"practitioner", "%s", why)
	}
	if err := v.Contact.Check(p + "contact"); err != nil {
		return err
	}
	if !codePattern.MatchString(v.Service) {
		return bad(p+"service", "required: the agency's code for the service (1 to 64 lowercase letters, digits, '_' or '-'; no free text)")
	}
	if !slices.Contains(Kinds, v.Kind) {
		return bad(p+"kind", "%q is not a kind of involvement (%v)", clip(v.Kind), Kinds)
	}
	if v.Start.IsZero() {
		return bad(p+"start", "required: when the involvement started (RFC 3339)")
	}
	// This century: the index keys times as Unix nanoseconds, which
	// hold until 2262, and no involvement began before 2000.
	if v.Start.Year() < 2000 || v.Start.Year() > 2099 {
		return bad(p+"start", "must be a date in this century (2000 to 2099)")
	}
	if !v.End.IsZero() && v.End.Before(v.Start) {
		return bad(p+"end", "is before the start")
	}
	if !v.End.IsZero() && v.End.Year() > 2099 {
		return bad(p+"end", "must be a date in this century (2000 to 2099)")
	}
	return nil
}

// IsShieldedKind reports whether kind is a sensitive service's kind.
func IsShieldedKind(kind string) bool { return slices.Contains(ShieldedKinds, kind) }

// Member is a member of the team around the child.
type Member struct {
	Partner      string    `json:"partner"`
	Practitioner string    `json:"practitioner"`
	Role         string    `json:"role"`
	Joined       time.Time `json:"joined"`
	Left         time.Time `json:"left,omitzero"`
}

// Lead is one term of a lead professional; the current one has no To.
type Lead struct {
	Partner      string    `json:"partner"`
	Practitioner string    `json:"practitioner"`
	From         time.Time `json:"from"`
	To           time.Time `json:"to,omitzero"`
	SetBy        Actor     `json:"set_by"`
	RequestID    string    `json:"request_id"`
}

// Episode is an early help episode: the assessment opened for a child,
// its team around the child and its lead professionals.
type Episode struct {
	ID       string    `json:"id"`
	Subject  string    `json:"subject"`
	Opened   time.Time `json:"opened"`
	OpenedBy Actor     `json:"opened_by"`
	Closed   time.Time `json:"closed,omitzero"`
	ClosedBy *Actor    `json:"closed_by,omitempty"`
	Team     []Member  `json:"team"`
	Leads    []Lead    `json:"leads"`
}

// Open reports whether the episode is open.
func (e *Episode) Open() bool { return e.Closed.IsZero() }

// Lead returns the current lead professional, or nil.
func (e *Episode) Lead() *Lead {
	if n := len(e.Leads); n > 0 && e.Leads[n-1].To.IsZero() {
		return &e.Leads[n-1]
	}
	return nil
}

// member returns the index of a current member, or -1.
func (e *Episode) member(partner, practitioner string) int {
	for i, m := range e.Team {
		if m.Partner == partner && m.Practitioner == practitioner && m.Left.IsZero() {
			return i
		}
	}
	return -1
}

// HasMember reports whether a practitioner of partner is a current member.
func (e *Episode) HasMember(partner string) bool {
	for _, m := range e.Team {
		if m.Partner == partner && m.Left.IsZero() {
			return true
		}
	}
	return false
}

// IsMember reports whether the practitioner is a current member.
func (e *Episode) IsMember(partner, practitioner string) bool {
	return e.member(partner, practitioner) >= 0
}

// Party is one side of a match.
type Party struct {
	Involvement  string  `json:"involvement"`
	Partner      string  `json:"partner"`
	Practitioner string  `json:"practitioner"`
	Contact      Contact `json:"contact"`
	Kind         string  `json:"kind"`
	Shielded     bool    `json:"shielded"`
}

// Match is two agencies concerned about the same child. A is the
// involvement whose concern made the match, B the one already recorded.
// TellA says whether A's practitioner is told of B (and may see the
// match), TellB the reverse, as the policy decided when it was made.
type Match struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Time      time.Time `json:"time"`
	A         Party     `json:"a"`
	B         Party     `json:"b"`
	TellA     bool      `json:"tell_a"`
	TellB     bool      `json:"tell_b"`
	RequestID string    `json:"request_id"`
}

// Told reports whether the practitioner is a party the match was told to,
// and the party on the other side.
func (m *Match) Told(partner, practitioner string) (other *Party, ok bool) {
	if m.TellA && m.A.Partner == partner && m.A.Practitioner == practitioner {
		return &m.B, true
	}
	if m.TellB && m.B.Partner == partner && m.B.Practitioner == practitioner {
		return &m.A, true
	}
	return nil, false
}

// MatchRule decides, for a new match between a (the new concern) and b
// (the earlier one), whether each side is told of the other (the policy's
// match rule). An error aborts the change.
type MatchRule func(a, b *Involvement) (tellA, tellB bool, err error)

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
