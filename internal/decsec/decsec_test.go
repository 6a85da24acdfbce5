package decsec

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestAppendParse(t *testing.T) {
	for want, at := range map[string]time.Time{
		"1795339737.046163606":   time.Date(2026, 11, 22, 9, 28, 57, 46_163_606, time.UTC),
		"1795339737.5":           time.Date(2026, 11, 22, 9, 28, 57, 500_000_000, time.UTC),
		"1795339737":             time.Date(2026, 11, 22, 9, 28, 57, 0, time.UTC),
		"0":                      time.Unix(0, 0),
		"-1":                     time.Unix(-1, 0),
		"-0.25":                  time.Unix(-1, 750_000_000),
		"-1.000000001":           time.Unix(-2, 999_999_999),
		"-62135596800":           {},
		"253402300799.999999999": time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
	} {
		got := string(Append(nil, at.Unix(), int64(at.Nanosecond())))
		if got != want {
			t.Errorf("form of %v = %s, want %s", at, got, want)
		}
		sec, nsec, err := Parse([]byte(got))
		if err != nil || !time.Unix(sec, nsec).Equal(at) {
			t.Errorf("Parse(%s) = %d, %d, %v, want %v", got, sec, nsec, err, at)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 100_000 {
		sec, nsec := r.Int64N(400e9)-200e9, r.Int64N(1e9)*int64(r.IntN(2))
		b := Append(nil, sec, nsec)
		s2, n2, err := Parse(b)
		if err != nil || s2 != sec || n2 != nsec {
			t.Fatalf("(%d, %d): %s read back as (%d, %d), %v", sec, nsec, b, s2, n2, err)
		}
	}
	for _, bad := range []string{"", "-", "-0", "01", "1.", "1.0", "1.10", "1.0000000001", "1e9", "+1", "1.-5", " 1", "1 ",
		`"1"`, "9223372036854775808", "-9223372036854775808.5", "1.a", "null"} {
		if _, _, err := Parse([]byte(bad)); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestNanos(t *testing.T) {
	for want, ns := range map[string]int64{
		"0":                     0,
		"1795339737.046163606":  1795339737046163606,
		"-0.000000001":          -1,
		"-1.5":                  -1_500_000_000,
		"9223372036.854775807":  math.MaxInt64,
		"-9223372036.854775808": math.MinInt64,
	} {
		got := string(AppendNanos(nil, ns))
		if got != want {
			t.Errorf("AppendNanos(%d) = %s, want %s", ns, got, want)
		}
		back, err := ParseNanos([]byte(got))
		if err != nil || back != ns {
			t.Errorf("ParseNanos(%s) = %d, %v, want %d", got, back, err, ns)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 100_000 {
		ns := int64(r.Uint64())
		back, err := ParseNanos(AppendNanos(nil, ns))
		if err != nil || back != ns {
			t.Fatalf("%d read back as %d, %v", ns, back, err)
		}
	}
	for _, bad := range []string{"9223372036.854775808", "-9223372036.854775809", "9223372037", "-9223372037", "1.0"} {
		if _, err := ParseNanos([]byte(bad)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseNanos(%q) = %v, want ErrSyntax", bad, err)
		}
	}
}
