package protocol

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// TestEvaluateSignatures covers "in force" through the signature file: who
// signed, with which key, over which bytes, and when.
func TestEvaluateSignatures(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	all := tt.signAll(t, doc, signers...)
	changed := bytes.Replace(doc, []byte("Exley test"), []byte("Exlez test"), 1)
	if bytes.Equal(changed, doc) {
		t.Fatal("the change did not apply")
	}
	tests := []struct {
		name     string
		doc      []byte
		sigs     func() []byte
		at       time.Time
		reasons  []string
		warnings []string
	}{
		{name: "all signatories signed", sigs: func() []byte { return all }},
		{name: "one missing", sigs: func() []byte { return tt.signAll(t, doc, "exley-csc", "exley-health", "st-annes") },
			reasons: []string{"no signature from exley-police"}},
		{name: "no signature file", sigs: func() []byte { return nil }, reasons: []string{"no signatures"}},
		{name: "empty signature list", sigs: func() []byte { return []byte(`{"signatures": []}`) },
			reasons: []string{"no signature from exley-csc", "no signature from exley-health", "no signature from exley-police", "no signature from st-annes"}},
		{name: "one byte changed", doc: changed, sigs: func() []byte { return all }, reasons: []string{
			`bad signature from exley-csc: signature does not verify over this file with key "` + tt.kid("exley-csc") + `"`,
			`bad signature from exley-health: signature does not verify over this file with key "` + tt.kid("exley-health") + `"`,
			`bad signature from exley-police: signature does not verify over this file with key "` + tt.kid("exley-police") + `"`,
			`bad signature from st-annes: signature does not verify over this file with key "` + tt.kid("st-annes") + `"`,
		}},
		{name: "police key posing as social care", sigs: func() []byte {
			// Made with exley-police's private key, but claiming to be
			// exley-csc's signature under exley-csc's kid.
			forged := rawEntry(t, doc, jwa.ES256, withKid(t, tt.priv["exley-police"], tt.kid("exley-csc")), tt.headers("exley-csc"))
			return addEntries(t, tt.signAll(t, doc, "exley-health", "exley-police", "st-annes"), forged)
		}, reasons: []string{`bad signature from exley-csc: signature does not verify over this file with key "` + tt.kid("exley-csc") + `"`}},
		{name: "unknown kid", sigs: func() []byte {
			e := rawEntry(t, doc, jwa.ES256, withKid(t, tt.priv["exley-csc"], "exley-csc-AAAAAAAAAAAA"), tt.headers("exley-csc"))
			return addEntries(t, tt.signAll(t, doc, "exley-health", "exley-police", "st-annes"), e)
		}, reasons: []string{`bad signature from exley-csc: unknown key "exley-csc-AAAAAAAAAAAA" for exley-csc`}},
		{name: "kid of a non-signatory partner", sigs: func() []byte {
			e := rawEntry(t, doc, jwa.ES256, tt.priv["safe-families"], tt.headers("exley-csc"))
			return addEntries(t, tt.signAll(t, doc, "exley-health", "exley-police", "st-annes"), e)
		}, reasons: []string{`bad signature from exley-csc: key "` + tt.kid("safe-families") + `" belongs to safe-families, not exley-csc`}},
		{name: "kid of another signatory", sigs: func() []byte {
			e := rawEntry(t, doc, jwa.EdDSA, tt.priv["exley-health"], tt.headers("exley-csc"))
			return addEntries(t, tt.signAll(t, doc, "exley-health", "exley-police", "st-annes"), e)
		}, reasons: []string{`bad signature from exley-csc: key "` + tt.kid("exley-health") + `" belongs to exley-health, not exley-csc`}},
		{name: "extra signature by a non-signatory", sigs: func() []byte {
			return addEntries(t, all, rawEntry(t, doc, jwa.ES256, tt.priv["safe-families"], tt.headers("safe-families")))
		}, warnings: []string{"signature from safe-families who is not a signatory (ignored)"}},
		{name: "two signatures from one signatory", sigs: func() []byte {
			return addEntries(t, all, rawEntry(t, doc, jwa.ES256, tt.priv["exley-csc"], tt.headers("exley-csc")))
		}, reasons: []string{"more than one signature from exley-csc"}},
		{name: "malformed signature file", sigs: func() []byte { return []byte("not json") }, reasons: []string{
			"bad signature: malformed signature file: invalid character 'o' in literal null (expecting 'u')",
			"no signature from exley-csc", "no signature from exley-health", "no signature from exley-police", "no signature from st-annes"}},
		{name: "expired at the expires instant", sigs: func() []byte { return all },
			at: time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC), reasons: []string{"expired on 2028-01-01"},
			warnings: []string{"review overdue since 2026-12-31 (review_by)"}},
		{name: "in force until just before expires", sigs: func() []byte { return all },
			at: time.Date(2027, 12, 31, 23, 59, 59, 0, time.UTC), warnings: []string{"review overdue since 2026-12-31 (review_by)"}},
		{name: "not yet effective", sigs: func() []byte { return all },
			at: time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), reasons: []string{"not yet in force: effective from 2026-01-01"}},
		{name: "in force from the effective instant", sigs: func() []byte { return all },
			at: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "invalid document", doc: bytes.Replace(doc, []byte("consent: not_required"), []byte("consent: sometimes"), -1),
			sigs: func() []byte { return all }, reasons: []string{
				`invalid: rules[1].consent: "sometimes" is not one of required, not_required, overridable`,
				`invalid: rules[2].consent: "sometimes" is not one of required, not_required, overridable`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := doc
			if tc.doc != nil {
				d = tc.doc
			}
			at := now
			if !tc.at.IsZero() {
				at = tc.at
			}
			st := Evaluate("safeguarding.yaml", d, tc.sigs(), tt.reg, at)
			if st.InForce != (len(tc.reasons) == 0) {
				t.Errorf("InForce = %v", st.InForce)
			}
			if !equalStrings(st.Reasons, nonNil(tc.reasons)) {
				t.Errorf("Reasons:\n got %q\nwant %q", st.Reasons, tc.reasons)
			}
			if !equalStrings(st.Warnings, nonNil(tc.warnings)) {
				t.Errorf("Warnings:\n got %q\nwant %q", st.Warnings, tc.warnings)
			}
		})
	}
}

