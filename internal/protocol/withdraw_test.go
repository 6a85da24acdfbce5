package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// signedDir writes the test protocol, signed by every signatory, into a
// fresh directory and returns its path.
func signedDir(t *testing.T, tt *testTrust) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "safeguarding.yaml")
	doc := testDoc(t)
	writeFile(t, path, doc)
	writeFile(t, path+SignatureSuffix, tt.signAll(t, doc, signers...))
	return path
}

func TestWithdrawalTakesTheProtocolOutOfForce(t *testing.T) {
	tt := newTrust(t)
	path := signedDir(t, tt)
	effective := now.Add(48 * time.Hour)

	if err := WithdrawFile(path, tt.priv["exley-police"], "", effective, now); err != nil {
		t.Fatal(err)
	}
	// Before the effective time: still in force, a warning, and Until moves.
	st, err := EvaluateFile(path, tt.reg, now)
	if err != nil {
		t.Fatal(err)
	}
	if !st.InForce || !st.Until.Equal(effective) {
		t.Fatalf("before the effective time: InForce %v Until %v, reasons %q", st.InForce, st.Until, st.Reasons)
	}
	if !slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.HasPrefix(w, "exley-police withdraws from ") }) {
		t.Fatalf("warnings %q", st.Warnings)
	}
	// From the effective time: not in force for anyone, and why.
	st, err = EvaluateFile(path, tt.reg, effective)
	if err != nil {
		t.Fatal(err)
	}
	want := "withdrawn by exley-police from " + NewDate(effective).String()
	if st.InForce || !slices.Equal(st.Reasons, []string{want}) {
		t.Fatalf("at the effective time: InForce %v reasons %q", st.InForce, st.Reasons)
	}
	if len(st.Withdrawals) != 1 || !st.Withdrawals[0].OK || st.Withdrawals[0].Claims.Partner != "exley-police" ||
		st.Withdrawals[0].Claims.Protocol != "isp-test-safeguarding" || st.Withdrawals[0].Claims.Version != "3" {
		t.Fatalf("withdrawals %+v", st.Withdrawals)
	}
	f := st.Findings[len(st.Findings)-1]
	if f.Kind != FindingWithdrawn || f.File != path+WithdrawalSuffix || f.Partner != "exley-police" {
		t.Fatalf("finding %+v", f)
	}

	// A second signatory withdrawing keeps the first one's entry; the
	// earliest effective time wins.
	if err := WithdrawFile(path, tt.priv["st-annes"], "st-annes", now.Add(24*time.Hour), now); err != nil {
		t.Fatal(err)
	}
	st, _ = EvaluateFile(path, tt.reg, now)
	if len(st.Withdrawals) != 2 || !st.Until.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("two withdrawals: %+v until %v", st.Withdrawals, st.Until)
	}
	// Withdrawing again replaces the partner's earlier withdrawal.
	if err := WithdrawFile(path, tt.priv["st-annes"], "", now.Add(72*time.Hour), now); err != nil {
		t.Fatal(err)
	}
	st, _ = EvaluateFile(path, tt.reg, now)
	if len(st.Withdrawals) != 2 || !st.Until.Equal(effective) {
		t.Fatalf("after replacing: %+v until %v", st.Withdrawals, st.Until)
	}
}

func TestWithdrawRefuses(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	if _, err := Withdraw(doc, nil, tt.priv["oak-academy"], "oak-academy", now, now); !errors.Is(err, ErrNotSignatory) {
		t.Fatalf("non-signatory: %v", err)
	}
	if _, err := Withdraw(doc, nil, tt.priv["exley-csc"], "exley-csc", time.Time{}, now); err == nil {
		t.Fatal("zero effective time accepted")
	}
	pub := tt.pub["exley-csc"]
	if _, err := Withdraw(doc, nil, pub, "exley-csc", now, now); !errors.Is(err, ErrKey) {
		t.Fatalf("public key: %v", err)
	}
	if _, err := Withdraw(doc, []byte("{"), tt.priv["exley-csc"], "exley-csc", now, now); !errors.Is(err, ErrWithdrawalFile) {
		t.Fatalf("malformed existing file: %v", err)
	}
	if _, err := Withdraw([]byte("id: x"), nil, tt.priv["exley-csc"], "exley-csc", now, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid protocol: %v", err)
	}
}

