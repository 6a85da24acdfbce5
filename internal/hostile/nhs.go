package hostile

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// ValidNHS says whether ten digits form a valid NHS number: the weighted
// sum of the first nine (weights 10 down to 2) modulo 11, taken from 11,
// is the tenth (11 counts as 0; 10 is never valid).
func ValidNHS(d string) bool {
	if len(d) != 10 {
		return false
	}
	sum := 0
	for i := 0; i < 9; i++ {
		c := d[i]
		if c < '0' || c > '9' {
			return false
		}
		sum += int(c-'0') * (10 - i)
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	return check != 10 && int(d[9]-'0') == check
}

// RandomNHS is a random valid NHS number of the synthetic 999 range.
func RandomNHS(r *rand.Rand) string {
	for {
		d := fmt.Sprintf("999%06d", r.IntN(1_000_000))
		sum := 0
		for i := 0; i < 9; i++ {
			sum += int(d[i]-'0') * (10 - i)
		}
		check := 11 - sum%11
		if check == 11 {
			check = 0
		}
		if check == 10 {
			continue
		}
		return d + fmt.Sprint(check)
	}
}

// FormatNHS writes n as a person or a system might: plain, in 3-3-4
// groups with spaces, hyphens or dots, and embedded in other text.
func FormatNHS(r *rand.Rand, n string) string {
	g := n[:3] + "%s" + n[3:6] + "%s" + n[6:]
	switch r.IntN(8) {
	case 0, 1:
		return n
	case 2:
		return fmt.Sprintf(g, " ", " ")
	case 3:
		return fmt.Sprintf(g, "-", "-")
	case 4:
		return fmt.Sprintf(g, ".", ".")
	case 5:
		return "ref" + n + "x"
	case 6:
		return "NHS no. " + fmt.Sprintf(g, " ", " ") + ", seen today"
	default:
		return "child/" + n + "/notes"
	}
}

// scanSeparators are the characters allowed between two digits of one run
// (one at a time): what FormatNHS and a person would use, and a few more.
const scanSeparators = " -._/,:+\t"

// ScanNHS returns every valid NHS number found in s: within each run of
// digits (neighbours separated by at most one separator character), every
// window of ten consecutive digits that has a valid check digit.
func ScanNHS(s string) []string {
	var found []string
	var run []byte
	flush := func() {
		for i := 0; i+10 <= len(run); i++ {
			if ValidNHS(string(run[i : i+10])) {
				found = append(found, string(run[i:i+10]))
			}
		}
		run = run[:0]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			run = append(run, c)
		case strings.IndexByte(scanSeparators, c) >= 0 && len(run) > 0 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			// one separator between two digits: the run goes on
		default:
			flush()
		}
	}
	flush()
	return found
}
