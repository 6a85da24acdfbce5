package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/childrens-trust/trustgate/internal/decsec"
)

// Recording a decision's input. A decision's audit entry already holds
// most of the Input in fields of its own (who asked, from whom, for what,
// when); the rest — the residual — is recorded beside them in a compact
// form, so that the exact Input can be rebuilt for a what-if replay
// (internal/whatif) without storing anything twice. EncodeResidual and
// DecodeResidual are the one codec for it; internal/whatif maps an audit
// entry to an InputBase (RecordInput, InputOf).
//
// The residual is one JSON array, trailing members that hold their
// default left out:
//
//	[requester.type, provider.type, consents, flags, differences]
//
//   - requester.type and provider.type: strings (always present);
//   - consents: an array (default empty; null for nil) of consent
//     records, each an array
//     [id, outcome, given_by, competent (0 or 1), purposes, categories,
//     recipients.partners, recipients.types, recipients.protocols,
//     valid_from, valid_until, withdrawn]
//     — lists as arrays (null for nil), instants in seconds (below),
//     trailing instants that are 0 left out;
//   - flags: 1 if provider.sensitive, plus 2 if override.justified
//     (default 0);
//   - differences: an object (default empty) holding each base field the
//     Input differs in: t time, rp requester.partner, rq
//     requester.practitioner, rr requester.role, pp provider.partner, pu
//     purpose, cat categories (null for nil), og override.ground.
//
// Instants are decimal seconds since the Unix epoch, the nanoseconds as a
// fraction of at most nine digits without a trailing zero (the audit
// log's time format): 1795166813.581873905. The gateway records the base
// fields from the Input itself, so differences never appear in its
// entries; they keep the rebuilt Input exact whatever the base holds.
// Rebuilding is exact: json.Marshal of the rebuilt Input is byte for byte
// json.Marshal of the one recorded, nil and empty lists included.
//
// A typical residual: a local authority asks the police, one consent (an
// early help consent given by a parent) on file:
//
//	["local_authority","police",[["cns-8c763b38058b32a4ec12","given","parent",0,
//	["early_help"],["identity","immunisations"],["exley-csc"],[],[],
//	1795000000.987654321,1826884800]]]

// InputBase is what a decision's audit entry holds of the decision's
// Input in fields of its own. Categories is nil when the entry holds none
// (an empty list is not stored).
type InputBase struct {
	TimeNS         int64
	Partner        string // requester.partner
	Practitioner   string // requester.practitioner
	Role           string // requester.role
	Provider       string // provider.partner
	Purpose        string
	Categories     []string
	OverrideGround string // override.ground
}

// ErrResidual classifies a residual that cannot be encoded (a string that
// is not valid UTF-8 would not survive JSON) or decoded.
var ErrResidual = errors.New("policy: recorded input residual")

// differences is the residual's last member. Strings are pointers:
// present when the value differs from the base's, "" included.
type differences struct {
	T   json.RawMessage `json:"t,omitempty"`
	RP  *string         `json:"rp,omitempty"`
	RQ  *string         `json:"rq,omitempty"`
	RR  *string         `json:"rr,omitempty"`
	PP  *string         `json:"pp,omitempty"`
	PU  *string         `json:"pu,omitempty"`
	Cat json.RawMessage `json:"cat,omitempty"`
	OG  *string         `json:"og,omitempty"`
}

const (
	flagSensitive = 1
	flagJustified = 2
)

var jsonNull = json.RawMessage("null")

