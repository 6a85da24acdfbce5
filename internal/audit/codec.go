package audit

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/childrens-trust/trustgate/internal/decsec"
)

// Stored values. Most fields are stored as encoding/json writes them; the
// time and hex identifiers are stored more densely, losslessly (format
// version 3), and so are a decision's reasons (below):
//
//   - the time (t): decimal seconds since the Unix epoch, UTC, with the
//     nanoseconds as a fraction of at most nine digits and no trailing
//     zero, no fraction when they are zero: 1795339737.046163606 is
//     2026-11-22T09:28:57.046163606Z, -62135596800 is 0001-01-01T00:00:00Z;
//   - hex identifiers (request_id, subject, policy_revision,
//     disclosed_sha256, prev_hash): a value that is lowercase hex of even
//     length is stored as the unpadded base64url (RFC 4648 §5) of its
//     bytes, 43 characters for a SHA-256; any other non-empty value as
//     "~" followed by the value; "" as "".
//
// Each time and identifier has exactly one stored form, and decoding
// refuses any other.

// hexFields are the JSON names of the fields stored as hex identifiers.
var hexFields = map[string]bool{
	"request_id": true, "subject": true, "policy_revision": true, "disclosed_sha256": true, "prev_hash": true,
}

// storedTime is time.Time as stored.
type storedTime time.Time

// storedHex is a hex identifier as stored.
type storedHex string

var errStoredValue = errors.New("not a stored value of its kind")

func (t storedTime) MarshalJSON() ([]byte, error) {
	return appendStoredTime(nil, time.Time(t)), nil
}

func (t *storedTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" { // encoding/json's convention: no change
		return nil
	}
	v, err := parseStoredTime(b)
	if err != nil {
		return err
	}
	*t = storedTime(v)
	return nil
}

// appendStoredTime appends the stored form of t: decimal seconds
// (internal/decsec).
func appendStoredTime(b []byte, t time.Time) []byte {
	return decsec.Append(b, t.Unix(), int64(t.Nanosecond()))
}

// parseStoredTime reads the stored form of a time, and only that form.
func parseStoredTime(b []byte) (time.Time, error) {
	sec, nsec, err := decsec.Parse(b)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %w: %w", err, errStoredValue)
	}
	return time.Unix(sec, nsec).UTC(), nil
}

// storedHex is text to encoding/json (which writes it as a JSON string,
// escaped as any string, and hands it back unescaped).

func (h storedHex) MarshalText() ([]byte, error) {
	if isLowerHex(h) && len(h) <= 128 {
		var raw [64]byte
		n, _ := hex.Decode(raw[:], []byte(h))
		return b64.AppendEncode(nil, raw[:n]), nil
	}
	return []byte(storedHexForm(string(h))), nil
}

func (h *storedHex) UnmarshalText(b []byte) error {
	v, err := parseStoredHex(string(b))
	if err != nil {
		return err
	}
	*h = storedHex(v)
	return nil
}

var b64 = base64.RawURLEncoding.Strict()

// storedHexForm is the stored form of the hex identifier v (before JSON
// string encoding).
func storedHexForm(v string) string {
	switch {
	case v == "":
		return ""
	case isLowerHex(v):
		raw, _ := hex.DecodeString(v)
		return b64.EncodeToString(raw)
	}
	return "~" + v
}

// appendStoredHexJSON appends the stored form of v as a JSON string, as
// encoding/json writes it (the committer splices prev_hash with it).
func appendStoredHexJSON(b []byte, v string) []byte {
	if isLowerHex(v) && len(v) <= 128 {
		var raw [64]byte
		n, _ := hex.Decode(raw[:], []byte(v))
		b = append(b, '"')
		b = b64.AppendEncode(b, raw[:n])
		return append(b, '"')
	}
	j, _ := json.Marshal(storedHexForm(v)) // a string always marshals
	return append(b, j...)
}

// parseStoredHex is storedHexForm's inverse; it refuses any form
// storedHexForm does not give.
func parseStoredHex(s string) (string, error) {
	switch {
	case s == "":
		return "", nil
	case s[0] == '~':
		if v := s[1:]; v != "" && !isLowerHex(v) {
			return v, nil
		}
	default:
		// (The decoder skips line breaks: the form must also re-encode.)
		if raw, err := b64.DecodeString(s); err == nil && len(raw) > 0 && b64.EncodeToString(raw) == s {
			return hex.EncodeToString(raw), nil
		}
	}
	return "", fmt.Errorf("hex identifier %.40q: %w", s, errStoredValue)
}

