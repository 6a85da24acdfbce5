package audit

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds Verify's fast, strict reader of stored entries.
// encoding/json needs ~15 µs to decode one entry strictly, too slow to
// walk a million entries in seconds; scanEntry checks the same things in
// one pass without reflection, and is stricter: it accepts a subset of
// what the strict encoding/json decode accepts (FuzzScanEntry checks
// this), a subset that includes all encoding/json output for an entry.
//
// It accepts exactly one JSON object (whitespace allowed between tokens,
// nothing after the object) whose keys are the JSON names of Entry's
// fields other than hash, spelled exactly (no escapes, no case folding),
// each at most once, with values of the field's type: a string; an array
// of strings; true or false; an integer in range, without fraction or
// exponent; for the time, a string in its stored form (RFC 3339, UTC,
// shortest fraction); or, for json.RawMessage, any JSON value nested at
// most maxDepth deep. Strings must be valid UTF-8 with valid escapes; the
// prev_hash field must not be escaped. The values the index is built
// from (and prev_hash) are returned as the Entry holds them.

type fieldKind uint8

const (
	kindString fieldKind = iota
	kindStrings
	kindInt
	kindUint
	kindTime
	kindBool
	kindRaw
)

type fieldInfo struct {
	kind fieldKind
	bit  uint64 // for duplicate detection
	name string // the Go field name
}

// entryFields maps the stored names to their kinds, derived from the
// stored type so that a new field cannot be forgotten here.
var entryFields = func() map[string]fieldInfo {
	t := storedType
	if t.NumField() > 64 {
		panic("audit: Entry has more than 64 fields")
	}
	m := make(map[string]fieldInfo, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		var k fieldKind
		switch {
		case f.Type == reflect.TypeFor[time.Time]():
			k = kindTime
		case f.Type.Kind() == reflect.String, f.Type == reflect.TypeFor[Residual]():
			k = kindString
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String:
			k = kindStrings
		case f.Type.Kind() == reflect.Int:
			k = kindInt
		case f.Type.Kind() == reflect.Uint64:
			k = kindUint
		case f.Type.Kind() == reflect.Bool:
			k = kindBool
		case f.Type == reflect.TypeFor[json.RawMessage]():
			k = kindRaw
		default:
			panic("audit: Entry field " + f.Name + " has a type scanEntry does not know: " + f.Type.String())
		}
		m[name] = fieldInfo{kind: k, bit: 1 << i, name: f.Name}
	}
	return m
}()

// orderedFields are entryFields in the order the canonical form writes
// them in: sorted by name.
var orderedFields = func() (out []struct {
	name string
	info fieldInfo
}) {
	for i := range storedType.NumField() {
		name, _, _ := strings.Cut(storedType.Field(i).Tag.Get("json"), ",")
		if f, ok := entryFields[name]; ok {
			out = append(out, struct {
				name string
				info fieldInfo
			}{name, f})
		}
	}
	slices.SortFunc(out, func(a, b struct {
		name string
		info fieldInfo
	}) int {
		return strings.Compare(a.name, b.name)
	})
	return out
}()

// scanned is what Verify needs from an entry.
type scanned struct {
	seq      uint64
	prevHash []byte // aliases the input
	fields   indexFields[[]byte]
	// The chain links.
	prevSubject, prevPractitioner uint64
}

var errSyntax = errors.New("invalid JSON")

type entryScanner struct {
	b []byte
	i int
}