// EncodeResidual returns the residual of in against base: what in holds
// that base does not. DecodeResidual(base, r) rebuilds in exactly.
func EncodeResidual(in *Input, base InputBase) ([]byte, error) {
	if err := validStrings(in, base); err != nil {
		return nil, err
	}
	var d differences
	if in.TimeNS != base.TimeNS {
		d.T = decsec.AppendNanos(nil, in.TimeNS)
	}
	d.RP = differs(in.Requester.Partner, base.Partner)
	d.RQ = differs(in.Requester.Practitioner, base.Practitioner)
	d.RR = differs(in.Requester.Role, base.Role)
	d.PP = differs(in.Provider.Partner, base.Provider)
	d.PU = differs(in.Purpose, base.Purpose)
	d.OG = differs(in.Override.Ground, base.OverrideGround)
	if !slices.Equal(in.Categories, base.Categories) || (in.Categories == nil) != (base.Categories == nil) {
		d.Cat = listJSON(in.Categories)
	}
	consents := json.RawMessage("[]")
	if in.Consents == nil {
		consents = jsonNull
	} else if len(in.Consents) > 0 {
		cs := make([][]json.RawMessage, len(in.Consents))
		for i, c := range in.Consents {
			competent := json.RawMessage("0")
			if c.Competent {
				competent = json.RawMessage("1")
			}
			a := []json.RawMessage{str(c.ID), str(c.Outcome), str(c.GivenBy), competent,
				listJSON(c.Purposes), listJSON(c.Categories),
				listJSON(c.Recipients.Partners), listJSON(c.Recipients.Types), listJSON(c.Recipients.Protocols),
				decsec.AppendNanos(nil, c.ValidFromNS), decsec.AppendNanos(nil, c.ValidUntilNS), decsec.AppendNanos(nil, c.WithdrawnNS)}
			for len(a) > consentFixed && string(a[len(a)-1]) == "0" {
				a = a[:len(a)-1]
			}
			cs[i] = a
		}
		var err error
		if consents, err = json.Marshal(cs); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrResidual, err)
		}
	}
	flags := 0
	if in.Provider.Sensitive {
		flags |= flagSensitive
	}
	if in.Override.Justified {
		flags |= flagJustified
	}
	diffs, err := json.Marshal(&d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrResidual, err)
	}
	r := []json.RawMessage{str(in.Requester.Type), str(in.Provider.Type), consents, json.RawMessage(strconv.Itoa(flags)), diffs}
	defaults := []string{2: "[]", 3: "0", 4: "{}"}
	for len(r) > 2 && string(r[len(r)-1]) == defaults[len(r)-1] {
		r = r[:len(r)-1]
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrResidual, err)
	}
	return b, nil
}

// DecodeResidual rebuilds the Input whose residual against base is r
// (EncodeResidual).
func DecodeResidual(base InputBase, r []byte) (*Input, error) {
	in, err := decodeResidual(base, r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrResidual, err)
	}
	return in, nil
}

func decodeResidual(base InputBase, r []byte) (*Input, error) {
	in := &Input{
		TimeNS:     base.TimeNS,
		Requester:  Requester{Partner: base.Partner, Practitioner: base.Practitioner, Role: base.Role},
		Provider:   Provider{Partner: base.Provider},
		Purpose:    base.Purpose,
		Categories: base.Categories,
		Consents:   []Consent{},
		Override:   Override{Ground: base.OverrideGround},
	}
	// A hand-written reader: a what-if replay rebuilds every recorded
	// decision's input, and encoding/json would cost more than the rest.
	rd := &reader{b: r}
	var err error
	n := 0
	rd.list(func() {
		switch n {
		case 0:
			in.Requester.Type = rd.str()
		case 1:
			in.Provider.Type = rd.str()
		case 2:
			if rd.null() {
				in.Consents = nil
				break
			}
			rd.list(func() {
				c, cerr := rd.consent()
				if cerr != nil && err == nil {
					err = fmt.Errorf("consent %d: %w", len(in.Consents), cerr)
				}
				in.Consents = append(in.Consents, c)
			})
		case 3:
			flags := rd.small()
			if flags > flagSensitive|flagJustified {
				rd.fail("flags are not 0 to 3")
			}
			in.Provider.Sensitive, in.Override.Justified = flags&flagSensitive != 0, flags&flagJustified != 0
		case 4:
			if derr := in.differ(rd.value()); derr != nil && err == nil {
				err = fmt.Errorf("differences: %w", derr)
			}
		default:
			rd.fail("more than 5 members")
		}
		n++
	})
	rd.end()
	switch {
	case rd.err != nil:
		return nil, rd.err
	case err != nil:
		return nil, err
	case n < 2:
		return nil, fmt.Errorf("%d members, want 2 to 5", n)
	}
	return in, nil
}