// scanStoredHex is parseStoredHex for the scanner, on the unescaped
// stored form s: it only checks s unless out is non-nil, when it sets
// *out to the identifier (allocated).
func scanStoredHex(s []byte, out *[]byte) error {
	if len(s) == 0 {
		if out != nil {
			*out = nil
		}
		return nil
	}
	var raw [96]byte
	var enc [128]byte
	switch {
	case s[0] == '~':
		if v := s[1:]; len(v) > 0 && !isLowerHex(v) {
			if out != nil {
				*out = append([]byte(nil), v...)
			}
			return nil
		}
	case len(s) > len(enc):
		v, err := parseStoredHex(string(s))
		if err == nil && out != nil {
			*out = []byte(v)
		}
		return err
	default:
		n, err := b64.Decode(raw[:], s)
		if err == nil && n > 0 && b64.EncodedLen(n) == len(s) {
			b64.Encode(enc[:], raw[:n])
			if string(enc[:len(s)]) == string(s) {
				if out != nil {
					*out = hex.AppendEncode(nil, raw[:n])
				}
				return nil
			}
		}
	}
	return fmt.Errorf("hex identifier %.40q: %w", s, errStoredValue)
}

// isLowerHex reports whether v is non-empty lowercase hex of even length.
func isLowerHex[S ~string | ~[]byte](v S) bool {
	if len(v) == 0 || len(v)%2 != 0 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Reasons. The reasons of a decision allowed by a protocol rule name the
// rule in the words "<protocol> v<version> rule <rule>", which the entry
// holds in fields of its own (p, v, ru); in the stored reasons each
// occurrence is replaced by the character U+001E (written \u001e), and
// the characters U+001E and U+001F of the reasons themselves are stored
// escaped as U+001F U+001E and U+001F U+001F. The substitution is made
// only for an entry with a protocol and a rule whose words hold neither
// character.

const (
	ruleMark   = '\x1e'
	ruleEscape = '\x1f'
)

// ruleRef is the rule reference e's stored reasons abbreviate, or "".
func ruleRef(e *Entry) string {
	if e.Protocol == "" || e.Rule == "" {
		return ""
	}
	ref := e.Protocol + " v" + e.ProtocolVersion + " rule " + e.Rule
	if strings.ContainsAny(ref, "\x1e\x1f") {
		return ""
	}
	return ref
}

// storeReasons returns the stored form of rs and whether it differs (a
// new slice then: rs is never modified).
func storeReasons(rs []string, ref string) ([]string, bool) {
	var out []string
	for i, r := range rs {
		s := r
		if strings.ContainsAny(s, "\x1e\x1f") {
			var b strings.Builder
			for j := 0; j < len(s); j++ {
				if s[j] == ruleMark || s[j] == ruleEscape {
					b.WriteByte(ruleEscape)
				}
				b.WriteByte(s[j])
			}
			s = b.String()
		}
		if ref != "" {
			s = strings.ReplaceAll(s, ref, string(rune(ruleMark)))
		}
		if s != r {
			if out == nil {
				out = slices.Clone(rs)
			}
			out[i] = s
		}
	}
	if out == nil {
		return rs, false
	}
	return out, true
}

// loadReasons is storeReasons' inverse (in place). It is total: a stray
// escape stands for itself, as does the mark when there is no reference.
func loadReasons(rs []string, ref string) {
	for i, s := range rs {
		if !strings.ContainsAny(s, "\x1e\x1f") {
			continue
		}
		var b strings.Builder
		for j := 0; j < len(s); j++ {
			switch c := s[j]; {
			case c == ruleEscape && j+1 < len(s) && (s[j+1] == ruleMark || s[j+1] == ruleEscape):
				b.WriteByte(s[j+1])
				j++
			case c == ruleMark && ref != "":
				b.WriteString(ref)
			default:
				b.WriteByte(c)
			}
		}
		rs[i] = b.String()
	}
}
