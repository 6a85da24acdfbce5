package nhs

import "strings"

// Mask is what Redact writes in place of an NHS number.
const Mask = "{nhs}"

// redactSeparators may stand between the digits of a number as typed or
// smuggled: spaces, hyphens, dots, underscores, slashes, commas, colons,
// plus signs and tabs (one at a time).
const redactSeparators = " -._/,:+\t"

// Redact returns s with every run of digits that holds a valid NHS number
// written as Mask. A run is digits with at most one separator between
// neighbours (999 000 0018, 999-000-0018, 9990000018x, a08/9990000018);
// when any ten consecutive digits of a run are a valid NHS number, the
// whole run is masked (so a number inside a longer string of digits is
// caught, at the price of masking the rest of that run too). Text with no
// such run is returned unchanged, without allocating.
func Redact(s string) string {
	if len(s) < 10 || !hasTenDigits(s) {
		return s
	}
	var b strings.Builder
	last := 0 // s[:last] is written or skipped
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		// A run from i: digits, single separators between them.
		start, end := i, i
		var digits []byte
		j := i
		for j < len(s) {
			if isDigit(s[j]) {
				digits = append(digits, s[j])
				end = j + 1
				j++
				continue
			}
			if strings.IndexByte(redactSeparators, s[j]) >= 0 && j+1 < len(s) && isDigit(s[j+1]) {
				j++
				continue
			}
			break
		}
		if holdsNumber(digits) {
			b.WriteString(s[last:start])
			b.WriteString(Mask)
			last = end
		}
		i = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func hasTenDigits(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			if n++; n >= 10 {
				return true
			}
		}
	}
	return false
}

// holdsNumber reports whether any ten consecutive digits are a valid NHS
// number.
func holdsNumber(d []byte) bool {
	for k := 0; k+10 <= len(d); k++ {
		if c, ok := CheckDigit(string(d[k : k+9])); ok && c == d[k+9] {
			return true
		}
	}
	return false
}

// FreeOf returns the first value of gen that holds no valid NHS number.
// Random hex identifiers (request, token, consent, review and notification
// ids) hold a ten-digit run that passes the check digit about once in a
// hundred; such an id would be redacted when written to the audit log (and
// no longer match its record) and would look like an NHS number to anyone
// scanning the log. Identifiers the gateway makes are drawn through FreeOf.
func FreeOf(gen func() string) string {
	for {
		if s := gen(); Redact(s) == s {
			return s
		}
	}
}
