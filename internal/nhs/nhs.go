package nhs

import (
	"errors"
	"strings"
)

// ErrInvalid is returned (wrapped) for any number that is not a valid NHS number.
var ErrInvalid = errors.New("invalid NHS number")

var separators = strings.NewReplacer(" ", "", "-", "")

// StripSeparators removes the spaces and hyphens practitioners commonly
// type in an NHS number ("999 000 0018", "999-000-0018").
func StripSeparators(s string) string { return separators.Replace(s) }

// Normalize strips the spaces and hyphens practitioners commonly type and
// returns the ten-digit form, or an error wrapping ErrInvalid that says why.
func Normalize(s string) (string, error) {
	d := StripSeparators(strings.TrimSpace(s))
	if len(d) != 10 {
		return "", &Error{Reason: "must be 10 digits"}
	}
	sum := 0
	for i := 0; i < 10; i++ {
		c := d[i]
		if c < '0' || c > '9' {
			return "", &Error{Reason: "must contain only digits"}
		}
		if i < 9 {
			sum += int(c-'0') * (10 - i)
		}
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	if check == 10 || check != int(d[9]-'0') {
		return "", &Error{Reason: "fails the modulus-11 check digit"}
	}
	return d, nil
}

// Valid reports whether s is a valid NHS number.
func Valid(s string) bool {
	_, err := Normalize(s)
	return err == nil
}

// Error says why a number is not a valid NHS number.
type Error struct{ Reason string }

func (e *Error) Error() string { return "invalid NHS number: " + e.Reason }

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *Error) Unwrap() error { return ErrInvalid }

// CheckDigit returns the modulus-11 check digit for the first nine digits,
// and false when no valid check digit exists (the remainder gives 10).
// Used to generate synthetic test numbers in the 999 range.
func CheckDigit(nine string) (byte, bool) {
	if len(nine) != 9 {
		return 0, false
	}
	sum := 0
	for i := 0; i < 9; i++ {
		if nine[i] < '0' || nine[i] > '9' {
			return 0, false
		}
		sum += int(nine[i]-'0') * (10 - i)
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	if check == 10 {
		return 0, false
	}
	return byte('0' + check), true
}