// differ applies the residual's differences object d.
func (in *Input) differ(d []byte) error {
	var df differences
	if err := strictJSON(d, &df); err != nil {
		return err
	}
	if df.T != nil {
		var err error
		if in.TimeNS, err = decsec.ParseNanos(df.T); err != nil {
			return fmt.Errorf("t: %w", err)
		}
	}
	in.Requester.Partner = or(df.RP, in.Requester.Partner)
	in.Requester.Practitioner = or(df.RQ, in.Requester.Practitioner)
	in.Requester.Role = or(df.RR, in.Requester.Role)
	in.Provider.Partner = or(df.PP, in.Provider.Partner)
	in.Purpose = or(df.PU, in.Purpose)
	in.Override.Ground = or(df.OG, in.Override.Ground)
	if df.Cat != nil {
		in.Categories = nil
		if err := strictJSON(df.Cat, &in.Categories); err != nil {
			return fmt.Errorf("cat: %w", err)
		}
	}
	return nil
}

// consentFixed is the number of leading members of a stored consent that
// are always present (up to valid_from).
const consentFixed = 10

// consent reads one stored consent record.
func (rd *reader) consent() (Consent, error) {
	var c Consent
	var err error
	n := 0
	rd.list(func() {
		switch n {
		case 0:
			c.ID = rd.str()
		case 1:
			c.Outcome = rd.str()
		case 2:
			c.GivenBy = rd.str()
		case 3:
			switch rd.small() {
			case 0:
			case 1:
				c.Competent = true
			default:
				rd.fail("competent is not 0 or 1")
			}
		case 4:
			c.Purposes = rd.strs()
		case 5:
			c.Categories = rd.strs()
		case 6:
			c.Recipients.Partners = rd.strs()
		case 7:
			c.Recipients.Types = rd.strs()
		case 8:
			c.Recipients.Protocols = rd.strs()
		case 9, 10, 11:
			v, perr := decsec.ParseNanos(rd.number())
			if perr != nil && err == nil {
				err = perr
			}
			*[]*int64{&c.ValidFromNS, &c.ValidUntilNS, &c.WithdrawnNS}[n-9] = v
		default:
			rd.fail("more than 12 members")
		}
		n++
	})
	if err == nil && rd.err == nil && n < consentFixed {
		err = fmt.Errorf("%d members, want %d to %d", n, consentFixed, consentFixed+2)
	}
	return c, err
}

// reader reads the JSON of a residual. The first error sticks (err); the
// readers then return zero values.
type reader struct {
	b   []byte
	i   int
	err error
}

func (rd *reader) fail(what string) {
	if rd.err == nil {
		rd.err = fmt.Errorf("at byte %d: %s", rd.i, what)
	}
	rd.i = len(rd.b)
}

func (rd *reader) ws() {
	for rd.i < len(rd.b) && (rd.b[rd.i] == ' ' || rd.b[rd.i] == '\t' || rd.b[rd.i] == '\n' || rd.b[rd.i] == '\r') {
		rd.i++
	}
}

func (rd *reader) consume(c byte) bool {
	rd.ws()
	if rd.i < len(rd.b) && rd.b[rd.i] == c {
		rd.i++
		return true
	}
	return false
}

func (rd *reader) null() bool {
	rd.ws()
	if bytes.HasPrefix(rd.b[rd.i:], []byte("null")) {
		rd.i += 4
		return true
	}
	return false
}

// list reads an array, calling item for each member.
func (rd *reader) list(item func()) {
	if !rd.consume('[') {
		rd.fail("expected an array")
		return
	}
	if rd.consume(']') {
		return
	}
	for rd.err == nil {
		item()
		if rd.consume(']') {
			return
		}
		if !rd.consume(',') {
			rd.fail("expected ',' or ']'")
		}
	}
}

// strs reads a list of strings: null is nil, [] is empty.
func (rd *reader) strs() []string {
	if rd.null() {
		return nil
	}
	out := []string{}
	rd.list(func() { out = append(out, rd.str()) })
	return out
}

