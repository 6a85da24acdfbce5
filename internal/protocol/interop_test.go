package protocol

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
)

// TestInteropWithoutJWX verifies signatures produced by Sign using nothing
// but the standard library and RFC 7515: decode the General JSON
// Serialization by hand, rebuild the signing input
// ASCII(BASE64URL(protected) || '.' || BASE64URL(payload)) with the detached
// payload (the file bytes), and check ES256 (r||s, 64 bytes) with
// crypto/ecdsa and EdDSA with crypto/ed25519, using public keys read from
// the registry's JWK JSON. Any standard JOSE library can do the same.
func TestInteropWithoutJWX(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	sigs := tt.signAll(t, doc, "exley-csc", "exley-health") // ES256, EdDSA

	var file map[string]json.RawMessage
	if err := json.Unmarshal(sigs, &file); err != nil {
		t.Fatal(err)
	}
	if _, ok := file["payload"]; ok {
		t.Fatal(`the payload must be detached: "payload" member present`)
	}
	var entries []struct {
		Protected string `json:"protected"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(file["signatures"], &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d signatures", len(entries))
	}
	for _, e := range entries {
		raw, err := base64.RawURLEncoding.DecodeString(e.Protected)
		if err != nil {
			t.Fatal(err)
		}
		var hdr map[string]string
		if err := json.Unmarshal(raw, &hdr); err != nil {
			t.Fatal(err)
		}
		partner := hdr["partner"]
		want := map[string]string{
			"alg": map[string]string{"exley-csc": "ES256", "exley-health": "EdDSA"}[partner],
			"kid": tt.kid(partner), "partner": partner, "typ": "trustgate-protocol+jws",
			"protocol": "isp-test-safeguarding", "version": "3",
		}
		if len(hdr) != len(want) {
			t.Errorf("%s: header %v, want %v", partner, hdr, want)
		}
		for k, v := range want {
			if hdr[k] != v {
				t.Errorf("%s: header %s = %q, want %q", partner, k, hdr[k], v)
			}
		}
		input := []byte(e.Protected + "." + base64.RawURLEncoding.EncodeToString(doc))
		sig, err := base64.RawURLEncoding.DecodeString(e.Signature)
		if err != nil {
			t.Fatal(err)
		}
		jwkJSON := publicJWK(t, tt, partner)
		tampered := append([]byte{}, input...)
		tampered[len(tampered)-1] ^= 1
		switch hdr["alg"] {
		case "ES256":
			if jwkJSON["kty"] != "EC" || jwkJSON["crv"] != "P-256" {
				t.Fatalf("key %v", jwkJSON)
			}
			point := append([]byte{4}, append(b64(t, jwkJSON["x"]), b64(t, jwkJSON["y"])...)...)
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
			if err != nil {
				t.Fatal(err)
			}
			if len(sig) != 64 {
				t.Fatalf("ES256 signature is %d bytes, want r||s of 64", len(sig))
			}
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			h := sha256.Sum256(input)
			if !ecdsa.Verify(pub, h[:], r, s) {
				t.Error("ES256 signature does not verify with crypto/ecdsa")
			}
			h = sha256.Sum256(tampered)
			if ecdsa.Verify(pub, h[:], r, s) {
				t.Error("ES256 signature verifies over other bytes")
			}
		case "EdDSA":
			if jwkJSON["kty"] != "OKP" || jwkJSON["crv"] != "Ed25519" {
				t.Fatalf("key %v", jwkJSON)
			}
			pub := ed25519.PublicKey(b64(t, jwkJSON["x"]))
			if !ed25519.Verify(pub, input, sig) {
				t.Error("EdDSA signature does not verify with crypto/ed25519")
			}
			if ed25519.Verify(pub, tampered, sig) {
				t.Error("EdDSA signature verifies over other bytes")
			}
		default:
			t.Errorf("alg %q", hdr["alg"])
		}
	}
}

// publicJWK finds partner's public key in the registry YAML the test trust
// was built from, as plain JSON members.
func publicJWK(t *testing.T, tt *testTrust, partner string) map[string]string {
	t.Helper()
	p, ok := tt.reg.Partner(partner)
	if !ok {
		t.Fatalf("no partner %s", partner)
	}
	keys, ok := p.JWKS["keys"].([]any)
	if !ok || len(keys) != 1 {
		t.Fatalf("jwks %v", p.JWKS)
	}
	out := map[string]string{}
	for k, v := range keys[0].(map[string]any) {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	if !strings.HasPrefix(out["kid"], partner+"-") {
		t.Fatalf("kid %q", out["kid"])
	}
	return out
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInteropSignedWithoutJWX: a signature made by hand with the standard
// library (as another JOSE library would, with its own member order and no
// protocol/version headers) is accepted by VerifySignatures.
func TestInteropSignedWithoutJWX(t *testing.T) {
	tt := newTrust(t)
	doc := testDoc(t)
	p := parsed(t)
	var entries []signatureEntry
	for _, partner := range []string{"exley-csc", "exley-health"} {
		alg := map[string]string{"exley-csc": "ES256", "exley-health": "EdDSA"}[partner]
		protected := base64.RawURLEncoding.EncodeToString([]byte(
			`{"typ":"trustgate-protocol+jws","partner":"` + partner + `","kid":"` + tt.kid(partner) + `","alg":"` + alg + `"}`))
		input := []byte(protected + "." + base64.RawURLEncoding.EncodeToString(doc))
		var sig []byte
		switch alg {
		case "ES256":
			var priv ecdsa.PrivateKey
			if err := tt.priv[partner].Raw(&priv); err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(input)
			r, s, err := ecdsa.Sign(rand.Reader, &priv, h[:])
			if err != nil {
				t.Fatal(err)
			}
			sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
		case "EdDSA":
			var priv ed25519.PrivateKey
			if err := tt.priv[partner].Raw(&priv); err != nil {
				t.Fatal(err)
			}
			sig = ed25519.Sign(priv, input)
		}
		entries = append(entries, signatureEntry{Protected: protected, Signature: base64.RawURLEncoding.EncodeToString(sig)})
	}
	results := VerifySignatures(doc, addEntries(t, nil, entries...), p, tt.reg)
	if len(results) != 2 {
		t.Fatalf("results = %+v", results)
	}
	for _, r := range results {
		if !r.OK {
			t.Errorf("%s: %s", r.Partner, r.Reason)
		}
	}
}