func TestEvaluateReportsDigestAndSignatures(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	st := Evaluate("safeguarding.yaml", doc, tt.signAll(t, doc, signers...), tt.reg, now)
	if !st.InForce || st.File != "safeguarding.yaml" || st.Protocol == nil || st.Protocol.ID != "isp-test-safeguarding" {
		t.Fatalf("status = %+v", st)
	}
	if len(st.Digest) != 64 || strings.Trim(st.Digest, "0123456789abcdef") != "" {
		t.Errorf("digest = %q", st.Digest)
	}
	if other := Evaluate("x", append([]byte("#\n"), doc...), nil, tt.reg, now); other.Digest == st.Digest {
		t.Error("different bytes, same digest")
	}
	if len(st.Signatures) != len(signers) {
		t.Fatalf("signatures = %+v", st.Signatures)
	}
	for i, s := range st.Signatures {
		if s.Partner != signers[i] || s.KeyID != tt.kid(signers[i]) || !s.OK || s.Reason != "" {
			t.Errorf("signature %d = %+v", i, s)
		}
	}
}

// TestVerifyRefusesHeaders: anything but a plain kid-named key under ES256 or
// EdDSA, with exactly the protocol's headers, is refused before any
// cryptography.
func TestVerifyRefusesHeaders(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	p := parsed(t)
	csc := tt.priv["exley-csc"]
	pub := tt.pub["exley-csc"]
	hmacKey, err := jwk.FromRaw([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	hmacKey = withKid(t, hmacKey, tt.kid("exley-csc"))
	rsaRaw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := jwk.FromRaw(rsaRaw)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey = withKid(t, rsaKey, tt.kid("exley-csc"))
	with := func(extra map[string]any) map[string]any {
		h := tt.headers("exley-csc")
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	// A header that jwx will not write for us is built by hand.
	manual := func(protected string) signatureEntry {
		return signatureEntry{
			Protected: base64.RawURLEncoding.EncodeToString([]byte(protected)),
			Signature: base64.RawURLEncoding.EncodeToString(make([]byte, 64)),
		}
	}
	good := rawEntry(t, doc, jwa.ES256, csc, tt.headers("exley-csc"))
	withUnprotected := good
	withUnprotected.Header = json.RawMessage(`{"partner":"exley-police"}`)
	tests := []struct {
		name   string
		entry  signatureEntry
		reason string
	}{
		{"jku", rawEntry(t, doc, jwa.ES256, csc, with(map[string]any{"jku": "https://attacker.example/jwks"})), `header "jku" is not allowed`},
		{"jwk", rawEntry(t, doc, jwa.ES256, csc, with(map[string]any{"jwk": pub})), `header "jwk" is not allowed`},
		{"x5u", rawEntry(t, doc, jwa.ES256, csc, with(map[string]any{"x5u": "https://attacker.example/cert"})), `header "x5u" is not allowed`},
		{"x5c", manual(`{"alg":"ES256","kid":"` + tt.kid("exley-csc") + `","partner":"exley-csc","typ":"trustgate-protocol+jws","x5c":["MIIB"]}`), `header "x5c" is not allowed`},
		{"crit", rawEntry(t, doc, jwa.ES256, csc, with(map[string]any{"crit": []string{"exp"}, "exp": 1})), `header "crit" is not allowed`},
		{"b64", manual(`{"alg":"ES256","b64":false,"crit":["b64"],"kid":"k","partner":"exley-csc"}`), `header "b64" is not allowed`},
		{"HS256", rawEntry(t, doc, jwa.HS256, hmacKey, tt.headers("exley-csc")), `algorithm "HS256" is not allowed (ES256, EdDSA)`},
		{"RS256", rawEntry(t, doc, jwa.RS256, rsaKey, tt.headers("exley-csc")), `algorithm "RS256" is not allowed (ES256, EdDSA)`},
		{"none", manual(`{"alg":"none","kid":"` + tt.kid("exley-csc") + `","partner":"exley-csc","typ":"trustgate-protocol+jws"}`), `algorithm "none" is not allowed (ES256, EdDSA)`},
		{"wrong typ", rawEntry(t, doc, jwa.ES256, csc, with(map[string]any{"typ": "JWT"})), `typ "JWT" is not trustgate-protocol+jws`},
		{"no partner", manual(`{"alg":"ES256","kid":"k"}`), "protected header has no partner"},
		{"no kid", manual(`{"alg":"ES256","partner":"exley-csc"}`), "protected header has no kid"},
		{"repeated member", manual(`{"alg":"ES256","kid":"k","partner":"exley-police","partner":"exley-csc"}`), `protected header member "partner" appears twice`},
		{"header not base64url", signatureEntry{Protected: "e30=", Signature: "AA"}, "protected header is not base64url"},
		{"header not an object", manual(`["alg"]`), "protected header is not a JSON object"},
		{"unprotected header", withUnprotected, "unprotected header is not allowed"},
		{"other protocol", rawEntry(t, doc, jwa.ES256, csc, with(map[string]any{"protocol": "isp-early-help"})), "signed for protocol isp-early-help, this file is isp-test-safeguarding"},
		{"other version", rawEntry(t, doc, jwa.ES256, csc, with(map[string]any{"version": "2"})), "signed for version 2, this file is version 3"},
		{"unknown partner", rawEntry(t, doc, jwa.ES256, csc, with(map[string]any{"partner": "exley-fire"})), `unknown partner "exley-fire"`},
		{"signature not base64url", signatureEntry{Protected: good.Protected, Signature: "not+base64"}, "signature is not base64url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := VerifySignatures(doc, addEntries(t, nil, tc.entry), p, tt.reg)
			if len(res) != 1 || res[0].OK || res[0].Reason != tc.reason {
				t.Errorf("results = %+v, want reason %q", res, tc.reason)
			}
		})
	}
	// The well-formed entry the refused ones were derived from verifies.
	if res := VerifySignatures(doc, addEntries(t, nil, good), p, tt.reg); len(res) != 1 || !res[0].OK {
		t.Errorf("good entry: %+v", res)
	}
}

func TestVerifySignatureFileShape(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	e := rawEntry(t, doc, jwa.ES256, tt.priv["exley-csc"], tt.headers("exley-csc"))
	embedded, _ := json.Marshal(map[string]any{
		"payload":    base64.RawURLEncoding.EncodeToString(doc),
		"signatures": []signatureEntry{e},
	})
	flattened, _ := json.Marshal(e)
	for name, sigs := range map[string][]byte{
		"payload present": embedded,
		"flattened form":  flattened,
		"trailing data":   append(addEntries(t, nil, e), []byte(" {}")...),
		"compact form":    []byte(e.Protected + ".." + e.Signature),
	} {
		t.Run(name, func(t *testing.T) {
			res := VerifySignatures(doc, sigs, nil, tt.reg)
			if len(res) != 1 || res[0].OK || res[0].Partner != "" || !strings.HasPrefix(res[0].Reason, "malformed signature file: ") {
				t.Errorf("results = %+v", res)
			}
		})
	}
}

func TestSignReplacesAndSorts(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	// Sign out of order; the file comes out sorted by partner.
	first := tt.signAll(t, doc, "st-annes", "exley-police", "exley-health", "exley-csc")
	if got := partnersIn(t, first); !equalStrings(got, signers) {
		t.Fatalf("partners = %v, want sorted %v", got, signers)
	}
	// exley-csc signs again: its entry is replaced, the others kept byte for byte.
	second, err := Sign(doc, first, tt.priv["exley-csc"], "exley-csc")
	if err != nil {
		t.Fatal(err)
	}
	a, b := entriesIn(t, first), entriesIn(t, second)
	if len(b) != 4 {
		t.Fatalf("after re-signing: %d entries", len(b))
	}
	if a[0].Signature == b[0].Signature {
		t.Error("exley-csc's ES256 signature was not replaced")
	}
	for i := 1; i < 4; i++ {
		if a[i].Protected != b[i].Protected || a[i].Signature != b[i].Signature {
			t.Errorf("entry %d changed: %+v → %+v", i, a[i], b[i])
		}
	}
	if st := Evaluate("f", doc, second, tt.reg, now); !st.InForce {
		t.Errorf("after re-signing: %q", st.Reasons)
	}
	// Ed25519 signatures are deterministic, so re-signing with one gives the
	// identical file: the output is a function of its inputs.
	x, err := Sign(doc, second, tt.priv["exley-health"], "exley-health")
	if err != nil {
		t.Fatal(err)
	}
	y, err := Sign(doc, x, tt.priv["exley-health"], "exley-health")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) || !bytes.Equal(x, second) {
		t.Errorf("re-signing with Ed25519 changed the file:\n%s\n%s", x, y)
	}
	if !bytes.HasPrefix(x, []byte("{\n  \"signatures\": [\n    {\n      \"protected\": ")) || !bytes.HasSuffix(x, []byte("}\n")) {
		t.Errorf("not the indented form:\n%s", x)
	}
}

func TestSignRefuses(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	pub := tt.pub["exley-csc"]
	noKid := withKid(t, tt.priv["exley-csc"], "")
	p384raw, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := jwk.FromRaw(p384raw)
	p384 = withKid(t, p384, "exley-csc-p384")
	wrongAlg := withKid(t, tt.priv["exley-csc"], tt.kid("exley-csc"))
	if err := wrongAlg.Set(jwk.AlgorithmKey, jwa.EdDSA); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		doc      []byte
		existing []byte
		key      jwk.Key
		partner  string
		want     error
	}{
		{"invalid document", []byte("id: x\n"), nil, tt.priv["exley-csc"], "exley-csc", ErrInvalid},
		{"not a signatory", doc, nil, tt.priv["safe-families"], "safe-families", ErrNotSignatory},
		{"public key", doc, nil, pub, "exley-csc", ErrKey},
		{"no key", doc, nil, nil, "exley-csc", ErrKey},
		{"key without kid", doc, nil, noKid, "exley-csc", ErrKey},
		{"P-384 key", doc, nil, p384, "exley-csc", ErrKey},
		{"key alg disagrees", doc, nil, wrongAlg, "exley-csc", ErrKey},
		{"existing file malformed", doc, []byte("{"), tt.priv["exley-csc"], "exley-csc", ErrSignatureFile},
		{"existing file with payload", doc, []byte(`{"payload":"eA","signatures":[]}`), tt.priv["exley-csc"], "exley-csc", ErrSignatureFile},
		{"existing entry unreadable", doc, []byte(`{"signatures":[{"protected":"!!","signature":"AA"}]}`), tt.priv["exley-csc"], "exley-csc", ErrSignatureFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Sign(tc.doc, tc.existing, tc.key, tc.partner)
			if !errors.Is(err, tc.want) || out != nil {
				t.Errorf("Sign = %q, %v; want %v", out, err, tc.want)
			}
		})
	}
}

