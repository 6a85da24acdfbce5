package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Protocol is one information-sharing protocol document. The YAML and JSON
// names are the same; the JSON form is what a Rego policy receives as data.
type Protocol struct {
	ID string `yaml:"id" json:"id"`
	// Version is free text; YAML may give 3 or "3.1", it is kept as written.
	Version     string `yaml:"version" json:"version"`
	Title       string `yaml:"title" json:"title"`
	Description string `yaml:"description,omitempty" json:"description"`
	// Signatories are the partner ids that must all sign; at least two.
	Signatories []string `yaml:"signatories" json:"signatories"`
	// The protocol is in force from EffectiveFrom (inclusive) until Expires
	// (exclusive: the first instant no longer in force). ReviewBy is the date
	// by which the signatories must review it; once past, Lint warns.
	EffectiveFrom Date     `yaml:"effective_from" json:"effective_from"`
	ReviewBy      Date     `yaml:"review_by" json:"review_by"`
	Expires       Date     `yaml:"expires" json:"expires"`
	Purposes      []string `yaml:"purposes" json:"purposes"`
	Rules         []Rule   `yaml:"rules" json:"rules"`
}

// Rule says who may disclose what to whom, for which purposes, on which
// lawful basis and with what consent.
type Rule struct {
	ID          string `yaml:"id" json:"id"`
	Description string `yaml:"description,omitempty" json:"description"`
	// Providers may disclose; Requesters may receive. Each names partner ids
	// and/or partner types; only signatories are ever matched (see Resolve).
	Providers  Parties `yaml:"providers" json:"providers"`
	Requesters Parties `yaml:"requesters" json:"requesters"`
	// Purposes is a subset of the protocol's purposes.
	Purposes []string `yaml:"purposes" json:"purposes"`
	// Categories are the data categories the provider may disclose.
	Categories []string `yaml:"categories" json:"categories"`
	// Fields optionally limits a category to the only fields that may be
	// passed on (data minimisation). A category without an entry is passed
	// on whole.
	Fields      map[string][]string `yaml:"fields,omitempty" json:"fields"`
	LawfulBasis string              `yaml:"lawful_basis" json:"lawful_basis"`
	Consent     ConsentMode         `yaml:"consent" json:"consent"`
	// OverrideRoles may set consent aside, on one of OverrideGrounds; both
	// only with Consent == ConsentOverridable, and then both required.
	OverrideRoles   []string `yaml:"override_roles,omitempty" json:"override_roles"`
	OverrideGrounds []string `yaml:"override_grounds,omitempty" json:"override_grounds"`
}

// Parties names one side of a rule.
type Parties struct {
	Partners []string `yaml:"partners,omitempty" json:"partners"`
	Types    []string `yaml:"types,omitempty" json:"types"`
	// Roles restricts requesters to practitioners holding one of these
	// roles; empty means any role. Not allowed on providers.
	Roles []string `yaml:"roles,omitempty" json:"roles"`
}

// ConsentMode says whether a share under a rule needs the consent of the
// child or of a person with parental responsibility.
type ConsentMode string

// The consent modes.
const (
	// ConsentRequired: no consent, no share.
	ConsentRequired ConsentMode = "required"
	// ConsentNotRequired: the lawful basis does not rest on consent.
	ConsentNotRequired ConsentMode = "not_required"
	// ConsentOverridable: consent is needed, but a practitioner holding one
	// of the rule's override roles may set it aside on one of its override
	// grounds (e.g. risk of significant harm); every override is recorded.
	ConsentOverridable ConsentMode = "overridable"
)

// Valid reports whether m is one of the three modes.
func (m ConsentMode) Valid() bool {
	return m == ConsentRequired || m == ConsentNotRequired || m == ConsentOverridable
}

// IsSignatory reports whether partnerID signed (must sign) the protocol.
func (p *Protocol) IsSignatory(partnerID string) bool {
	for _, s := range p.Signatories {
		if s == partnerID {
			return true
		}
	}
	return false
}

// ErrInvalid classifies every protocol document that fails Parse.
var ErrInvalid = errors.New("invalid protocol")

