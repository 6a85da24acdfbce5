package audit

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// canonPieces are what a generated string is made of: plain text, every
// character JCS escapes, characters encoding/json escapes and JCS does
// not, multi-byte and astral characters, and (rarely) invalid UTF-8.
var canonPieces = []string{"a", "exley-csc", "Z", "0", " ", "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f",
	"<", ">", "&", "\u2028", "\u2029", "\ufeff", "é", "😀", "\U0010ffff", "~", "{", "}", "[", ":", ","}

func genCanonString(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(12) {
		b.WriteString(canonPieces[r.IntN(len(canonPieces))])
	}
	if r.IntN(50) == 0 {
		b.WriteString("\xff\xc3")
	}
	return b.String()
}

// genCanonEntry fills every field of an entry at random (each empty one
// time in three), through reflection, so that a field added to Entry is
// covered without changing this test.
func genCanonEntry(r *rand.Rand) Entry {
	var e Entry
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if r.IntN(3) == 0 && f.Type() != reflect.TypeFor[time.Time]() {
			continue
		}
		switch {
		case f.Type() == reflect.TypeFor[time.Time]():
			t := time.Unix(r.Int64N(1<<34)-1<<30, r.Int64N(1e9)*int64(r.IntN(2)))
			switch r.IntN(40) {
			case 0:
				t = t.In(time.FixedZone("x", 3600))
			case 1:
				t = time.Date(10000+r.IntN(5), 1, 1, 0, 0, 0, 0, time.UTC)
			default:
				t = t.UTC()
			}
			f.Set(reflect.ValueOf(t))
		case f.Type() == reflect.TypeFor[Residual]():
			f.Set(reflect.ValueOf(Residual(genCanonString(r))))
		case f.Type() == reflect.TypeFor[[]string]():
			n := r.IntN(4)
			s := make([]string, n)
			for j := range s {
				s[j] = genCanonString(r)
			}
			f.Set(reflect.ValueOf(s))
		case f.Kind() == reflect.String:
			f.SetString(genCanonString(r))
		case f.Kind() == reflect.Int:
			f.SetInt([]int64{200, 403, 503, -1, 1 << 53, -1 << 53}[r.IntN(6)])
			if r.IntN(40) == 0 { // beyond what a JCS number holds exactly
				f.SetInt([]int64{1<<53 + 1, -1<<53 - 1, r.Int64()}[r.IntN(3)])
			}
		case f.Kind() == reflect.Uint64:
			f.SetUint([]uint64{1, 42, 1 << 53}[r.IntN(3)])
			if r.IntN(40) == 0 {
				f.SetUint([]uint64{1<<53 + 1, r.Uint64()}[r.IntN(2)])
			}
		case f.Kind() == reflect.Bool:
			f.SetBool(r.IntN(2) == 0)
		default:
			panic("genCanonEntry: a field of type " + f.Type().String())
		}
	}
	return e
}

// TestCanonicalIsReference: wherever the direct encoder writes an
// entry's stored bytes, they are exactly what encoding/json and jcs make
// of it; where it declines, the reference path is taken. Over the
// generated entries the direct encoder writes most of them (every
// storable one: valid UTF-8, UTC, exact integers).
func TestCanonicalIsReference(t *testing.T) {
	r := rand.New(rand.NewPCG(8785, 1))
	wrote := 0
	const n = 20000
	for i := range n {
		e := genCanonEntry(r)
		if i%2 == 0 {
			makeStorable(&e)
		}
		got, ok := appendCanonical(nil, &e)
		want, err := marshalStoredReference(&e)
		if !ok {
			continue
		}
		wrote++
		if err != nil {
			t.Fatalf("entry %d: the direct encoder wrote what the reference refuses (%v): %+v", i, err, e)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("entry %d:\n direct    %q\n reference %q", i, got, want)
		}
		if full, err := marshalStored(&e); err != nil || !bytes.Equal(full, want) {
			t.Fatalf("entry %d: marshalStored differs from the reference", i)
		}
	}
	if wrote < n/4 {
		t.Fatalf("the direct encoder wrote only %d of %d entries", wrote, n)
	}
	for i, e := range []Entry{TypicalEntry(1), {Time: time.Unix(0, 0).UTC(), Kind: KindAuthFailure}} {
		got, ok := appendCanonical(nil, &e)
		want, err := marshalStoredReference(&e)
		if !ok || err != nil || !bytes.Equal(got, want) {
			t.Fatalf("entry %d: direct %q (%t), reference %q (%v)", i, got, ok, want, err)
		}
	}
	t.Logf("the direct encoder wrote %d of %d generated entries, all as the reference", wrote, n)
}

func BenchmarkStoredEncoding(b *testing.B) {
	e := TypicalEntry(1)
	e.Time = time.Now().UTC()
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			appendCanonical(make([]byte, 0, 1024), &e)
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			marshalStoredReference(&e)
		}
	})
}
