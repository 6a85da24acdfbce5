package nhs

import (
	"errors"
	"testing"
)

func TestNormalize(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"9990000018", "9990000018", true},
		{"999 000 0018", "9990000018", true},
		{"999-000-0018", "9990000018", true},
		{"9990000019", "", false}, // wrong check digit
		{"999000001", "", false},  // too short
		{"99900000180", "", false},
		{"99900000a8", "", false},
		{"", "", false},
	}
	for _, c := range cases {
		got, err := Normalize(c.in)
		if c.ok {
			if err != nil || got != c.want {
				t.Errorf("Normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%q) = %q, %v; want ErrInvalid", c.in, got, err)
		}
	}
}

func TestCheckDigitAgreesWithNormalize(t *testing.T) {
	valid := 0
	for i := 0; i < 2000; i++ {
		nine := "999" + pad6(i)
		d, ok := CheckDigit(nine)
		if !ok {
			continue
		}
		valid++
		if !Valid(nine + string(d)) {
			t.Fatalf("%s%c should be valid", nine, d)
		}
		wrong := byte('0' + (d-'0'+1)%10)
		if Valid(nine + string(wrong)) {
			t.Fatalf("%s%c should be invalid", nine, wrong)
		}
	}
	if valid < 1500 {
		t.Fatalf("only %d of 2000 prefixes had a check digit", valid)
	}
}

func pad6(i int) string {
	s := []byte("000000")
	for p := 5; p >= 0 && i > 0; p-- {
		s[p] = byte('0' + i%10)
		i /= 10
	}
	return string(s)
}

func TestStripSeparators(t *testing.T) {
	for in, want := range map[string]string{
		"999 000 0018": "9990000018",
		"999-000-0018": "9990000018",
		"9990000018":   "9990000018",
		"12 ab-c":      "12abc",
		"":             "",
	} {
		if got := StripSeparators(in); got != want {
			t.Errorf("StripSeparators(%q) = %q, want %q", in, got, want)
		}
	}
}
