package audit

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The stored bytes of an entry are JCS(json.Marshal(entry without hash))
// (marshalStored). appendCanonical writes those bytes directly — members
// sorted by name, strings with only the escapes RFC 8785 makes, integers
// in decimal — without encoding/json's reflection and the second parse
// JCS needs, which were a tenth of the gateway's allocations per request.
// Where its output could differ from the reference (a string that is not
// valid UTF-8, an integer beyond 2^53, a time not in UTC or outside
// years 0–9999) it declines, and marshalStored takes the reference path.
// TestCanonicalIsReference compares the two on generated and hostile
// entries.

// canonField is one stored member: its JSON name, the field, how it is
// written, and whether it is left out when empty.
type canonField struct {
	name      string
	offset    uintptr
	kind      canonKind
	omitEmpty bool
}

type canonKind uint8

const (
	canonString canonKind = iota
	canonInt
	canonUint
	canonBool
	canonStrings
	canonTime
	canonResidual
)

// canonPlan is Entry's stored members in JCS order (by name: the names
// are ASCII, so UTF-16 order is byte order).
var canonPlan = func() []canonField {
	var out []canonField
	for i := range storedType.NumField() {
		f := storedType.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		for _, r := range name {
			if r >= utf8.RuneSelf {
				panic("audit: stored name " + name + " is not ASCII")
			}
		}
		cf := canonField{name: name, offset: f.Offset, omitEmpty: opts == "omitempty"}
		ef := entryType.Field(i)
		switch {
		case ef.Type == reflect.TypeFor[time.Time]():
			cf.kind = canonTime
		case ef.Type == reflect.TypeFor[Residual]():
			cf.kind = canonResidual
		case ef.Type == reflect.TypeFor[[]string]():
			cf.kind = canonStrings
		case ef.Type.Kind() == reflect.String:
			cf.kind = canonString
		case ef.Type.Kind() == reflect.Int:
			cf.kind = canonInt
		case ef.Type.Kind() == reflect.Uint64:
			cf.kind = canonUint
		case ef.Type.Kind() == reflect.Bool:
			cf.kind = canonBool
		default:
			panic("audit: Entry field " + ef.Name + " has a type the canonical encoder does not write: " + ef.Type.String())
		}
		out = append(out, cf)
	}
	slices.SortFunc(out, func(a, b canonField) int { return strings.Compare(a.name, b.name) })
	return out
}()

// maxExact is the largest integer a JCS number holds exactly (2^53).
const maxExact = 1 << 53

// appendCanonical appends the stored bytes of e, or says (ok false) that
// only the reference encoding can write them.
func appendCanonical(b []byte, e *Entry) (_ []byte, ok bool) {
	base := unsafe.Pointer(e)
	b = append(b, '{')
	first := true
	member := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	// slot writes f's name unless f is left out empty, and null for a nil
	// value; it says whether f's value is to follow.
	slot := func(f *canonField, empty, null bool) bool {
		if empty && f.omitEmpty {
			return false
		}
		member(f.name)
		if null {
			b = append(b, "null"...)
			return false
		}
		return true
	}
	for i := range canonPlan {
		f := &canonPlan[i]
		p := unsafe.Add(base, f.offset)
		switch f.kind {
		case canonString:
			if s := *(*string)(p); slot(f, s == "", false) {
				if b, ok = appendCanonString(b, s); !ok {
					return nil, false
				}
			}
		case canonInt:
			v := *(*int)(p)
			if v > maxExact || v < -maxExact {
				return nil, false
			}
			if slot(f, v == 0, false) {
				b = strconv.AppendInt(b, int64(v), 10)
			}
		case canonUint:
			v := *(*uint64)(p)
			if v > maxExact {
				return nil, false
			}
			if slot(f, v == 0, false) {
				b = strconv.AppendUint(b, v, 10)
			}
		case canonBool:
			if v := *(*bool)(p); slot(f, !v, false) {
				b = strconv.AppendBool(b, v)
			}
		case canonStrings:
			if v := *(*[]string)(p); slot(f, len(v) == 0, v == nil) {
				b = append(b, '[')
				for j, s := range v {
					if j > 0 {
						b = append(b, ',')
					}
					if b, ok = appendCanonString(b, s); !ok {
						return nil, false
					}
				}
				b = append(b, ']')
			}
		case canonTime:
			t := *(*time.Time)(p)
			if t.Location() != time.UTC || t.Year() < 0 || t.Year() > 9999 {
				return nil, false
			}
			if slot(f, false, false) {
				b = append(b, '"')
				b = t.AppendFormat(b, time.RFC3339Nano)
				b = append(b, '"')
			}
		case canonResidual:
			if v := *(*Residual)(p); slot(f, len(v) == 0, v == nil) {
				if b, ok = appendCanonString(b, unsafe.String(unsafe.SliceData(v), len(v))); !ok {
					return nil, false
				}
			}
		}
	}
	return append(b, '}'), true
}

// appendCanonString appends s as RFC 8785 writes a string: quoted, with
// \" \\ \b \f \n \r \t, \u00xx (lower-case hex) for the other control
// characters, and every other character as it is. It declines a string
// that is not valid UTF-8.
func appendCanonString(b []byte, s string) ([]byte, bool) {
	if !utf8.ValidString(s) {
		return nil, false
	}
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}