// A withdrawal that does not verify keeps the protocol out of force (fail
// closed) and is reported as a withdrawal finding; one for another version
// or by a non-signatory is ignored with a warning.
func TestWithdrawalVerification(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	sigs := tt.signAll(t, doc, signers...)
	good, err := Withdraw(doc, nil, tt.priv["exley-csc"], "exley-csc", now.Add(time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	var file withdrawalFile
	if err := json.Unmarshal(good, &file); err != nil {
		t.Fatal(err)
	}
	raw := func(alg jwa.SignatureAlgorithm, key any, hdrs map[string]any, claims any) []byte {
		t.Helper()
		h := jws.NewHeaders()
		for k, v := range hdrs {
			if err := h.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
		payload, _ := json.Marshal(claims)
		c, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(withdrawalFile{Withdrawals: []string{string(c)}})
		return b
	}
	claims := func(partner, version string) WithdrawalClaims {
		return WithdrawalClaims{Protocol: "isp-test-safeguarding", Version: version, Partner: partner, Effective: now.Add(-time.Hour), SignedAt: now}
	}
	hdr := func(partner string) map[string]any {
		return map[string]any{"typ": WithdrawalType, "partner": partner}
	}
	tampered := bytes.Replace(good, []byte(file.Withdrawals[0][len(file.Withdrawals[0])-8:]), []byte("AAAAAAAA"), 1)

	cases := []struct {
		name      string
		wd        []byte
		inForce   bool
		reason    string // a reason (or, when inForce, a warning) that must appear
		badFinder bool   // a FindingWithdrawal is raised
	}{
		{"tampered signature", tampered, false, "bad withdrawal from exley-csc: signature does not verify", true},
		{"malformed file", []byte(`{"withdrawals": 3}`), false, "bad withdrawal from ?: malformed withdrawals file", true},
		{"another partner's key", raw(jwa.ES256, withKid(t, tt.priv["exley-police"], tt.kid("exley-police")), hdr("exley-csc"), claims("exley-csc", "3")), false, "bad withdrawal from exley-csc: key", true},
		{"wrong typ", raw(jwa.ES256, tt.priv["exley-csc"], map[string]any{"typ": SignatureType, "partner": "exley-csc"}, claims("exley-csc", "3")), false, "bad withdrawal from exley-csc: typ", true},
		{"extra header", raw(jwa.ES256, tt.priv["exley-csc"], map[string]any{"typ": WithdrawalType, "partner": "exley-csc", "jku": "https://x.example"}, claims("exley-csc", "3")), false, `header "jku" is not allowed`, true},
		{"payload names another partner", raw(jwa.ES256, tt.priv["exley-csc"], hdr("exley-csc"), claims("exley-police", "3")), false, "signed by exley-csc for partner exley-police", true},
		{"payload missing effective", raw(jwa.ES256, tt.priv["exley-csc"], hdr("exley-csc"), map[string]any{"protocol": "isp-test-safeguarding", "version": "3", "partner": "exley-csc"}), false, "payload lacks", true},
		{"another version (ignored)", raw(jwa.ES256, tt.priv["exley-csc"], hdr("exley-csc"), claims("exley-csc", "2")), true, "does not apply to isp-test-safeguarding version 3 (ignored)", false},
		{"not a signatory (ignored)", raw(jwa.ES256, tt.priv["oak-academy"], hdr("oak-academy"), claims("oak-academy", "3")), true, "withdrawal by oak-academy who is not a signatory (ignored)", false},
		{"verified, effective an hour ago", raw(jwa.ES256, tt.priv["exley-csc"], hdr("exley-csc"), claims("exley-csc", "3")), false, "withdrawn by exley-csc from", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := EvaluateDocument(Document{File: "p.yaml", Doc: doc, Signatures: sigs, Withdrawals: c.wd}, tt.reg, now)
			list := st.Reasons
			if c.inForce {
				list = st.Warnings
			}
			if st.InForce != c.inForce || !slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, c.reason) }) {
				t.Fatalf("InForce %v reasons %q warnings %q", st.InForce, st.Reasons, st.Warnings)
			}
			bad := slices.ContainsFunc(st.Findings, func(f Finding) bool {
				return f.Kind == FindingWithdrawal && f.File == "p.yaml"+WithdrawalSuffix
			})
			if bad != c.badFinder {
				t.Fatalf("findings %+v", st.Findings)
			}
		})
	}
}