// scanEntry checks val as described above and returns its seq, prev_hash
// and the fields the index is built from (string values alias val unless
// they hold escapes).
func scanEntry(val []byte) (scanned, error) {
	s := entryScanner{b: val}
	var out scanned
	var seen uint64
	hint := 0
	s.ws()
	if !s.consume('{') {
		return out, s.fail("expected '{'")
	}
	s.ws()
	if s.consume('}') {
		return out, s.end()
	}
	for {
		s.ws()
		key, esc, err := s.str()
		if err != nil {
			return out, err
		}
		// The canonical form writes the fields sorted: look ahead
		// from the field after the last one before asking the map.
		var f fieldInfo
		ok := false
		for i := hint; i < len(orderedFields); i++ {
			if string(key) == orderedFields[i].name {
				f, ok, hint = orderedFields[i].info, true, i+1
				break
			}
		}
		if !ok {
			f, ok = entryFields[string(key)]
		}
		if !ok || esc {
			return out, fmt.Errorf("unknown field %q", key)
		}
		if seen&f.bit != 0 {
			return out, fmt.Errorf("duplicate field %q", key)
		}
		seen |= f.bit
		s.ws()
		if !s.consume(':') {
			return out, s.fail("expected ':'")
		}
		s.ws()
		switch f.kind {
		case kindString:
			start := s.i
			v, esc, err := s.str()
			if err != nil {
				return out, err
			}
			dst := out.fields.field(f.name)
			if f.name == "PrevHash" {
				if esc {
					return out, fmt.Errorf("field prev_hash is escaped")
				}
				dst = &out.prevHash
			}
			if dst != nil {
				if esc {
					var u string
					if err := json.Unmarshal(s.b[start:s.i], &u); err != nil {
						return out, fmt.Errorf("field %s: %w", key, err)
					}
					v = []byte(u)
				}
				*dst = v
			}
		case kindStrings:
			if err := s.strs(); err != nil {
				return out, err
			}
		case kindBool:
			switch {
			case s.literal("true"):
				if f.name == "Override" {
					out.fields.override = true
				}
			case s.literal("false"):
			default:
				return out, s.fail("expected true or false")
			}
		case kindInt:
			if _, err := strconv.ParseInt(string(s.integer()), 10, strconv.IntSize); err != nil {
				return out, fmt.Errorf("field %s: %w", key, err)
			}
		case kindUint:
			n, err := strconv.ParseUint(string(s.integer()), 10, 64)
			if err != nil {
				return out, fmt.Errorf("field %s: %w", key, err)
			}
			switch f.name {
			case "Seq":
				out.seq = n
			case "PrevSubject":
				out.prevSubject = n
			case "PrevPractitioner":
				out.prevPractitioner = n
			}
		case kindTime:
			v, esc, err := s.str()
			if err != nil {
				return out, err
			}
			t, err := parseTime(v, esc)
			if err != nil {
				return out, fmt.Errorf("field %s: %w", key, err)
			}
			out.fields.at = t
		case kindRaw:
			if err := s.value(0); err != nil {
				return out, fmt.Errorf("field %s: %w", key, err)
			}
		}
		s.ws()
		if s.consume('}') {
			return out, s.end()
		}
		if !s.consume(',') {
			return out, s.fail("expected ',' or '}'")
		}
	}
}