// FieldError is one structural problem, located by its field path, e.g.
// rules[2].consent (indices count from 0). Field is empty when the document
// as a whole is at fault (not YAML, unknown key). It unwraps to ErrInvalid.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// FieldErrors returns every *FieldError in err (Parse joins them with
// errors.Join), in document order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if x := errors.Unwrap(e); x != nil {
			walk(x)
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{1,63}$`)

// Parse decodes one protocol document strictly and validates its structure
// (it does not consult the registry; see Lint). On failure the error joins
// one *FieldError per problem found; errors.Is(err, ErrInvalid) holds and
// FieldErrors lists them. Nil slices are normalised to empty ones so the
// JSON form never carries null lists.
func Parse(doc []byte) (*Protocol, error) {
	var p Protocol
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Reason: "empty document"}
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			errs := make([]error, len(te.Errors))
			for i, m := range te.Errors {
				errs[i] = &FieldError{Reason: yamlReason(m)}
			}
			return nil, errors.Join(errs...)
		}
		return nil, &FieldError{Reason: err.Error()}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &FieldError{Reason: "more than one YAML document"}
	}
	if errs := p.validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.normalise()
	return &p, nil
}

var unknownField = regexp.MustCompile(`^line (\d+): field (.+) not found in type \S+$`)

// yamlReason rewrites yaml.v3's messages about unknown keys, which name Go
// types, into the document's terms.
func yamlReason(m string) string {
	if g := unknownField.FindStringSubmatch(m); g != nil {
		return fmt.Sprintf("line %s: unknown field %q", g[1], g[2])
	}
	return "yaml: " + m
}

type checker struct{ errs []error }

func (c *checker) add(field, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// list checks a list of identifiers: each matches the id pattern, none twice,
// and (if min > 0) at least min of them.
func (c *checker) list(field string, v []string, min int) {
	if len(v) < min {
		if min == 1 {
			c.add(field, "at least one is required")
		} else {
			c.add(field, "at least %d are required", min)
		}
	}
	seen := map[string]bool{}
	for i, s := range v {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case !idPattern.MatchString(s):
			c.add(f, "%q is not a valid identifier", s)
		case seen[s]:
			c.add(f, "%q appears twice", s)
		}
		seen[s] = true
	}
}

func (c *checker) date(field string, d Date) {
	switch {
	case d.bad != "":
		c.add(field, "%q is not a date (YYYY-MM-DD or RFC 3339)", d.bad)
	case d.IsZero():
		c.add(field, "is required")
	}
}

func (p *Protocol) validate() []error {
	var c checker
	switch {
	case p.ID == "":
		c.add("id", "is required")
	case !idPattern.MatchString(p.ID):
		c.add("id", "%q does not match %s", p.ID, idPattern)
	}
	if strings.TrimSpace(p.Version) == "" {
		c.add("version", "is required")
	}
	if strings.TrimSpace(p.Title) == "" {
		c.add("title", "is required")
	}
	c.list("signatories", p.Signatories, 2)
	c.date("effective_from", p.EffectiveFrom)
	c.date("review_by", p.ReviewBy)
	c.date("expires", p.Expires)
	if !p.EffectiveFrom.IsZero() && !p.Expires.IsZero() && !p.EffectiveFrom.Before(p.Expires) {
		c.add("expires", "%s is not after effective_from %s", p.Expires, p.EffectiveFrom)
	}
	if !p.ReviewBy.IsZero() && !p.Expires.IsZero() && p.Expires.Before(p.ReviewBy) {
		c.add("review_by", "%s is after expires %s", p.ReviewBy, p.Expires)
	}
	c.list("purposes", p.Purposes, 1)
	purposes := set(p.Purposes)
	if len(p.Rules) == 0 {
		c.add("rules", "at least one is required")
	}
	ruleIDs := map[string]bool{}
	for i := range p.Rules {
		r := &p.Rules[i]
		f := fmt.Sprintf("rules[%d]", i)
		switch {
		case !idPattern.MatchString(r.ID):
			c.add(f+".id", "%q does not match %s", r.ID, idPattern)
		case ruleIDs[r.ID]:
			c.add(f+".id", "%q appears twice", r.ID)
		}
		ruleIDs[r.ID] = true
		c.parties(f+".providers", r.Providers, false)
		c.parties(f+".requesters", r.Requesters, true)
		c.list(f+".purposes", r.Purposes, 1)
		for j, pu := range r.Purposes {
			if idPattern.MatchString(pu) && !purposes[pu] {
				c.add(fmt.Sprintf("%s.purposes[%d]", f, j), "%q is not one of the protocol's purposes", pu)
			}
		}
		c.list(f+".categories", r.Categories, 1)
		cats := set(r.Categories)
		for _, cat := range slices.Sorted(maps.Keys(r.Fields)) {
			ff := f + ".fields." + cat
			if !cats[cat] {
				c.add(ff, "%q is not one of the rule's categories", cat)
			}
			c.fieldNames(ff, r.Fields[cat])
		}
		if strings.TrimSpace(r.LawfulBasis) == "" {
			c.add(f+".lawful_basis", "is required")
		}
		switch {
		case r.Consent == "":
			c.add(f+".consent", "is required (one of required, not_required, overridable)")
		case !r.Consent.Valid():
			c.add(f+".consent", "%q is not one of required, not_required, overridable", r.Consent)
		case r.Consent == ConsentOverridable:
			c.list(f+".override_roles", r.OverrideRoles, 1)
			c.list(f+".override_grounds", r.OverrideGrounds, 1)
		default:
			if len(r.OverrideRoles) > 0 {
				c.add(f+".override_roles", "only allowed with consent: overridable")
			}
			if len(r.OverrideGrounds) > 0 {
				c.add(f+".override_grounds", "only allowed with consent: overridable")
			}
		}
	}
	return c.errs
}

func (c *checker) parties(field string, p Parties, requesters bool) {
	if len(p.Partners) == 0 && len(p.Types) == 0 {
		c.add(field, "name at least one partner or partner type")
	}
	c.list(field+".partners", p.Partners, 0)
	c.list(field+".types", p.Types, 0)
	if !requesters && len(p.Roles) > 0 {
		c.add(field+".roles", "roles restrict requesters only")
		return
	}
	c.list(field+".roles", p.Roles, 0)
}

// fieldNames checks a minimisation list: at least one field, none twice.
// Field names are the provider's record field names, so any non-empty text
// without spaces is accepted.
func (c *checker) fieldNames(field string, v []string) {
	if len(v) == 0 {
		c.add(field, "list at least one field, or remove the entry to pass the category on whole")
	}
	seen := map[string]bool{}
	for i, s := range v {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case s == "" || strings.ContainsAny(s, " \t\r\n"):
			c.add(f, "%q is not a field name", s)
		case seen[s]:
			c.add(f, "%q appears twice", s)
		}
		seen[s] = true
	}
}

func (p *Protocol) normalise() {
	empty := func(v *[]string) {
		if *v == nil {
			*v = []string{}
		}
	}
	empty(&p.Signatories)
	empty(&p.Purposes)
	for i := range p.Rules {
		r := &p.Rules[i]
		for _, v := range []*[]string{
			&r.Providers.Partners, &r.Providers.Types, &r.Providers.Roles,
			&r.Requesters.Partners, &r.Requesters.Types, &r.Requesters.Roles,
			&r.Purposes, &r.Categories, &r.OverrideRoles, &r.OverrideGrounds,
		} {
			empty(v)
		}
		if r.Fields == nil {
			r.Fields = map[string][]string{}
		}
	}
}

// Date is an instant read from YAML as a date ("2026-04-01", meaning 00:00
// UTC that day) or an RFC 3339 timestamp. It marshals to JSON as RFC 3339 in
// UTC. The zero Date means "not given".
type Date struct {
	t   time.Time
	bad string // the text given when it was not a date; reported by Parse
}

// NewDate returns the Date for t.
func NewDate(t time.Time) Date { return Date{t: t.UTC()} }

// Time returns the instant.
func (d Date) Time() time.Time { return d.t }

// IsZero reports whether the date was not given (or did not parse).
func (d Date) IsZero() bool { return d.t.IsZero() }

// Before reports whether d is before e.
func (d Date) Before(e Date) bool { return d.t.Before(e.t) }

// String is "2026-04-01" when d is midnight UTC, RFC 3339 otherwise.
func (d Date) String() string {
	if d.t.IsZero() {
		return ""
	}
	u := d.t.UTC()
	if u.Equal(u.Truncate(24 * time.Hour)) {
		return u.Format(time.DateOnly)
	}
	return u.Format(time.RFC3339)
}

func parseDate(s string) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	return time.Time{}, false
}

// UnmarshalYAML accepts a scalar date or timestamp. Text that is not a date
// is kept and reported by Parse with the field's path.
func (d *Date) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a date must be a scalar (YYYY-MM-DD or RFC 3339)", n.Line)}}
	}
	if n.Tag == "!!null" || n.Value == "" {
		*d = Date{}
		return nil
	}
	t, ok := parseDate(n.Value)
	if !ok {
		*d = Date{bad: n.Value}
		return nil
	}
	*d = Date{t: t}
	return nil
}

// MarshalYAML writes the String form.
func (d Date) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes RFC 3339 in UTC, or null for the zero Date.
func (d Date) MarshalJSON() ([]byte, error) {
	if d.t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(d.t.UTC().Format(time.RFC3339))
}

// UnmarshalJSON accepts what MarshalJSON writes, and a bare date.
func (d *Date) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*d = Date{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date: %w", err)
	}
	t, ok := parseDate(s)
	if !ok {
		return fmt.Errorf("date: %q is not YYYY-MM-DD or RFC 3339", s)
	}
	*d = Date{t: t}
	return nil
}

func set(v []string) map[string]bool {
	m := make(map[string]bool, len(v))
	for _, s := range v {
		m[s] = true
	}
	return m
}
