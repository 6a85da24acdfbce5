package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/registry"
)

var b64u = base64.RawURLEncoding

// hostile builds the tokens of the battery.
type hostile struct {
	t      *testing.T
	now    time.Time
	csc    *ecdsa.PrivateKey
	kid    string
	n      int
	tokens []hostileToken
	seen   map[string]bool
}

type hostileToken struct{ class, name, token string }

func (h *hostile) add(class, name, token string) {
	if h.seen[token] {
		h.t.Fatalf("battery: %s/%s duplicates another token", class, name)
	}
	h.seen[token] = true
	h.tokens = append(h.tokens, hostileToken{class, name, token})
}

func (h *hostile) claims() map[string]any {
	h.n++
	return map[string]any{"iss": "exley-csc", "sub": "sw-0042", "role": "social_worker", "aud": "trustgate",
		"iat": h.now.Unix(), "exp": h.now.Add(time.Minute).Unix(), "jti": fmt.Sprintf("hostile-%d", h.n)}
}

func (h *hostile) header() map[string]any {
	return map[string]any{"alg": "ES256", "typ": "JWT", "kid": h.kid}
}

func enc(v any) string {
	if s, ok := v.(string); ok {
		return b64u.EncodeToString([]byte(s))
	}
	b, _ := json.Marshal(v)
	return b64u.EncodeToString(b)
}

