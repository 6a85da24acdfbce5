package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// writeKey writes a private JWK file as `trustgate keys generate` would.
func writeKey(t *testing.T, dir string, key jwk.Key, name string) string {
	t.Helper()
	b, err := json.MarshalIndent(key, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSigningWorkflow follows docs/protocols.md: each signatory reads its
// private key file and signs the protocol file in turn; verify shows why it
// is not yet in force until the last signature arrives.
func TestSigningWorkflow(t *testing.T) {
	tt := newTrust(t)
	dir := t.TempDir()
	keys := t.TempDir()
	path := filepath.Join(dir, "safeguarding.yaml")
	writeFile(t, path, testDoc(t))

	for i, partner := range signers {
		key, who, err := ReadPrivateKey(writeKey(t, keys, tt.priv[partner], partner+".jwk"))
		if err != nil {
			t.Fatal(err)
		}
		if who != partner {
			t.Fatalf("partner from kid = %q, want %q", who, partner)
		}
		if err := SignFile(path, key, ""); err != nil {
			t.Fatal(err)
		}
		st, err := EvaluateFile(path, tt.reg, now)
		if err != nil {
			t.Fatal(err)
		}
		if last := i == len(signers)-1; st.InForce != last {
			t.Errorf("after %s signed: InForce = %v, reasons %q", partner, st.InForce, st.Reasons)
		}
		if i < len(signers)-1 && !equalStrings(st.Reasons[:1], []string{"no signature from " + signers[i+1]}) {
			t.Errorf("after %s signed: reasons %q", partner, st.Reasons)
		}
	}
	info, err := os.Stat(path + ".jws")
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", info.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("files left in dir: %v", entries)
	}
}

func TestSignFileErrors(t *testing.T) {
	tt := newTrust(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "safeguarding.yaml")
	writeFile(t, path, testDoc(t))
	odd := withKid(t, tt.priv["exley-csc"], "social-care-2026")

	if err := SignFile(path, odd, ""); !errors.Is(err, ErrKey) {
		t.Errorf("kid without partner, no partner given: %v", err)
	}
	if err := SignFile(path, odd, "exley-csc"); err != nil {
		t.Errorf("kid without partner, partner given: %v", err)
	}
	if err := SignFile(path, tt.priv["safe-families"], ""); !errors.Is(err, ErrNotSignatory) {
		t.Errorf("non-signatory: %v", err)
	}
	if err := SignFile(filepath.Join(dir, "missing.yaml"), tt.priv["exley-csc"], ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// A refused signing leaves the existing signature file as it was.
	before, err := os.ReadFile(path + ".jws")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path+".jws", append(before[:len(before)-2:len(before)-2], "]"...))
	broken, _ := os.ReadFile(path + ".jws")
	if err := SignFile(path, tt.priv["exley-health"], ""); !errors.Is(err, ErrSignatureFile) {
		t.Errorf("broken .jws: %v", err)
	}
	if after, _ := os.ReadFile(path + ".jws"); !bytes.Equal(after, broken) {
		t.Error("a refused signing changed the signature file")
	}
}

func TestReadPrivateKey(t *testing.T) {
	tt := newTrust(t)
	dir := t.TempDir()
	set := jwk.NewSet()
	_ = set.AddKey(tt.priv["exley-csc"])
	_ = set.AddKey(tt.priv["exley-police"])
	setFile := filepath.Join(dir, "two.json")
	b, _ := json.Marshal(set)
	writeFile(t, setFile, b)
	one := jwk.NewSet()
	_ = one.AddKey(tt.priv["st-annes"])
	oneFile := filepath.Join(dir, "one.json")
	b, _ = json.Marshal(one)
	writeFile(t, oneFile, b)
	garbage := filepath.Join(dir, "garbage.jwk")
	writeFile(t, garbage, []byte("-----BEGIN PRIVATE KEY-----"))

	tests := []struct {
		name, path, partner string
		err                 error
	}{
		{"ES256 private JWK", writeKey(t, dir, tt.priv["exley-csc"], "csc.jwk"), "exley-csc", nil},
		{"EdDSA private JWK", writeKey(t, dir, tt.priv["exley-health"], "health.jwk"), "exley-health", nil},
		{"set of one key", oneFile, "st-annes", nil},
		{"kid not naming a partner", writeKey(t, dir, withKid(t, tt.priv["exley-csc"], "k1"), "k1.jwk"), "", nil},
		{"public key", writeKey(t, dir, tt.pub["exley-csc"], "pub.jwk"), "", ErrKey},
		{"set of two keys", setFile, "", ErrKey},
		{"not a JWK", garbage, "", ErrKey},
		{"missing", filepath.Join(dir, "nope.jwk"), "", os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, partner, err := ReadPrivateKey(tc.path)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if partner != tc.partner {
				t.Errorf("partner = %q, want %q", partner, tc.partner)
			}
			if err == nil && key == nil {
				t.Error("no key")
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	tt := newTrust(t)
	dir := t.TempDir()
	doc := testDoc(t)
	put := func(name string, doc []byte, sign ...string) {
		writeFile(t, filepath.Join(dir, name), doc)
		if len(sign) > 0 {
			writeFile(t, filepath.Join(dir, name+".jws"), tt.signAll(t, doc, sign...))
		}
	}
	withID := func(id string) []byte {
		return bytes.Replace(doc, []byte("id: isp-test-safeguarding"), []byte("id: "+id), 1)
	}
	put("trust.yaml", tt.yaml)                                         // the registry: skipped
	put("safeguarding.yaml", doc, signers...)                          // in force
	put("early-help.yml", withID("isp-early-help"))                    // no .jws
	put("broken.yaml", []byte("id: isp-broken\nconsent: [\n"))         // does not parse
	put("youth-a.yaml", withID("isp-youth"), signers...)               // same id as youth-b,
	put("youth-b.yaml", append(withID("isp-youth"), '\n'), signers...) // both in force
	put("notes.md", []byte("# not a protocol"))
	if err := os.Mkdir(filepath.Join(dir, "old.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}

	got, err := LoadDir(dir, tt.reg, now)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		file, id string
		inForce  bool
		reasons  []string
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	want := []row{
		{p("broken.yaml"), "", false, nil}, // reasons checked below
		{p("early-help.yml"), "isp-early-help", false, []string{"no signatures"}},
		{p("safeguarding.yaml"), "isp-test-safeguarding", true, []string{}},
		{p("youth-a.yaml"), "isp-youth", false, []string{"protocol isp-youth is also in force in " + p("youth-b.yaml")}},
		{p("youth-b.yaml"), "isp-youth", false, []string{"protocol isp-youth is also in force in " + p("youth-a.yaml")}},
	}
	if len(got) != len(want) {
		for _, s := range got {
			t.Logf("%s %v %q", s.File, s.InForce, s.Reasons)
		}
		t.Fatalf("%d statuses, want %d", len(got), len(want))
	}
	for i, w := range want {
		s := got[i]
		if s.File != w.file || statusID(s) != w.id || s.InForce != w.inForce || (w.reasons != nil && !equalStrings(s.Reasons, w.reasons)) {
			t.Errorf("status %d = %s %q %v %q\nwant         %s %q %v %q", i, s.File, statusID(s), s.InForce, s.Reasons, w.file, w.id, w.inForce, w.reasons)
		}
	}
	if b := got[0]; b.Protocol != nil || len(b.Reasons) != 1 || !strings.HasPrefix(b.Reasons[0], "invalid: ") || len(b.Digest) != 64 {
		t.Errorf("broken file status = %+v", b)
	}

	if _, err := LoadDir(filepath.Join(dir, "absent"), tt.reg, now); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir: %v", err)
	}
}

func TestFormatStatus(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	in := Evaluate("protocols/safeguarding.yaml", doc, tt.signAll(t, doc, signers...), tt.reg, now)
	out := Evaluate("protocols/pending.yaml", doc, tt.signAll(t, doc, "exley-csc", "st-annes"), tt.reg, now)
	broken := Evaluate("protocols/broken.yaml", []byte("title: x\n"), nil, tt.reg, now)
	var b bytes.Buffer
	if err := FormatStatus(&b, []Status{broken, out, in}); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	lines := strings.Split(text, "\n")
	if !strings.HasPrefix(lines[0], "PROTOCOL") || !strings.Contains(lines[0], "STATUS") {
		t.Errorf("header = %q", lines[0])
	}
	for _, want := range []string{
		"-                      -        NOT IN FORCE  -           -           -       " + broken.Digest[:12] + "  protocols/broken.yaml",
		"isp-test-safeguarding  3        NOT IN FORCE  2026-01-01  2028-01-01  2/4     " + out.Digest[:12] + "  protocols/pending.yaml",
		"isp-test-safeguarding  3        in force      2026-01-01  2028-01-01  4/4     " + in.Digest[:12] + "  protocols/safeguarding.yaml",
		"  not in force: invalid: id: is required",
		"isp-test-safeguarding (protocols/pending.yaml)",
		"  not in force: no signature from exley-health",
		"  not in force: no signature from exley-police",
		"  signature exley-csc (kid " + tt.kid("exley-csc") + "): ok",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("output lacks line %q:\n%s", want, text)
		}
	}
}
