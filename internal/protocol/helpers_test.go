package protocol

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"gopkg.in/yaml.v3"
)

// now is inside the test protocol's period and before its review date.
var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// signers of the test protocol, in the order they appear in it.
var signers = []string{"exley-csc", "exley-health", "exley-police", "st-annes"}

// testTrust is an in-memory registry whose partners have freshly generated
// keys, and the private keys that go with them.
type testTrust struct {
	reg  *registry.Registry
	priv map[string]jwk.Key
	pub  map[string]jwk.Key
	yaml []byte
}

type testPartner struct {
	id   string
	typ  registry.PartnerType
	alg  jwa.SignatureAlgorithm // empty: no keys
	name string
}

var testPartners = []testPartner{
	{"exley-csc", registry.LocalAuthority, jwa.ES256, "Exley Children's Social Care"},
	{"exley-health", registry.Health, jwa.EdDSA, "Exley Community Health"},
	{"exley-police", registry.Police, jwa.ES256, "Exley Constabulary"},
	{"st-annes", registry.School, jwa.EdDSA, "St Anne's Primary"},
	{"oak-academy", registry.School, jwa.ES256, "Oak Academy (registered, not a signatory)"},
	{"safe-families", registry.Voluntary, jwa.ES256, "Safe Families (registered, not a signatory)"},
	{"riverside-gp", registry.GP, "", "Riverside Medical Practice (no keys)"},
}

func newTrust(t *testing.T) *testTrust {
	t.Helper()
	tt := &testTrust{priv: map[string]jwk.Key{}, pub: map[string]jwk.Key{}}
	trust := registry.Trust{
		ID:   "exley-test",
		Name: "Exley test trust",
		Purposes: []registry.Term{
			{ID: "safeguarding"}, {ID: "child_protection"}, {ID: "early_help"},
		},
		Categories: []registry.Term{
			{ID: "identity"}, {ID: "health_summary", Special: true}, {ID: "cp_status"},
			{ID: "police_concerns"}, {ID: "school_attendance"},
		},
		Roles: []registry.Role{
			{ID: "social_worker"}, {ID: "team_manager"}, {ID: "designated_safeguarding_lead"},
			{ID: "health_visitor"}, {ID: "police_officer"},
		},
	}
	for _, tp := range testPartners {
		p := registry.Partner{ID: tp.id, Name: tp.name, Type: tp.typ}
		if tp.alg != "" {
			priv, pub, err := registry.GenerateKey(tp.id, tp.alg)
			if err != nil {
				t.Fatal(err)
			}
			tt.priv[tp.id], tt.pub[tp.id] = priv, pub
			set := jwk.NewSet()
			if err := set.AddKey(pub); err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(set)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &p.JWKS); err != nil {
				t.Fatal(err)
			}
		}
		trust.Partners = append(trust.Partners, p)
	}
	doc, err := yaml.Marshal(trust)
	if err != nil {
		t.Fatal(err)
	}
	tt.yaml = doc
	tt.reg, err = registry.Parse(context.Background(), doc, t.TempDir())
	if err != nil {
		t.Fatalf("registry: %v\n%s", err, doc)
	}
	return tt
}

func (tt *testTrust) kid(partner string) string { return tt.priv[partner].KeyID() }

// testDoc returns the bytes of testdata/safeguarding.yaml.
func testDoc(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "safeguarding.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signAll signs doc with each partner's key in turn, through Sign.
func (tt *testTrust) signAll(t *testing.T, doc []byte, partners ...string) []byte {
	t.Helper()
	var sigs []byte
	for _, p := range partners {
		var err error
		sigs, err = Sign(doc, sigs, tt.priv[p], p)
		if err != nil {
			t.Fatalf("sign as %s: %v", p, err)
		}
	}
	return sigs
}

// rawEntry makes one signature entry with whatever protected headers the
// test wants (bypassing Sign's checks), signed with key under alg.
func rawEntry(t *testing.T, doc []byte, alg jwa.SignatureAlgorithm, key any, headers map[string]any) signatureEntry {
	t.Helper()
	hdr := jws.NewHeaders()
	for k, v := range headers {
		if err := hdr.Set(k, v); err != nil {
			t.Fatalf("header %s: %v", k, err)
		}
	}
	compact, err := jws.Sign(nil, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)), jws.WithDetachedPayload(doc))
	if err != nil {
		t.Fatal(err)
	}
	protected, _, sig, err := jws.SplitCompact(compact)
	if err != nil {
		t.Fatal(err)
	}
	return signatureEntry{Protected: string(protected), Signature: string(sig)}
}

// withKid returns a copy of key with another kid (jws.Sign puts the key's
// kid into the header, so a forged kid needs a relabelled key).
func withKid(t *testing.T, key jwk.Key, kid string) jwk.Key {
	t.Helper()
	k, err := key.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	return k
}

// addEntries appends entries to a signature file (nil for a new one).
func addEntries(t *testing.T, sigs []byte, entries ...signatureEntry) []byte {
	t.Helper()
	var f signatureFile
	if sigs != nil {
		if err := json.Unmarshal(sigs, &f); err != nil {
			t.Fatal(err)
		}
	}
	f.Signatures = append(f.Signatures, entries...)
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headers is the protected header a well-formed signature of the test
// protocol by partner carries.
func (tt *testTrust) headers(partner string) map[string]any {
	return map[string]any{
		"typ": SignatureType, "partner": partner,
		"protocol": "isp-test-safeguarding", "version": "3",
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
