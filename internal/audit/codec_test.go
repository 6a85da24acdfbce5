package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Times are stored in decimal seconds (internal/decsec tests the form);
// here: whatever the zone, the instant is kept and read back in UTC, and
// a bad form is a bad stored value.
func TestStoredTime(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 28, 57, 46_163_606, time.FixedZone("", 3600))
	got := string(appendStoredTime(nil, at))
	if got != "1795336137.046163606" {
		t.Errorf("stored form of %v = %s", at, got)
	}
	back, err := parseStoredTime([]byte(got))
	if err != nil || !back.Equal(at) || back.Location() != time.UTC {
		t.Errorf("parse %s = %v, %v, want %v in UTC", got, back, err, at)
	}
	if _, err := parseStoredTime([]byte("1.0")); !errors.Is(err, errStoredValue) {
		t.Errorf("parseStoredTime(1.0) = %v, want errStoredValue", err)
	}
}

func TestStoredHex(t *testing.T) {
	for v, want := range map[string]string{
		"":                        "",
		GenesisHash:               strings.Repeat("A", 43),
		"00ff":                    "AP8",
		"4f9c2d1":                 "~4f9c2d1", // odd length
		"ABCD":                    "~ABCD",    // not lowercase
		"req-0001":                "~req-0001",
		"~":                       "~~",
		"AP8":                     "~AP8", // looks like a stored form
		"<&>\u2028":               "~<&>\u2028",
		strings.Repeat("ab", 100): base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xab}, 100)),
	} {
		got := storedHexForm(v)
		if got != want {
			t.Errorf("stored form of %q = %q, want %q", v, got, want)
		}
		back, err := parseStoredHex(got)
		if err != nil || back != v {
			t.Errorf("parse %q = %q, %v, want %q", got, back, err, v)
		}
		j, _ := json.Marshal(got)
		if s := string(appendStoredHexJSON(nil, v)); s != string(j) {
			t.Errorf("appendStoredHexJSON(%q) = %s, want %s", v, s, j)
		}
	}
	for _, bad := range []string{"~", "~00ff", "AP9", "AP8=", "A", "AP\n8", "A+8", "A/8", "~ab"} {
		if v, err := parseStoredHex(bad); err == nil {
			t.Errorf("parseStoredHex(%q) accepted: %q", bad, v)
		}
	}
}

func TestStoredReasons(t *testing.T) {
	e := Entry{Protocol: "isp-safeguarding", ProtocolVersion: "3", Rule: "police-to-social-care"}
	ref := ruleRef(&e)
	if ref != "isp-safeguarding v3 rule police-to-social-care" {
		t.Fatal(ref)
	}
	allow := []string{"allowed by " + ref + " (consent not required by the rule)", "category x withheld: rule police-to-social-care does not cover it"}
	stored, changed := storeReasons(allow, ref)
	if !changed || stored[0] != "allowed by \x1e (consent not required by the rule)" || stored[1] != allow[1] || allow[0] == stored[0] {
		t.Fatalf("stored %q (caller's %q)", stored, allow)
	}
	if _, changed := storeReasons([]string{"no protocol in force"}, ref); changed {
		t.Fatal("a reason without the rule changed")
	}
	// Any reasons, any rule reference: the round trip is exact.
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"\x1e", "\x1f", "a", " v", " rule ", "p", "3", "é", "\x1f\x1e", ref}
	word := func(n int) string {
		var b strings.Builder
		for range r.IntN(n) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	for range 50_000 {
		e := Entry{Protocol: word(3), ProtocolVersion: word(2), Rule: word(3)}
		if r.IntN(2) == 0 {
			e = Entry{Protocol: "p", ProtocolVersion: "3", Rule: "a"}
		}
		rs := make([]string, r.IntN(3))
		for i := range rs {
			rs[i] = word(6)
		}
		orig := slices.Clone(rs)
		st, _ := storeReasons(rs, ruleRef(&e))
		back := slices.Clone(st)
		loadReasons(back, ruleRef(&e))
		if !slices.Equal(back, orig) || !slices.Equal(rs, orig) {
			t.Fatalf("reasons %q with rule %q stored as %q read back as %q", orig, ruleRef(&e), st, back)
		}
	}
}

// Entries whose values need the stored forms survive Append, Get, the
// scanner and Verify unchanged.
func TestStoredFormsThroughTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var want []Entry
	for i, mod := range []func(*Entry){
		func(*Entry) {},
		func(e *Entry) { e.Subject, e.RequestID, e.PolicyRevision = "child-1", "req-1", "4f9c2d1" },
		func(e *Entry) { e.Subject, e.DisclosedSHA256 = "AP8", GenesisHash },
		func(e *Entry) {
			e.Reasons = []string{"\x1e\x1f", e.Protocol + " v" + e.ProtocolVersion + " rule " + e.Rule + "\x1e"}
		},
		func(e *Entry) { e.Time = time.Date(1969, 12, 31, 23, 59, 59, 1, time.UTC) },
		func(e *Entry) { e.Time = time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC) },
	} {
		e := TypicalEntry(i)
		mod(&e)
		if _, _, err := l.Append(ctx, &e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	for i, w := range want {
		got, err := l.Get(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Time.Equal(w.Time) || got.Subject != w.Subject || got.RequestID != w.RequestID || got.PolicyRevision != w.PolicyRevision ||
			got.DisclosedSHA256 != w.DisclosedSHA256 || !slices.Equal(got.Reasons, w.Reasons) || !bytes.Equal(got.InputResidual, w.InputResidual) {
			t.Fatalf("entry %d read back as %+v, want %+v", i+1, got, w)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, path, Options{}); err != nil {
		t.Fatal(err)
	}
}

// Export shows every value as stored: in full (format 4 has no dense forms).
func TestExportShowsFullValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	e := TypicalEntry(9)
	if _, _, err := l.Append(ctx, &e); err != nil {
		t.Fatal(err)
	}
	stored, err := l.Stored(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	for format, want := range map[string][]string{
		FormatJSONL: {`"time":"` + e.Time.Format(time.RFC3339Nano) + `"`, `"subject":"` + e.Subject + `"`, `"request_id":"` + e.RequestID + `"`,
			`"policy_revision":"` + e.PolicyRevision + `"`, `"prev_hash":"` + GenesisHash + `"`, `"reasons":["` + e.Reasons[0] + `"]`},
		FormatCSV: {e.Time.Format(time.RFC3339Nano), e.Subject, e.RequestID, e.PolicyRevision, GenesisHash, e.Reasons[0]},
	} {
		var b bytes.Buffer
		if _, err := l.Export(ctx, &b, time.Time{}, time.Time{}, format); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s export lacks %s:\n%s", format, w, b.String())
			}
		}
		if bytes.Contains(stored, []byte(`\u001e`)) || !strings.Contains(string(stored), `"subject":"`+e.Subject+`"`) {
			t.Fatalf("the stored form is not the entry as shown: %s", stored)
		}
	}
}