func TestFindingsLocateFieldsAndSignatures(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	sigs := tt.signAll(t, doc, "exley-csc", "exley-health", "exley-police")

	// An unknown category on line 33 (rules[1].categories[0]).
	bad := bytes.Replace(doc, []byte("categories: [cp_status]"), []byte("categories: [cp_state]"), 1)
	st := Evaluate("p.yaml", bad, sigs, tt.reg, now)
	i := slices.IndexFunc(st.Findings, func(f Finding) bool { return f.Kind == FindingLint })
	if i < 0 {
		t.Fatalf("no lint finding: %+v", st.Findings)
	}
	if f := st.Findings[i]; f.Field != "rules[1].categories[0]" || f.Line != 33 || f.File != "p.yaml" || f.Severity != SeverityError {
		t.Fatalf("lint finding %+v", f)
	}
	// Every signature over the old bytes is now bad, each named.
	var badSigs []string
	for _, f := range st.Findings {
		if f.Kind == FindingSignature {
			if f.File != "p.yaml.jws" || f.KeyID == "" {
				t.Fatalf("signature finding %+v", f)
			}
			badSigs = append(badSigs, f.Partner)
		}
	}
	if !slices.Equal(badSigs, []string{"exley-csc", "exley-health", "exley-police"}) {
		t.Fatalf("bad signatures %q", badSigs)
	}
	if !slices.ContainsFunc(st.Findings, func(f Finding) bool { return f.Kind == FindingUnsigned && f.Partner == "st-annes" }) {
		t.Fatalf("missing signature not found: %+v", st.Findings)
	}

	// A structural error is located by its field path.
	bad = bytes.Replace(doc, []byte("consent: not_required\n  - id: police"), []byte("consent: maybe\n  - id: police"), 1)
	st = Evaluate("p.yaml", bad, nil, tt.reg, now)
	if len(st.Findings) == 0 || st.Findings[0].Field != "rules[1].consent" || st.Findings[0].Line != 35 {
		t.Fatalf("findings %+v", st.Findings)
	}
	// A YAML syntax error is located by the decoder's line.
	st = Evaluate("p.yaml", append(slices.Clone(doc), []byte("rules: [\n")...), nil, tt.reg, now)
	if len(st.Findings) == 0 || st.Findings[0].Kind != FindingInvalid || st.Findings[0].Line == 0 {
		t.Fatalf("findings %+v", st.Findings)
	}
}

func TestLocate(t *testing.T) {
	doc := testDoc(t)
	for field, want := range map[string]int{
		"id":                                3,
		"signatories[2]":                    10,
		"rules[0].fields.health_summary[1]": 24,
		"rules[2].requesters":               38,
		"rules[9].id":                       16, // the deepest part that exists: rules
		"":                                  0,
	} {
		if got := Locate(doc, field); got != want {
			t.Errorf("Locate(%q) = %d, want %d", field, got, want)
		}
	}
	if Locate([]byte("{"), "id") != 0 {
		t.Error("not YAML: want 0")
	}
}

func TestLoadDirReadsWithdrawals(t *testing.T) {
	tt := newTrust(t)
	path := signedDir(t, tt)
	if err := WithdrawFile(path, tt.priv["exley-health"], "", now.Add(-time.Minute), now); err != nil {
		t.Fatal(err)
	}
	sts, err := LoadDir(filepath.Dir(path), tt.reg, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 || sts[0].InForce || len(sts[0].Withdrawals) != 1 {
		t.Fatalf("statuses %+v", sts)
	}
	var b bytes.Buffer
	if err := FormatStatus(&b, sts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "withdrawal exley-health (kid exley-health-") {
		t.Fatalf("listing:\n%s", b.String())
	}
	if _, err := os.Stat(path + WithdrawalSuffix); err != nil {
		t.Fatal(err)
	}
}
