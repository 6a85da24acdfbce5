package hostile

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestNHSArithmetic(t *testing.T) {
	for _, c := range []struct {
		n  string
		ok bool
	}{{"9990000018", true}, {"9990000026", true}, {"9990000019", false}, {"999000001", false}, {"99900000x8", false}, {"4010232137", true}, {"999 0000 01 8", false}} {
		if ValidNHS(c.n) != c.ok {
			t.Errorf("ValidNHS(%s) = %v", c.n, !c.ok)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		n := RandomNHS(r)
		if !ValidNHS(n) || n[:3] != "999" {
			t.Fatalf("RandomNHS gave %s", n)
		}
		f := FormatNHS(r, n)
		if !slices.Contains(ScanNHS(f), n) {
			t.Fatalf("ScanNHS(%q) = %v, misses %s", f, ScanNHS(f), n)
		}
	}
	for _, s := range []string{"2026-11-22T09:28:57Z", "no digits", "99900000"} {
		if got := ScanNHS(s); len(got) != 0 {
			t.Errorf("ScanNHS(%q) = %v", s, got)
		}
	}
}