// str reads a string: plain ones here, ones with escapes by encoding/json.
func (rd *reader) str() string {
	if !rd.consume('"') {
		rd.fail("expected a string")
		return ""
	}
	start, escaped := rd.i, false
	for rd.i < len(rd.b) {
		switch c := rd.b[rd.i]; {
		case c == '"':
			raw := rd.b[start:rd.i]
			rd.i++
			if escaped {
				var s string
				if err := json.Unmarshal(rd.b[start-1:rd.i], &s); err != nil {
					rd.fail(err.Error())
				}
				return s
			}
			if !utf8.Valid(raw) {
				rd.fail("invalid UTF-8")
				return ""
			}
			return string(raw)
		case c == '\\':
			escaped = true
			rd.i += 2
		case c < 0x20:
			rd.fail("control character in a string")
		default:
			rd.i++
		}
	}
	rd.fail("unterminated string")
	return ""
}

// number reads the bytes of a number (parseSeconds checks them).
func (rd *reader) number() []byte {
	rd.ws()
	start := rd.i
	for rd.i < len(rd.b) && strings.IndexByte("-+.0123456789eE", rd.b[rd.i]) >= 0 {
		rd.i++
	}
	if rd.i == start {
		rd.fail("expected a number")
	}
	return rd.b[start:rd.i]
}

// small reads a one-digit integer.
func (rd *reader) small() int {
	b := rd.number()
	if len(b) != 1 || b[0] < '0' || b[0] > '9' {
		rd.fail("expected a digit")
		return 0
	}
	return int(b[0] - '0')
}

// value reads any JSON value and returns its bytes (for encoding/json).
func (rd *reader) value() []byte {
	rd.ws()
	start, depth := rd.i, 0
	for rd.i < len(rd.b) {
		switch rd.b[rd.i] {
		case '"':
			rd.str()
			if depth == 0 {
				return rd.b[start:rd.i]
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				rd.fail("unbalanced value")
				return nil
			}
			if depth == 0 {
				rd.i++
				return rd.b[start:rd.i]
			}
		case ',':
			if depth == 0 {
				return rd.b[start:rd.i]
			}
		}
		rd.i++
	}
	if depth != 0 {
		rd.fail("unterminated value")
	}
	return rd.b[start:rd.i]
}

// end checks nothing but whitespace follows.
func (rd *reader) end() {
	rd.ws()
	if rd.err == nil && rd.i != len(rd.b) {
		rd.fail("data after the residual")
	}
}

// str is s as a JSON string.
func str(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

// listJSON is a list as stored: an array, null for nil.
func listJSON(s []string) json.RawMessage {
	if s == nil {
		return jsonNull
	}
	b, _ := json.Marshal(s) // a []string always marshals
	return b
}

func differs(v, base string) *string {
	if v == base {
		return nil
	}
	return &v
}

func or(v *string, base string) string {
	if v != nil {
		return *v
	}
	return base
}

// strictJSON decodes exactly one JSON value into v, refusing unknown
// members.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the value")
	}
	return nil
}

// validStrings refuses strings that JSON would not carry unchanged.
func validStrings(in *Input, base InputBase) error {
	ss := []string{in.Requester.Partner, in.Requester.Type, in.Requester.Practitioner, in.Requester.Role,
		in.Provider.Partner, in.Provider.Type, in.Purpose, in.Override.Ground,
		base.Partner, base.Practitioner, base.Role, base.Provider, base.Purpose, base.OverrideGround}
	ss = append(ss, in.Categories...)
	ss = append(ss, base.Categories...)
	for _, c := range in.Consents {
		ss = append(ss, c.ID, c.Outcome, c.GivenBy)
		for _, l := range [][]string{c.Purposes, c.Categories, c.Recipients.Partners, c.Recipients.Types, c.Recipients.Protocols} {
			ss = append(ss, l...)
		}
	}
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%w: %q is not valid UTF-8", ErrResidual, s)
		}
	}
	return nil
}