func (s *entryScanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

func (s *entryScanner) fail(what string) error {
	return fmt.Errorf("%w at offset %d: %s", errSyntax, s.i, what)
}

func (s *entryScanner) end() error {
	if s.i != len(s.b) {
		return s.fail("data after the entry")
	}
	return nil
}

func (s *entryScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *entryScanner) consume(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a JSON string and returns its raw contents (between the
// quotes, escapes not decoded) and whether it holds an escape.
func (s *entryScanner) str() (raw []byte, escaped bool, err error) {
	if !s.consume('"') {
		return nil, false, s.fail("expected a string")
	}
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		// Skip plain bytes fast, eight at a time while none is special;
		// stop at a quote, backslash, control byte or non-ASCII byte.
		for s.i+8 <= len(s.b) && !special8(binary.LittleEndian.Uint64(s.b[s.i:])) {
			s.i += 8
		}
		for s.i < len(s.b) && plain[s.b[s.i]] {
			s.i++
		}
		if s.i >= len(s.b) {
			break
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(raw) {
				return nil, false, s.fail("invalid UTF-8 in string")
			}
			return raw, escaped, nil
		case c < 0x20:
			return nil, false, s.fail("control character in string")
		case c == '\\':
			escaped = true
			s.i++
			if s.i >= len(s.b) {
				return nil, false, s.fail("unterminated escape")
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				if s.i+5 > len(s.b) {
					return nil, false, s.fail("short \\u escape")
				}
				for _, h := range s.b[s.i+1 : s.i+5] {
					if !isHexDigit(h) {
						return nil, false, s.fail("bad \\u escape")
					}
				}
				s.i += 5
			default:
				return nil, false, s.fail("bad escape")
			}
		default: // c >= utf8.RuneSelf
			ascii = false
			s.i++
		}
	}
	return nil, false, s.fail("unterminated string")
}

// strs reads an array of strings.
func (s *entryScanner) strs() error {
	if !s.consume('[') {
		return s.fail("expected an array")
	}
	s.ws()
	if s.consume(']') {
		return nil
	}
	for {
		s.ws()
		if _, _, err := s.str(); err != nil {
			return err
		}
		s.ws()
		if s.consume(']') {
			return nil
		}
		if !s.consume(',') {
			return s.fail("expected ',' or ']'")
		}
	}
}

// maxDepth bounds the nesting of a raw JSON value.
const maxDepth = 64

// value reads any one JSON value: an object (string keys), an array, a
// string, a number, true, false or null.
func (s *entryScanner) value(depth int) error {
	if depth > maxDepth {
		return s.fail("value nested too deep")
	}
	switch {
	case s.consume('{'):
		s.ws()
		if s.consume('}') {
			return nil
		}
		for {
			s.ws()
			if _, _, err := s.str(); err != nil {
				return err
			}
			s.ws()
			if !s.consume(':') {
				return s.fail("expected ':'")
			}
			s.ws()
			if err := s.value(depth + 1); err != nil {
				return err
			}
			s.ws()
			if s.consume('}') {
				return nil
			}
			if !s.consume(',') {
				return s.fail("expected ',' or '}'")
			}
		}
	case s.consume('['):
		s.ws()
		if s.consume(']') {
			return nil
		}
		for {
			s.ws()
			if err := s.value(depth + 1); err != nil {
				return err
			}
			s.ws()
			if s.consume(']') {
				return nil
			}
			if !s.consume(',') {
				return s.fail("expected ',' or ']'")
			}
		}
	case s.i < len(s.b) && s.b[s.i] == '"':
		_, _, err := s.str()
		return err
	case s.literal("true"), s.literal("false"), s.literal("null"):
		return nil
	default:
		return s.number()
	}
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *entryScanner) number() error {
	digits := func() bool {
		start := s.i
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
		return s.i > start
	}
	s.consume('-')
	switch {
	case s.consume('0'):
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		digits()
	default:
		return s.fail("expected a value")
	}
	if s.consume('.') && !digits() {
		return s.fail("expected a digit after '.'")
	}
	if s.consume('e') || s.consume('E') {
		if !s.consume('+') {
			s.consume('-')
		}
		if !digits() {
			return s.fail("expected a digit in the exponent")
		}
	}
	return nil
}

// parseTime reads the stored form of the time, and only that form: RFC
// 3339 in UTC ("Z") with the fraction of a second as time.RFC3339Nano
// writes it (no trailing zero, none when zero).
func parseTime(v []byte, escaped bool) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, string(v))
	if err == nil && (escaped || string(t.UTC().AppendFormat(nil, time.RFC3339Nano)) != string(v)) {
		err = errors.New("not in the stored form (RFC 3339, UTC, shortest fraction)")
	}
	return t.UTC(), err
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// integer reads a JSON integer: -?(0|[1-9][0-9]*), not followed by a
// fraction or exponent. It returns nil if there is none, which the
// caller's strconv parse rejects.
func (s *entryScanner) integer() []byte {
	start := s.i
	s.consume('-')
	switch {
	case s.consume('0'):
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
	default:
		return nil
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return nil
	}
	return s.b[start:s.i]
}

// plain marks the bytes a string may hold as themselves that need no
// further check: printable ASCII other than '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// special8 reports whether any of the eight bytes of w is not plain: a
// control byte (< 0x20), '"', '\\' or a byte >= 0x80. (Bit tricks from
// "Bit Twiddling Hacks": a byte is zero iff (x-0x01) & ^x & 0x80 is set;
// with borrows only from a lower zero byte, so a false positive can only
// follow a true one, which is all this needs.)
func special8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(x uint64) uint64 { return (x - ones) & ^x & highs }
	lt20 := (w - ones*0x20) & ^w & highs // some byte < 0x20 (for bytes < 0x80)
	return (w&highs)|lt20|hasZero(w^(ones*'"'))|hasZero(w^(ones*'\\')) != 0
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
