package nhs_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/childrens-trust/trustgate/internal/nhs"
)

func TestRedact(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"no such endpoint: GET /v1/subjects/9996000133/nothing", "no such endpoint: GET /v1/subjects/{nhs}/nothing"},
		{"/v1/subjects/9996000524x/consents", "/v1/subjects/{nhs}x/consents"},
		{"999 000 0018", "{nhs}"},
		{"999-000-0018", "{nhs}"},
		{"a9990000018b", "a{nhs}b"},
		{"x123999000001899y", "x{nhs}y"}, // inside a longer run
		{"9990000019", "9990000019"},     // fails the check digit
		{"request 12345", "request 12345"},
		{"", ""},
	} {
		if got := nhs.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Random valid numbers, formatted every way, inside random text, never
// survive Redact.
func TestRedactProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 5))
	for i := 0; i < 20000; i++ {
		n := RandomNumber(r)
		in := Disguise(r, n)
		out := nhs.Redact(in)
		if strings.Contains(nhs.StripSeparators(out), n) || ContainsNumber(out) {
			t.Fatalf("%q → %q still holds %s", in, out, n)
		}
	}
}

// RandomNumber is a random valid NHS number in the 999 range.
func RandomNumber(r *rand.Rand) string {
	for {
		nine := fmt.Sprintf("999%06d", r.IntN(1000000))
		if c, ok := nhs.CheckDigit(nine); ok {
			return nine + string(c)
		}
	}
}

// Disguise writes n inside random text, with random separators.
func Disguise(r *rand.Rand, n string) string {
	seps := []string{"", " ", "-", ".", "_", "/", ":"}
	var b strings.Builder
	b.WriteString([]string{"", "x", "/v1/subjects/", "sub=", "7", "abc "}[r.IntN(6)])
	for i := 0; i < len(n); i++ {
		b.WriteByte(n[i])
		if i == 2 || i == 5 || r.IntN(8) == 0 {
			b.WriteString(seps[r.IntN(len(seps))])
		}
	}
	b.WriteString([]string{"", "x", "/consents", "9", " end"}[r.IntN(5)])
	return b.String()
}

// ContainsNumber reports whether any ten consecutive digits of s (other
// characters skipped) are a valid NHS number.
func ContainsNumber(s string) bool {
	var d []byte
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			d = append(d, s[i])
		}
	}
	for k := 0; k+10 <= len(d); k++ {
		if nhs.Valid(string(d[k : k+10])) {
			return true
		}
	}
	return false
}

func TestFreeOfSkipsValuesHoldingANumber(t *testing.T) {
	vals := []string{"ab9990000018cd", "x999-000-0018", "abcdef0123"}
	i := 0
	got := nhs.FreeOf(func() string { v := vals[i]; i++; return v })
	if got != "abcdef0123" || i != 3 {
		t.Fatalf("FreeOf = %q after %d draws, want the third value", got, i)
	}
}