func es256(k *ecdsa.PrivateKey, input string) []byte {
	d := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
	if err != nil {
		panic(err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

// signed is a correctly ES256-signed token with the given header and claims
// (either a value to marshal or a raw JSON string).
func (h *hostile) signed(k *ecdsa.PrivateKey, hdr, claims any) string {
	in := enc(hdr) + "." + enc(claims)
	return in + "." + b64u.EncodeToString(es256(k, in))
}

func TestHostileTokenBattery(t *testing.T) {
	g := startGateway(t, nil)
	var cscRaw, policeRaw ecdsa.PrivateKey
	if err := g.key("exley-csc").Raw(&cscRaw); err != nil {
		t.Fatal(err)
	}
	if err := g.key("exley-police").Raw(&policeRaw); err != nil {
		t.Fatal(err)
	}
	h := &hostile{t: t, now: testNow, csc: &cscRaw, kid: g.key("exley-csc").KeyID(), seen: map[string]bool{}}
	pub, _ := g.key("exley-csc").PublicKey()
	pubJSON, _ := json.Marshal(pub)
	attacker, _, _ := registry.GenerateKey("exley-csc", jwa.ES256)
	var attackerRaw ecdsa.PrivateKey
	_ = attacker.Raw(&attackerRaw)
	attackerPub, _ := attacker.PublicKey()
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)

	// RFC 8725 §2.1, §3.1: alg none and every algorithm outside ES256/EdDSA.
	for _, alg := range []any{"none", "None", "NONE", "nOnE", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
		"PS256", "PS384", "PS512", "ES384", "ES512", "ES256K", "es256", "ES256 ", " ES256", "Ed25519", "", nil, 256, true,
		[]string{"ES256"}, map[string]any{"alg": "ES256"}} {
		hdr := h.header()
		hdr["alg"] = alg
		in := enc(hdr) + "." + enc(h.claims())
		h.add("alg", fmt.Sprintf("alg %v, empty signature", alg), in+".")
		h.add("alg", fmt.Sprintf("alg %v, an ES256 signature", alg), in+"."+b64u.EncodeToString(es256(h.csc, in)))
	}
	// Algorithm confusion: HMAC keyed with the public key, in every form an
	// attacker could find it.
	for name, secret := range map[string][]byte{"jwk json": pubJSON, "x": []byte(pub.(jwk.ECDSAPublicKey).X()), "kid": []byte(h.kid)} {
		for alg, f := range map[string]func() hash.Hash{"HS256": sha256.New, "HS384": sha512.New384, "HS512": sha512.New} {
			hdr := h.header()
			hdr["alg"] = alg
			in := enc(hdr) + "." + enc(h.claims())
			m := hmac.New(f, secret)
			m.Write([]byte(in))
			h.add("alg confusion", alg+" keyed with the public "+name, in+"."+b64u.EncodeToString(m.Sum(nil)))
		}
	}
	// EdDSA claimed for the ES256 key, with an Ed25519 signature.
	{
		hdr := h.header()
		hdr["alg"] = "EdDSA"
		in := enc(hdr) + "." + enc(h.claims())
		h.add("alg confusion", "EdDSA over an EC key", in+"."+b64u.EncodeToString(ed25519.Sign(edPriv, []byte(in))))
	}

	// Malformed signatures of an otherwise good token.
	base := enc(h.header()) + "." + enc(h.claims())
	sig := es256(h.csc, base)
	for i := 0; i < 64; i++ {
		bad := append([]byte{}, sig...)
		bad[i] ^= 0x01 << (i % 8)
		h.add("signature", fmt.Sprintf("bit flipped in byte %d", i), base+"."+b64u.EncodeToString(bad))
	}
	for _, n := range []int{0, 1, 31, 32, 33, 48, 63} {
		h.add("signature", fmt.Sprintf("truncated to %d bytes", n), base+"."+b64u.EncodeToString(sig[:n]))
	}
	h.add("signature", "65 bytes", base+"."+b64u.EncodeToString(append(append([]byte{}, sig...), 0)))
	h.add("signature", "128 bytes", base+"."+b64u.EncodeToString(append(append([]byte{}, sig...), sig...)))
	h.add("signature", "all zero", base+"."+b64u.EncodeToString(make([]byte, 64)))
	h.add("signature", "r=s=n", base+"."+b64u.EncodeToString(append(elliptic256N(), elliptic256N()...)))
	h.add("signature", "padded base64", base+"."+base64.URLEncoding.EncodeToString(sig)+"==")
	h.add("signature", "standard base64", base+"."+strings.NewReplacer("-", "+", "_", "/").Replace(b64u.EncodeToString(sig))+"+/")
	h.add("signature", "another partner's key", base+"."+b64u.EncodeToString(es256(&policeRaw, base)))
	h.add("signature", "unregistered key", base+"."+b64u.EncodeToString(es256(&attackerRaw, base)))
	h.add("signature", "four segments", base+"."+b64u.EncodeToString(sig)+".")
	h.add("signature", "two segments", base)
	h.add("signature", "JWS JSON", `{"payload":"`+strings.Split(base, ".")[1]+`","signatures":[]}`)
	h.add("signature", "spaces inside", base+". "+b64u.EncodeToString(sig))

	// Payload altered after signing (every claim that matters).
	for _, mod := range []func(c map[string]any){
		func(c map[string]any) { c["role"] = "ig_lead" }, func(c map[string]any) { c["role"] = "auditor" },
		func(c map[string]any) { c["sub"] = "ig-0001" }, func(c map[string]any) { c["iss"] = "exley-police" },
		func(c map[string]any) { c["exp"] = testNow.Add(time.Hour).Unix() }, func(c map[string]any) { c["aud"] = "other" },
		func(c map[string]any) { c["jti"] = "other" }, func(c map[string]any) { c["extra"] = true },
	} {
		hdr := enc(h.header())
		c := h.claims()
		in := hdr + "." + enc(c)
		s := es256(h.csc, in)
		mod(c)
		h.add("payload", fmt.Sprintf("claims changed after signing %v", c), hdr+"."+enc(c)+"."+b64u.EncodeToString(s))
	}

	// One character of the payload segment changed.
	{
		parts := strings.Split(base+"."+b64u.EncodeToString(sig), ".")
		for i := 0; i < 60 && i < len(parts[1]); i++ {
			b := []byte(parts[1])
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			h.add("payload", fmt.Sprintf("payload character %d changed", i), parts[0]+"."+string(b)+"."+parts[2])
		}
	}

	// Header injection (RFC 8725 §3.10 and the refused parameters), validly signed.
	for _, inj := range []map[string]any{
		{"jku": "http://127.0.0.1:1/jwks.json"}, {"jku": "https://evil.example/keys"}, {"jku": ""},
		{"x5u": "http://127.0.0.1:1/cert.pem"}, {"x5c": []string{"MIIB"}}, {"x5c": []string{}},
		{"crit": []string{"exp"}}, {"crit": []string{"b64"}, "b64": false}, {"crit": []string{}}, {"b64": false}, {"b64": true},
		{"jwk": pub}, {"jwk": attackerPub}, {"typ": "JOSE"}, {"typ": "at+jwt"}, {"typ": 1}, {"typ": nil},
	} {
		hdr := h.header()
		for k, v := range inj {
			hdr[k] = v
		}
		key := h.csc
		if _, ok := inj["jwk"]; ok {
			key = &attackerRaw
		}
		h.add("header", fmt.Sprintf("header %v", inj), h.signed(key, hdr, h.claims()))
	}
	// The attacker's own key, embedded and named.
	{
		hdr := h.header()
		hdr["jwk"], hdr["kid"] = attackerPub, attacker.KeyID()
		h.add("header", "attacker's jwk and kid", h.signed(&attackerRaw, hdr, h.claims()))
	}
	for _, kid := range []any{"", "../../keys/exley-csc.jwk", "' OR '1'='1", "exley-csc", g.key("exley-police").KeyID(),
		attacker.KeyID(), strings.Repeat("k", 5000), nil, 7, []string{h.kid}, map[string]any{"kid": h.kid}, h.kid + "\x00", strings.ToUpper(h.kid)} {
		hdr := h.header()
		hdr["kid"] = kid
		h.add("kid", fmt.Sprintf("kid %.40v", kid), h.signed(h.csc, hdr, h.claims()))
	}
	{
		hdr := h.header()
		delete(hdr, "kid")
		h.add("kid", "no kid", h.signed(h.csc, hdr, h.claims()))
	}
	for _, raw := range []string{`[]`, `"ES256"`, `null`, `{`, `{"alg":"ES256","kid":"` + h.kid + `"`, ``, `{}`, `1`} {
		in := enc(raw) + "." + enc(h.claims())
		h.add("header", "header "+raw, in+"."+b64u.EncodeToString(es256(h.csc, in)))
	}

	// Claim type confusion (RFC 8725 §2.8, §3.11), validly signed.
	for _, mod := range []func(c map[string]any) string{
		func(c map[string]any) string { c["aud"] = []string{"trustgate", "other"}; return "aud two" },
		func(c map[string]any) string { c["aud"] = []string{}; return "aud empty list" },
		func(c map[string]any) string { c["aud"] = 1; return "aud number" },
		func(c map[string]any) string { c["aud"] = "Trustgate"; return "aud case" },
		func(c map[string]any) string { delete(c, "aud"); return "no aud" },
		func(c map[string]any) string { c["exp"] = fmt.Sprint(c["exp"]); return "exp string" },
		func(c map[string]any) string { c["exp"] = 1e300; return "exp huge" },
		func(c map[string]any) string { c["exp"] = -1; return "exp negative" },
		func(c map[string]any) string { c["exp"] = nil; return "exp null" },
		func(c map[string]any) string { delete(c, "exp"); return "no exp" },
		func(c map[string]any) string { c["exp"] = testNow.Add(-time.Hour).Unix(); return "expired" },
		func(c map[string]any) string { c["iat"] = testNow.Add(time.Hour).Unix(); return "iat future" },
		func(c map[string]any) string { c["iat"] = "now"; return "iat string" },
		func(c map[string]any) string { delete(c, "iat"); return "no iat" },
		func(c map[string]any) string { c["nbf"] = testNow.Add(time.Hour).Unix(); return "nbf future" },
		func(c map[string]any) string { c["nbf"] = "soon"; return "nbf string" },
		func(c map[string]any) string {
			c["iat"] = testNow.Add(-time.Minute).Unix()
			c["exp"] = testNow.Add(time.Hour).Unix()
			return "lifetime over the bound"
		},
		func(c map[string]any) string { c["iss"] = 1; return "iss number" },
		func(c map[string]any) string { c["iss"] = []string{"exley-csc"}; return "iss list" },
		func(c map[string]any) string { c["iss"] = "exley-police"; return "iss another partner (csc key)" },
		func(c map[string]any) string { c["iss"] = "EXLEY-CSC"; return "iss case" },
		func(c map[string]any) string { c["iss"] = "exley-childrens-trust"; return "iss the Trust" },
		func(c map[string]any) string { delete(c, "iss"); return "no iss" },
		func(c map[string]any) string { c["sub"] = 42; return "sub number" },
		func(c map[string]any) string { c["sub"] = ""; return "sub empty" },
		func(c map[string]any) string { c["sub"] = strings.Repeat("s", 200); return "sub long" },
		func(c map[string]any) string { delete(c, "sub"); return "no sub" },
		func(c map[string]any) string { c["jti"] = 1; return "jti number" },
		func(c map[string]any) string { c["jti"] = ""; return "jti empty" },
		func(c map[string]any) string { c["jti"] = strings.Repeat("j", 200); return "jti long" },
		func(c map[string]any) string { delete(c, "jti"); return "no jti" },
		func(c map[string]any) string { c["role"] = []string{"social_worker"}; return "role list" },
		func(c map[string]any) string { c["role"] = 1; return "role number" },
		func(c map[string]any) string { c["role"] = "Social_Worker"; return "role case" },
		func(c map[string]any) string { c["role"] = "janitor"; return "role unknown" },
		func(c map[string]any) string { c["role"] = "teacher"; return "role the council may not hold" },
		func(c map[string]any) string { c["role"] = "gp"; return "role gp at the council" },
		func(c map[string]any) string { c["role"] = "ig_lead"; return "ig_lead, not appointed" },
		func(c map[string]any) string { c["role"] = "auditor"; return "auditor, not appointed" },
		func(c map[string]any) string {
			c["role"] = "ig_lead"
			c["sub"] = "IG-0001"
			return "ig_lead, case of an appointee"
		},
		func(c map[string]any) string {
			c["role"] = "ig_lead"
			c["sub"] = "ig-0001 "
			return "ig_lead, appointee with a space"
		},
		func(c map[string]any) string {
			c["role"] = "auditor"
			c["sub"] = "ig-0001"
			return "auditor, an IG lead's id"
		},
		func(c map[string]any) string { delete(c, "role"); return "no role" },
	} {
		c := h.claims()
		name := mod(c)
		h.add("claims", name, h.signed(h.csc, h.header(), c))
	}
	for _, raw := range []string{`[]`, `"claims"`, `null`, `{`, ``, `{"iss":"exley-csc"}`, `1`} {
		h.add("claims", "claims "+raw, h.signed(h.csc, h.header(), raw))
	}
	// A police token (police key) claiming to be the council's.
	{
		c := h.claims()
		hdr := h.header()
		hdr["kid"] = g.key("exley-police").KeyID()
		h.add("claims", "council's iss, police key", h.signed(&policeRaw, hdr, c))
	}

	// Replay variants: a token used once, then sent again as is, with its
	// signature made high-S (ECDSA malleability), re-signed with the same
	// jti, and with the header re-encoded.
	used := h.signed(h.csc, h.header(), map[string]any{"iss": "exley-csc", "sub": "sw-0042", "role": "social_worker", "aud": "trustgate",
		"iat": testNow.Unix(), "exp": testNow.Add(time.Minute).Unix(), "jti": "replay-1"})
	if r := g.do(http.MethodPost, "/v1/decisions", used, mustJSON(policeShare())); r.Status != 200 {
		t.Fatalf("the first use: %d %s", r.Status, r.Raw)
	}
	h.add("replay", "the same token", used)
	parts := strings.Split(used, ".")
	s, _ := b64u.DecodeString(parts[2])
	n := new(big.Int).SetBytes(elliptic256N())
	hs := new(big.Int).Sub(n, new(big.Int).SetBytes(s[32:]))
	mall := append(append([]byte{}, s[:32]...), hs.FillBytes(make([]byte, 32))...)
	h.add("replay", "high-S signature", parts[0]+"."+parts[1]+"."+b64u.EncodeToString(mall))
	h.add("replay", "re-signed, same jti", h.signed(h.csc, h.header(), map[string]any{"iss": "exley-csc", "sub": "sw-0042", "role": "social_worker", "aud": "trustgate",
		"iat": testNow.Unix(), "exp": testNow.Add(time.Minute).Unix(), "jti": "replay-1"}))
	h.add("replay", "re-signed, same jti, other sub", h.signed(h.csc, h.header(), map[string]any{"iss": "exley-csc", "sub": "sw-0043", "role": "social_worker", "aud": "trustgate",
		"iat": testNow.Unix(), "exp": testNow.Add(2 * time.Minute).Unix(), "jti": "replay-1"}))
	h.add("replay", "header re-encoded", enc(`{"kid":"`+h.kid+`","alg":"ES256","typ":"JWT"}`)+"."+parts[1]+"."+parts[2])
	h.add("replay", "padded payload", parts[0]+"."+parts[1]+"="+"."+parts[2])
	h.add("replay", "trailing space", used+" x")

	if len(h.tokens) < 300 {
		t.Fatalf("the battery has %d tokens, want at least 300", len(h.tokens))
	}
	classes := map[string]int{}
	for _, tk := range h.tokens {
		before, _ := g.app.Audit().Head()
		r := g.do(http.MethodPost, "/v1/decisions", tk.token, mustJSON(policeShare()))
		if r.Status != http.StatusUnauthorized {
			t.Errorf("%s: %s: %d, want 401: %.200s", tk.class, tk.name, r.Status, r.Raw)
			continue
		}
		after, _ := g.app.Audit().Head()
		e, err := g.app.Audit().Get(context.Background(), after)
		if after != before+1 || err != nil || e.Kind != audit.KindAuthFailure || e.Decision != "" {
			t.Errorf("%s: %s: not audited as an auth failure: %+v %v", tk.class, tk.name, e, err)
		}
		classes[tk.class]++
	}
	t.Logf("%d hostile tokens refused, each audited: %v", len(h.tokens), classes)
}

// elliptic256N is the order of P-256, big-endian.
func elliptic256N() []byte {
	n, _ := new(big.Int).SetString("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
	return n.FillBytes(make([]byte, 32))
}