func TestPartnerFromKeyID(t *testing.T) {
	tests := []struct {
		kid, partner string
		ok           bool
	}{
		{"exley-csc-AbCdEfGhIj_-", "exley-csc", true},
		{"gp-1-0123456789ab", "gp-1", true},
		{"exley-csc", "", false},
		{"-0123456789ab", "", false},
		{"x-0123456789ab", "", false}, // "x" is not a valid partner id
		{"exley-csc_0123456789ab", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		p, ok := PartnerFromKeyID(tc.kid)
		if p != tc.partner || ok != tc.ok {
			t.Errorf("PartnerFromKeyID(%q) = %q, %v; want %q, %v", tc.kid, p, ok, tc.partner, tc.ok)
		}
	}
	tt := newTrust(t)
	for _, id := range signers {
		if p, ok := PartnerFromKeyID(tt.kid(id)); !ok || p != id {
			t.Errorf("kid %q from registry.GenerateKey gives %q, %v", tt.kid(id), p, ok)
		}
	}
}

func entriesIn(t *testing.T, sigs []byte) []signatureEntry {
	t.Helper()
	var f signatureFile
	if err := decodeSignatureFile(sigs, &f); err != nil {
		t.Fatal(err)
	}
	return f.Signatures
}

func partnersIn(t *testing.T, sigs []byte) []string {
	t.Helper()
	var out []string
	for _, e := range entriesIn(t, sigs) {
		h, err := decodeProtected(e.Protected)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h["partner"].(string))
	}
	return out
}
