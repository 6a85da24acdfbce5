// Package decsec writes and reads an instant as decimal seconds since the
// Unix epoch — "1795339737.046163606", "-0.25", "0" — the one text form
// the audit log stores times in and the recorded policy input stores its
// instants in. Each instant (to the nanosecond) has exactly one form: the
// fraction has at most nine digits and no trailing zero, and is left out
// when it is zero; there is no "-0", no leading zero, no exponent. Parse
// accepts that form and nothing else, so that stored bytes and values map
// one to one (the audit log hashes the bytes).
package decsec

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrSyntax is wrapped by every error Parse returns.
var ErrSyntax = errors.New("not decimal seconds")

// Append appends the instant sec + nsec/1e9 (Unix seconds and a
// nanosecond offset 0 ≤ nsec < 1e9, as time.Time's Unix and Nanosecond
// give them) in decimal seconds.
func Append(b []byte, sec int64, nsec int64) []byte {
	if sec < 0 && nsec > 0 { // -1.25 s is sec -2, nsec 750 000 000
		sec, nsec = sec+1, 1e9-nsec
		if sec == 0 {
			b = append(b, '-')
		}
	}
	b = strconv.AppendInt(b, sec, 10)
	if nsec == 0 {
		return b
	}
	var frac [10]byte
	frac[0] = '.'
	for i := 9; i >= 1; i-- {
		frac[i] = byte('0' + nsec%10)
		nsec /= 10
	}
	n := 10
	for frac[n-1] == '0' {
		n--
	}
	return append(b, frac[:n]...)
}

// AppendNanos appends ns, nanoseconds since the epoch, in decimal seconds.
func AppendNanos(b []byte, ns int64) []byte {
	sec, nsec := ns/1e9, ns%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	return Append(b, sec, nsec)
}

// Parse reads what Append writes, and only that:
// -?(0|[1-9][0-9]*)(\.[0-9]{0,8}[1-9])?, not "-0", seconds within int64.
// It returns the instant as Append takes it (0 ≤ nsec < 1e9).
func Parse(b []byte) (sec int64, nsec int64, err error) {
	bad := func() (int64, int64, error) { return 0, 0, fmt.Errorf("%.40q: %w", b, ErrSyntax) }
	i := 0
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	digits := b[start:i]
	if len(digits) == 0 || len(digits) > 19 || (len(digits) > 1 && digits[0] == '0') {
		return bad()
	}
	var u uint64 // at most 19 digits: no overflow
	for _, c := range digits {
		u = u*10 + uint64(c-'0')
	}
	if neg && u > 1<<63 || !neg && u > 1<<63-1 {
		return bad()
	}
	sec = int64(u)
	if neg {
		sec = -sec // -(1<<63) wraps to itself, as it should
	}
	if i < len(b) {
		frac := b[i:]
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 || frac[len(frac)-1] == '0' {
			return bad()
		}
		for j := 1; j <= 9; j++ {
			nsec *= 10
			if j < len(frac) {
				if frac[j] < '0' || frac[j] > '9' {
					return bad()
				}
				nsec += int64(frac[j] - '0')
			}
		}
	} else if neg && sec == 0 {
		return bad()
	}
	if neg && nsec > 0 {
		if sec == -1<<63 {
			return bad()
		}
		sec, nsec = sec-1, 1e9-nsec
	}
	return sec, nsec, nil
}

// ParseNanos reads what AppendNanos writes: an instant within int64
// nanoseconds since the epoch.
func ParseNanos(b []byte) (int64, error) {
	sec, nsec, err := Parse(b)
	if err != nil {
		return 0, err
	}
	// sec*1e9 + nsec must fit in int64: from -9223372036.854775808
	// (sec -9223372037, nsec 145224192) to 9223372036.854775807.
	const minSec, minNsec, maxSec, maxNsec = -9223372037, 145224192, 9223372036, 854775807
	if sec < minSec || sec > maxSec || sec == minSec && nsec < minNsec || sec == maxSec && nsec > maxNsec {
		return 0, fmt.Errorf("%.40q: out of range: %w", b, ErrSyntax)
	}
	return sec*1e9 + nsec, nil
}
