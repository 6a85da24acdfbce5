package whatif

import (
	"errors"
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	for in, want := range map[string]time.Duration{"12h": 12 * time.Hour, "30d": 30 * 24 * time.Hour, "2w": 14 * 24 * time.Hour} {
		if got, err := ParseSince(in); err != nil || got != want {
			t.Errorf("ParseSince(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "d", "30", "30 days", "-1d", "0d", "3m", "99999w"} {
		if _, err := ParseSince(in); !errors.Is(err, ErrPeriod) {
			t.Errorf("ParseSince(%q) accepted", in)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, c := range []struct {
		dir, name string
		ok        bool
	}{
		{"policies", "sharing.rego", true},
		{"policies", "samples.yaml", true},
		{"policies", "other.yaml", false},
		{"policies", "../sharing.rego", false},
		{"policies", ".hidden.rego", false},
		{"protocols", "safeguarding.yaml", true},
		{"protocols", "safeguarding.yaml.jws", true},
		{"protocols", "safeguarding.yaml.withdrawals.json", true},
		{"protocols", "trust.yaml", true},
		{"protocols", "keys/exley-csc.jwks.json", false},
		{"protocols", "notes.txt", false},
		{"elsewhere", "x.yaml", false},
	} {
		if err := ValidName(c.dir, c.name); (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrProposal)) {
			t.Errorf("ValidName(%q, %q) = %v", c.dir, c.name, err)
		}
	}
}
