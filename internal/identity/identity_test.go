package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/registry"
)

func TestVerifyAcceptsValidTokens(t *testing.T) {
	f := newFixture(t)
	la, health := f.keys.la, f.keys.health
	type want struct {
		partner, kid string
		iat, exp     time.Time
	}
	laWant := want{la.partner, la.kid(), t0, t0.Add(5 * time.Minute)}
	tests := []struct {
		name string
		tok  func(t *testing.T) (tok, jti string)
		want want
	}{
		{"ES256 minted", func(t *testing.T) (string, string) {
			jti := nextJTI()
			return mint(t, la, func(c *identity.MintClaims) { c.JTI = jti }), jti
		}, laWant},
		{"EdDSA minted", func(t *testing.T) (string, string) {
			jti := nextJTI()
			return mint(t, health, func(c *identity.MintClaims) { c.JTI = jti }), jti
		}, want{health.partner, health.kid(), t0, t0.Add(5 * time.Minute)}},
		{"aud as a one-element array", func(t *testing.T) (string, string) {
			c := claims(la.partner)
			c["aud"] = []string{"trustgate"}
			return signAs(t, la, c), c["jti"].(string)
		}, laWant},
		{"typ in lower case", func(t *testing.T) (string, string) {
			c, h := claims(la.partner), header(la.alg, la.kid())
			h["typ"] = "jwt"
			return signRaw(t, la.alg, la.priv, h, c), c["jti"].(string)
		}, laWant},
		{"no typ", func(t *testing.T) (string, string) {
			c, h := claims(la.partner), header(la.alg, la.kid())
			delete(h, "typ")
			return signRaw(t, la.alg, la.priv, h, c), c["jti"].(string)
		}, laWant},
		{"nbf in the past", func(t *testing.T) (string, string) {
			c := claims(la.partner)
			c["nbf"] = t0.Add(-time.Minute).Unix()
			return signAs(t, la, c), c["jti"].(string)
		}, laWant},
		{"nbf exactly now+skew", func(t *testing.T) (string, string) {
			c := claims(la.partner)
			c["nbf"] = t0.Add(time.Minute).Unix()
			return signAs(t, la, c), c["jti"].(string)
		}, laWant},
		{"exp exactly now-skew", func(t *testing.T) (string, string) {
			c := claims(la.partner)
			c["exp"], c["iat"] = t0.Add(-time.Minute).Unix(), t0.Add(-6*time.Minute).Unix()
			return signAs(t, la, c), c["jti"].(string)
		}, want{la.partner, la.kid(), t0.Add(-6 * time.Minute), t0.Add(-time.Minute)}},
		{"iat exactly now+skew", func(t *testing.T) (string, string) {
			c := claims(la.partner)
			c["iat"], c["exp"] = t0.Add(time.Minute).Unix(), t0.Add(6*time.Minute).Unix()
			return signAs(t, la, c), c["jti"].(string)
		}, want{la.partner, la.kid(), t0.Add(time.Minute), t0.Add(6 * time.Minute)}},
		{"fractional NumericDates", func(t *testing.T) (string, string) {
			c := claims(la.partner)
			c["iat"], c["exp"] = float64(t0.Unix())+0.5, float64(t0.Add(5*time.Minute).Unix())+0.25
			return signAs(t, la, c), c["jti"].(string)
		}, want{la.partner, la.kid(), t0.Add(500 * time.Millisecond), t0.Add(5*time.Minute + 250*time.Millisecond)}},
		{"a repeated claim: the last value counts", func(t *testing.T) (string, string) {
			c := claims(la.partner)
			body := strings.Replace(string(mustJSON(t, c)), `{`, `{"iss":"exley-police",`, 1)
			input := b64JSON(t, header(la.alg, la.kid())) + "." + b64([]byte(body))
			return input + "." + signInput(t, la.alg, la.priv, input), c["jti"].(string)
		}, laWant},
		{"jti of 128 characters", func(t *testing.T) (string, string) {
			c := claims(la.partner)
			c["jti"] = strings.Repeat("é", 127) + nextJTI()[:1]
			return signAs(t, la, c), c["jti"].(string)
		}, laWant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, jti := tt.tok(t)
			got, err := f.v.Verify(t.Context(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Partner != tt.want.partner || got.Practitioner != "practitioner-0042" || got.Role != "social_worker" ||
				got.JTI != jti || got.KeyID != tt.want.kid || !got.IssuedAt.Equal(tt.want.iat) || !got.Expiry.Equal(tt.want.exp) {
				t.Errorf("claims = %+v; want partner %s, practitioner-0042, social_worker, jti %s, kid %s, iat %s, exp %s",
					got, tt.want.partner, jti, tt.want.kid, tt.want.iat, tt.want.exp)
			}
		})
	}
}

func TestVerifyRefusesHostileTokens(t *testing.T) {
	f := newFixture(t)
	la, health, police := f.keys.la, f.keys.health, f.keys.police

	// An attacker's own keys.
	attackerEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	attackerP384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	attackerRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	attackerJWK := publicJWK(t, attackerEC, map[string]any{jwk.KeyIDKey: la.kid()})
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: la.partner},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(time.Hour),
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &attackerEC.PublicKey, attackerEC)
	if err != nil {
		t.Fatal(err)
	}
	laPublicJSON, err := json.Marshal(la.pub)
	if err != nil {
		t.Fatal(err)
	}

	// withHeader signs a valid la claims set with la's key under a header
	// changed by mod.
	withHeader := func(mod func(h map[string]any)) func(t *testing.T) string {
		return func(t *testing.T) string {
			h := header(la.alg, la.kid())
			mod(h)
			return signRaw(t, la.alg, la.priv, h, claims(la.partner))
		}
	}
	// withClaims signs la claims changed by mod with la's key.
	withClaims := func(mod func(c map[string]any)) func(t *testing.T) string {
		return func(t *testing.T) string {
			c := claims(la.partner)
			mod(c)
			return signAs(t, la, c)
		}
	}
	// attackerSigned signs valid la claims with the attacker's EC key under
	// la's kid and the extra header parameters.
	attackerSigned := func(extra map[string]any) func(t *testing.T) string {
		return func(t *testing.T) string {
			h := header(jwa.ES256, la.kid())
			for k, v := range extra {
				h[k] = v
			}
			return signRaw(t, jwa.ES256, attackerEC, h, claims(la.partner))
		}
	}
	fixed := func(s string) func(*testing.T) string { return func(*testing.T) string { return s } }
	validHeader := b64JSON(t, header(la.alg, la.kid()))

	tests := []struct {
		name string
		tok  func(t *testing.T) string
		code string
	}{
		// Size and shape.
		{"empty", fixed(""), identity.CodeTokenMissing},
		{"1 MB of garbage", fixed(strings.Repeat("a", 1<<20)), identity.CodeTokenTooLarge},
		{"1 MB validly signed token", func(t *testing.T) string {
			return mint(t, la, func(c *identity.MintClaims) { c.Extra = map[string]any{"pad": strings.Repeat("x", 1<<20)} })
		}, identity.CodeTokenTooLarge},
		{"garbage word", fixed("not-a-token"), identity.CodeMalformed},
		{"two segments", fixed("abc.def"), identity.CodeMalformed},
		{"four segments", fixed("abc.def.ghi.jkl"), identity.CodeMalformed},
		{"only dots", fixed(".."), identity.CodeMalformed},
		{"empty payload", fixed(validHeader + "..c2ln"), identity.CodeMalformed},
		{"not base64url", fixed("!!!!.????.****"), identity.CodeMalformed},
		{"padded base64", fixed(validHeader + "=." + b64JSON(t, claims(la.partner)) + ".c2ln"), identity.CodeMalformed},
		{"header not JSON", fixed(b64([]byte("{alg")) + "." + b64JSON(t, claims(la.partner)) + ".c2ln"), identity.CodeMalformed},
		{"header a JSON array", fixed(b64([]byte(`["ES256"]`)) + "." + b64JSON(t, claims(la.partner)) + ".c2ln"), identity.CodeMalformed},
		{"header null", fixed(b64([]byte(`null`)) + "." + b64JSON(t, claims(la.partner)) + ".c2ln"), identity.CodeMalformed},
		{"payload not JSON", fixed(validHeader + "." + b64([]byte("not json")) + ".c2ln"), identity.CodeMalformed},
		{"payload a JSON array", fixed(validHeader + "." + b64([]byte(`["iss"]`)) + ".c2ln"), identity.CodeMalformed},
		{"claim of the wrong type", withClaims(func(c map[string]any) { c["exp"] = "soon" }), identity.CodeMalformed},
		{"exp a numeric string", withClaims(func(c map[string]any) { c["exp"] = fmt.Sprint(c["exp"]) }), identity.CodeMalformed},
		{"exp negative", withClaims(func(c map[string]any) { c["exp"] = -1 }), identity.CodeMalformed},
		{"exp past the year 9999", withClaims(func(c map[string]any) { c["exp"] = 1e12 }), identity.CodeMalformed},
		{"iss a number", withClaims(func(c map[string]any) { c["iss"] = 7 }), identity.CodeMalformed},
		{"aud a number", withClaims(func(c map[string]any) { c["aud"] = 7 }), identity.CodeMalformed},
		{"aud an array with a number", withClaims(func(c map[string]any) { c["aud"] = []any{"trustgate", 7} }), identity.CodeMalformed},
		{"aud two audiences", withClaims(func(c map[string]any) { c["aud"] = []string{"trustgate", "other"} }), identity.CodeWrongAudience},
		{"claim names in capitals", withClaims(func(c map[string]any) { c["ISS"] = c["iss"]; delete(c, "iss") }), identity.CodeMissingClaim},
		{"exp in capitals only", withClaims(func(c map[string]any) { c["EXP"] = c["exp"]; delete(c, "exp") }), identity.CodeMissingClaim},
		{"role a number", withClaims(func(c map[string]any) { c["role"] = 3 }), identity.CodeMissingClaim},
		{"JWS JSON serialization with two signatures", func(t *testing.T) string {
			b, err := jws.Sign(mustJSON(t, claims(la.partner)), jws.WithJSON(),
				jws.WithKey(la.alg, la.priv), jws.WithKey(police.alg, police.priv))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}, identity.CodeMalformed},
		{"JWS flattened JSON serialization", func(t *testing.T) string {
			b, err := jws.Sign(mustJSON(t, claims(la.partner)), jws.WithJSON(), jws.WithKey(la.alg, la.priv))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}, identity.CodeMalformed},

		// Algorithms.
		{"alg none, unsigned", func(t *testing.T) string {
			h := header(la.alg, la.kid())
			h["alg"] = "none"
			return b64JSON(t, h) + "." + b64JSON(t, claims(la.partner)) + "."
		}, identity.CodeAlgNotAllowed},
		{"alg missing", withHeader(func(h map[string]any) { delete(h, "alg") }), identity.CodeAlgNotAllowed},
		{"alg not a string", withHeader(func(h map[string]any) { h["alg"] = 7 }), identity.CodeAlgNotAllowed},
		{"alg es256 in lower case", withHeader(func(h map[string]any) { h["alg"] = "es256" }), identity.CodeAlgNotAllowed},
		{"HS256 keyed with the issuer's public key", func(t *testing.T) string {
			return signRaw(t, jwa.HS256, laPublicJSON, header(jwa.HS256, la.kid()), claims(la.partner))
		}, identity.CodeAlgNotAllowed},
		{"RS256 with a fresh RSA key", func(t *testing.T) string {
			return signRaw(t, jwa.RS256, attackerRSA, header(jwa.RS256, la.kid()), claims(la.partner))
		}, identity.CodeAlgNotAllowed},
		{"ES384", func(t *testing.T) string {
			return signRaw(t, jwa.ES384, attackerP384, header(jwa.ES384, la.kid()), claims(la.partner))
		}, identity.CodeAlgNotAllowed},
		{"EdDSA naming an EC P-256 key", func(t *testing.T) string {
			return signRaw(t, jwa.EdDSA, health.priv, header(jwa.EdDSA, la.kid()), claims(la.partner))
		}, identity.CodeAlgNotAllowed},
		{"ES256 naming an Ed25519 key", func(t *testing.T) string {
			return signRaw(t, jwa.ES256, la.priv, header(jwa.ES256, health.kid()), claims(health.partner))
		}, identity.CodeAlgNotAllowed},
		{"ES256 naming an EC P-384 key", func(t *testing.T) string {
			return signRaw(t, jwa.ES256, police.priv, header(jwa.ES256, f.keys.p384.KeyID()), claims(police.partner))
		}, identity.CodeAlgNotAllowed},
		{"EdDSA naming an OKP X25519 key", func(t *testing.T) string {
			return signRaw(t, jwa.EdDSA, health.priv, header(jwa.EdDSA, f.keys.x25519.KeyID()), claims(health.partner))
		}, identity.CodeAlgNotAllowed},
		{"ES256 naming a P-256 key registered for ES384", func(t *testing.T) string {
			return signRaw(t, jwa.ES256, police.priv, header(jwa.ES256, f.keys.mislabelled.KeyID()), claims(police.partner))
		}, identity.CodeAlgNotAllowed},

		// Header parameters.
		{"crit", withHeader(func(h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = t0.Unix() }), identity.CodeHeaderNotAllowed},
		{"jku", attackerSigned(map[string]any{"jku": "https://attacker.example/jwks.json"}), identity.CodeHeaderNotAllowed},
		{"x5u", attackerSigned(map[string]any{"x5u": "https://attacker.example/cert.pem"}), identity.CodeHeaderNotAllowed},
		{"x5c", attackerSigned(map[string]any{"x5c": []string{base64.StdEncoding.EncodeToString(certDER)}}), identity.CodeHeaderNotAllowed},
		{"embedded jwk", attackerSigned(map[string]any{"jwk": attackerJWK}), identity.CodeHeaderNotAllowed},
		{"b64 false", withHeader(func(h map[string]any) { h["b64"] = false }), identity.CodeHeaderNotAllowed},
		{"typ foo", withHeader(func(h map[string]any) { h["typ"] = "foo" }), identity.CodeMalformed},
		{"typ not a string", withHeader(func(h map[string]any) { h["typ"] = 1 }), identity.CodeMalformed},
		{"kid missing", withHeader(func(h map[string]any) { delete(h, "kid") }), identity.CodeUnknownKID},
		{"kid empty", withHeader(func(h map[string]any) { h["kid"] = "" }), identity.CodeUnknownKID},
		{"kid not a string", withHeader(func(h map[string]any) { h["kid"] = 7 }), identity.CodeMalformed},

		// Issuer and key.
		{"unknown kid", withHeader(func(h map[string]any) { h["kid"] = "la-social-care-AAAAAAAAAAAA" }), identity.CodeUnknownKID},
		{"another partner's kid, signed by that partner", func(t *testing.T) string {
			return signRaw(t, police.alg, police.priv, header(police.alg, police.kid()), claims(la.partner))
		}, identity.CodeUnknownKID},
		{"unknown issuer", withClaims(func(c map[string]any) { c["iss"] = "no-such-agency" }), identity.CodeUnknownIssuer},
		{"iss missing", withClaims(func(c map[string]any) { delete(c, "iss") }), identity.CodeMissingClaim},

		// Signature.
		{"unregistered key under a registered kid", attackerSigned(nil), identity.CodeBadSignature},
		{"flipped signature byte", func(t *testing.T) string {
			tok := mint(t, la, nil)
			i := strings.LastIndexByte(tok, '.')
			sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
			if err != nil {
				t.Fatal(err)
			}
			sig[10] ^= 0x01
			return tok[:i+1] + b64(sig)
		}, identity.CodeBadSignature},
		{"signature of another token by the same key", func(t *testing.T) string {
			a, b := mint(t, la, nil), mint(t, la, nil)
			return a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):]
		}, identity.CodeBadSignature},
		{"empty signature", func(t *testing.T) string {
			tok := mint(t, la, nil)
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}, identity.CodeBadSignature},
		{"claims changed after signing", func(t *testing.T) string {
			tok := mint(t, la, nil)
			parts := strings.Split(tok, ".")
			c := claims(la.partner)
			c["role"] = "police_officer"
			return parts[0] + "." + b64JSON(t, c) + "." + parts[2]
		}, identity.CodeBadSignature},

		// Claims.
		{"wrong aud", withClaims(func(c map[string]any) { c["aud"] = "another-gateway" }), identity.CodeWrongAudience},
		{"aud array with two values", withClaims(func(c map[string]any) { c["aud"] = []string{"trustgate", "another-gateway"} }), identity.CodeWrongAudience},
		{"aud empty array", withClaims(func(c map[string]any) { c["aud"] = []string{} }), identity.CodeWrongAudience},
		{"aud missing", withClaims(func(c map[string]any) { delete(c, "aud") }), identity.CodeWrongAudience},
		{"expired", withClaims(func(c map[string]any) {
			c["exp"], c["iat"] = t0.Add(-61*time.Second).Unix(), t0.Add(-5*time.Minute-61*time.Second).Unix()
		}), identity.CodeExpired},
		{"future nbf", withClaims(func(c map[string]any) { c["nbf"] = t0.Add(61 * time.Second).Unix() }), identity.CodeNotYetValid},
		{"future iat", withClaims(func(c map[string]any) {
			c["iat"], c["exp"] = t0.Add(61*time.Second).Unix(), t0.Add(3*time.Minute).Unix()
		}), identity.CodeNotYetValid},
		{"lifetime 10 minutes", withClaims(func(c map[string]any) { c["exp"] = t0.Add(10 * time.Minute).Unix() }), identity.CodeLifetimeTooLong},
		{"lifetime one second too long", withClaims(func(c map[string]any) { c["exp"] = t0.Add(5*time.Minute + time.Second).Unix() }), identity.CodeLifetimeTooLong},
		{"exp missing", withClaims(func(c map[string]any) { delete(c, "exp") }), identity.CodeMissingClaim},
		{"iat missing", withClaims(func(c map[string]any) { delete(c, "iat") }), identity.CodeMissingClaim},
		{"jti missing", withClaims(func(c map[string]any) { delete(c, "jti") }), identity.CodeMissingClaim},
		{"jti of 129 characters", withClaims(func(c map[string]any) { c["jti"] = strings.Repeat("j", 129) }), identity.CodeMissingClaim},
		{"sub missing", withClaims(func(c map[string]any) { delete(c, "sub") }), identity.CodeMissingClaim},
		{"sub empty", withClaims(func(c map[string]any) { c["sub"] = "" }), identity.CodeMissingClaim},
		{"role missing", withClaims(func(c map[string]any) { delete(c, "role") }), identity.CodeMissingClaim},
		{"role not a string", withClaims(func(c map[string]any) { c["role"] = []string{"social_worker"} }), identity.CodeMissingClaim},
		{"unknown role", withClaims(func(c map[string]any) { c["role"] = "chief_constable" }), identity.CodeUnknownRole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.tok(t)
			got, err := f.v.Verify(t.Context(), tok)
			if got != nil {
				t.Errorf("claims = %+v, want nil", got)
			}
			ae := authError(t, err, tt.code)
			// The message never carries the token: no segment of it, nor
			// the whole, appears in the error.
			for _, seg := range append(strings.Split(tok, "."), tok) {
				if len(seg) >= 16 && strings.Contains(err.Error(), seg) {
					t.Errorf("error %q contains part of the token", clip(err.Error()))
				}
			}
			if len(ae.Issuer) > 256+len("…") || len(ae.Message) > 512 {
				t.Errorf("unbounded error fields: issuer %d bytes, message %d bytes", len(ae.Issuer), len(ae.Message))
			}
		})
	}
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A token over the size limit is refused without decoding it: refusing a
// 1 MB token must not allocate anything of the order of its size.
func TestVerifyRefusesOversizeTokensBeforeParsing(t *testing.T) {
	f := newFixture(t)
	big := mint(t, f.keys.la, func(c *identity.MintClaims) { c.Extra = map[string]any{"pad": strings.Repeat("x", 1<<20)} })
	const runs = 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := f.v.Verify(t.Context(), big); err == nil {
			t.Fatal("accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if perCall := (after.TotalAlloc - before.TotalAlloc) / runs; perCall > 4<<10 {
		t.Errorf("refusing a %d-byte token allocated %d bytes per call; it must be refused before decoding", len(big), perCall)
	}
	_, err := f.v.Verify(t.Context(), big)
	authError(t, err, identity.CodeTokenTooLarge)
}

func TestVerifyMaxTokenBytesBoundary(t *testing.T) {
	f := newFixture(t)
	tok := mint(t, f.keys.la, nil)
	for _, tt := range []struct {
		limit int
		code  string
	}{{len(tok), ""}, {len(tok) - 1, identity.CodeTokenTooLarge}} {
		v := identity.NewVerifier(identity.Config{Now: f.clock.Now, MaxTokenBytes: tt.limit},
			identity.StaticDirectory(f.reg), identity.NewMemoryReplayCache(f.clock.Now, 10))
		_, err := v.Verify(t.Context(), tok)
		if tt.code == "" {
			if err != nil {
				t.Errorf("limit %d: %v", tt.limit, err)
			}
			continue
		}
		authError(t, err, tt.code)
	}
}

func TestVerifyRefusesReplay(t *testing.T) {
	f := newFixture(t)
	tok := mint(t, f.keys.health, func(c *identity.MintClaims) { c.JTI = "once-only"; c.Subject = "nurse-7" })
	if _, err := f.v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, err := f.v.Verify(t.Context(), tok)
	ae := authError(t, err, identity.CodeReplayed)
	if !errors.Is(err, identity.ErrReplayed) {
		t.Errorf("errors.Is(err, ErrReplayed) = false")
	}
	if ae.Issuer != "health-trust" || ae.Subject != "nurse-7" || ae.JTI != "once-only" || !ae.Verified {
		t.Errorf("claimed identity = %q %q %q verified=%v", ae.Issuer, ae.Subject, ae.JTI, ae.Verified)
	}
	// The same jti from another partner is another token.
	other := mint(t, f.keys.la, func(c *identity.MintClaims) { c.JTI = "once-only" })
	if _, err := f.v.Verify(t.Context(), other); err != nil {
		t.Errorf("same jti, other issuer: %v", err)
	}
}

// Many requests presenting one token at once: exactly one is let in.
func TestVerifyConcurrentReplay(t *testing.T) {
	f := newFixture(t)
	tok := mint(t, f.keys.la, nil)
	const n = 32
	var ok, replayed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			_, err := f.v.Verify(context.Background(), tok)
			var ae *identity.AuthError
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &ae) && ae.Code == identity.CodeReplayed:
				replayed.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || replayed.Load() != n-1 {
		t.Errorf("accepted %d, replayed %d; want 1 and %d", ok.Load(), replayed.Load(), n-1)
	}
}

func TestVerifyReplayCacheFull(t *testing.T) {
	f := newFixture(t)
	v := identity.NewVerifier(identity.Config{Now: f.clock.Now}, identity.StaticDirectory(f.reg),
		identity.NewMemoryReplayCache(f.clock.Now, 1))
	if _, err := v.Verify(t.Context(), mint(t, f.keys.la, nil)); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(t.Context(), mint(t, f.keys.la, nil))
	authError(t, err, identity.CodeReplayCacheFull)
	if !errors.Is(err, identity.ErrReplayCacheFull) {
		t.Error("errors.Is(err, ErrReplayCacheFull) = false")
	}
}

type brokenCache struct{ err error }

func (c brokenCache) Claim(string, time.Time) error { return c.err }

func TestVerifyInternalFailuresAreNotAuthErrors(t *testing.T) {
	f := newFixture(t)
	tok := mint(t, f.keys.la, nil)
	diskFull := errors.New("disk full")
	tests := []struct {
		name  string
		dir   func() identity.Directory
		cache identity.ReplayCache
		cause error
	}{
		{"no directory loaded", func() identity.Directory { return nil }, f.cache, nil},
		{"replay cache failed", identity.StaticDirectory(f.reg), brokenCache{diskFull}, diskFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := identity.NewVerifier(identity.Config{Now: f.clock.Now}, tt.dir, tt.cache)
			got, err := v.Verify(t.Context(), tok)
			if err == nil || got != nil {
				t.Fatalf("got %v, %v; want an error", got, err)
			}
			if errors.Is(err, identity.ErrUnauthenticated) {
				t.Errorf("%v is classified unauthenticated; it is an internal failure", err)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Errorf("%v does not wrap %v", err, tt.cause)
			}
		})
	}
}

// The error says who claimed to ask once the payload could be read, and
// whether that claim was proven by the signature.
func TestAuthErrorCarriesClaimedIdentity(t *testing.T) {
	f := newFixture(t)
	la := f.keys.la
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		tok      func(c map[string]any) string
		code     string
		claimed  bool
		verified bool
	}{
		{"header refused", func(c map[string]any) string {
			h := header(la.alg, la.kid())
			h["jku"] = "https://attacker.example/"
			return signRaw(t, la.alg, la.priv, h, c)
		}, identity.CodeHeaderNotAllowed, false, false},
		{"bad signature", func(c map[string]any) string {
			return signRaw(t, jwa.ES256, attacker, header(jwa.ES256, la.kid()), c)
		}, identity.CodeBadSignature, true, false},
		{"expired", func(c map[string]any) string {
			c["exp"], c["iat"] = t0.Add(-time.Hour).Unix(), t0.Add(-time.Hour-time.Minute).Unix()
			return signAs(t, la, c)
		}, identity.CodeExpired, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claims(la.partner)
			_, err := f.v.Verify(t.Context(), tt.tok(c))
			ae := authError(t, err, tt.code)
			want := [3]string{}
			if tt.claimed {
				want = [3]string{la.partner, c["sub"].(string), c["jti"].(string)}
			}
			if got := [3]string{ae.Issuer, ae.Subject, ae.JTI}; got != want || ae.Verified != tt.verified {
				t.Errorf("claimed = %q verified=%v; want %q verified=%v", got, ae.Verified, want, tt.verified)
			}
		})
	}
}

// A reload takes effect at the next Verify; a token refused earlier was not
// used up by the refusal.
func TestVerifyFollowsRegistryReload(t *testing.T) {
	k := genKeys(t)
	clk := newClock(t0)
	var current atomic.Pointer[registry.Registry]
	current.Store(buildRegistry(t, k, regOpts{}))
	v := identity.NewVerifier(identity.Config{Now: clk.Now},
		func() identity.Directory { return current.Load() },
		identity.NewMemoryReplayCache(clk.Now, 100))

	nurse := mint(t, k.health, func(c *identity.MintClaims) { c.Role = "school_nurse" })
	_, err := v.Verify(t.Context(), nurse)
	authError(t, err, identity.CodeUnknownRole)

	current.Store(buildRegistry(t, k, regOpts{extraRoles: []string{"school_nurse"}}))
	if _, err := v.Verify(t.Context(), nurse); err != nil {
		t.Fatalf("after the role was added: %v", err)
	}

	current.Store(buildRegistry(t, k, regOpts{dropLAKey: true}))
	_, err = v.Verify(t.Context(), mint(t, k.la, nil))
	authError(t, err, identity.CodeUnknownKID)
}

func TestConfigReplayHorizon(t *testing.T) {
	for _, tt := range []struct {
		cfg  identity.Config
		want time.Duration
	}{
		{identity.Config{}, 7 * time.Minute},
		{identity.Config{MaxLifetime: time.Minute, Skew: 10 * time.Second}, 80 * time.Second},
	} {
		if got := tt.cfg.ReplayHorizon(); got != tt.want {
			t.Errorf("%+v.ReplayHorizon() = %s, want %s", tt.cfg, got, tt.want)
		}
	}
}

func TestMint(t *testing.T) {
	k := genKeys(t)
	for _, ak := range []agencyKey{k.la, k.health} {
		t.Run(ak.alg.String(), func(t *testing.T) {
			tok := mint(t, ak, nil)
			msg, err := jws.ParseString(tok)
			if err != nil {
				t.Fatal(err)
			}
			h := msg.Signatures()[0].ProtectedHeaders()
			if h.Algorithm() != ak.alg || h.KeyID() != ak.kid() || h.Type() != "JWT" {
				t.Errorf("header alg=%s kid=%s typ=%s; want %s %s JWT", h.Algorithm(), h.KeyID(), h.Type(), ak.alg, ak.kid())
			}
			if _, err := jws.Verify([]byte(tok), jws.WithKey(ak.alg, ak.pub)); err != nil {
				t.Errorf("does not verify with the public key: %v", err)
			}
			var c map[string]any
			if err := json.Unmarshal(msg.Payload(), &c); err != nil {
				t.Fatal(err)
			}
			if c["iss"] != ak.partner || c["aud"] != "trustgate" || c["role"] != "social_worker" ||
				c["iat"] != float64(t0.Unix()) || c["exp"] != float64(t0.Add(5*time.Minute).Unix()) || c["jti"] == "" {
				t.Errorf("claims = %v", c)
			}
		})
	}
	t.Run("random jti", func(t *testing.T) {
		a, b := mint(t, k.la, nil), mint(t, k.la, nil)
		f := &fixture{reg: buildRegistry(t, k, regOpts{}), clock: newClock(t0)}
		v := identity.NewVerifier(identity.Config{Now: f.clock.Now}, identity.StaticDirectory(f.reg), identity.NewMemoryReplayCache(f.clock.Now, 10))
		ca, err := v.Verify(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		cb, err := v.Verify(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		if ca.JTI == cb.JTI || len(ca.JTI) < 20 {
			t.Errorf("jtis %q and %q: want distinct random ids", ca.JTI, cb.JTI)
		}
	})

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384Key, err := jwk.FromRaw(p384)
	if err != nil {
		t.Fatal(err)
	}
	_ = p384Key.Set(jwk.KeyIDKey, "p384")
	noKID, err := jwk.FromRaw(mustEC(t))
	if err != nil {
		t.Fatal(err)
	}
	wrongAlg, err := jwk.FromRaw(mustEC(t))
	if err != nil {
		t.Fatal(err)
	}
	_ = wrongAlg.Set(jwk.KeyIDKey, "x")
	_ = wrongAlg.Set(jwk.AlgorithmKey, jwa.EdDSA)
	valid := identity.MintClaims{Issuer: "la-social-care", Subject: "sw-1", Role: "social_worker"}
	for _, tt := range []struct {
		name string
		key  jwk.Key
		mod  func(*identity.MintClaims)
	}{
		{"no key", nil, nil},
		{"public key", k.la.pub, nil},
		{"P-384 key", p384Key, nil},
		{"key without kid", noKID, nil},
		{"key for another alg", wrongAlg, nil},
		{"no issuer", k.la.priv, func(c *identity.MintClaims) { c.Issuer = "" }},
		{"no subject", k.la.priv, func(c *identity.MintClaims) { c.Subject = "" }},
		{"no role", k.la.priv, func(c *identity.MintClaims) { c.Role = "" }},
		{"negative lifetime", k.la.priv, func(c *identity.MintClaims) { c.Lifetime = -time.Minute }},
		{"extra replaces exp", k.la.priv, func(c *identity.MintClaims) { c.Extra = map[string]any{"exp": 1} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			if tt.mod != nil {
				tt.mod(&c)
			}
			if tok, err := identity.Mint(tt.key, c); err == nil {
				t.Errorf("Mint = %.20s…, want an error", tok)
			}
		})
	}
}

func mustEC(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestExtractBearer(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		want    string
		code    string
	}{
		{"bearer", []string{"Bearer abc.def.ghi"}, "abc.def.ghi", ""},
		{"scheme in lower case", []string{"bearer abc.def.ghi"}, "abc.def.ghi", ""},
		{"scheme in upper case", []string{"BEARER abc"}, "abc", ""},
		{"several spaces", []string{"Bearer   abc"}, "abc", ""},
		{"b64token characters and padding", []string{"Bearer aZ09-._~+/=="}, "aZ09-._~+/==", ""},
		{"no header", nil, "", identity.CodeTokenMissing},
		{"empty header", []string{""}, "", identity.CodeTokenMissing},
		{"scheme only", []string{"Bearer"}, "", identity.CodeTokenMissing},
		{"scheme and space", []string{"Bearer "}, "", identity.CodeTokenMissing},
		{"basic scheme", []string{"Basic dXNlcjpwYXNz"}, "", identity.CodeMalformed},
		{"no space", []string{"Bearerabc"}, "", identity.CodeMalformed},
		{"tab instead of space", []string{"Bearer\tabc"}, "", identity.CodeMalformed},
		{"two tokens", []string{"Bearer abc def"}, "", identity.CodeMalformed},
		{"comma list", []string{"Bearer abc, Bearer def"}, "", identity.CodeMalformed},
		{"two headers", []string{"Bearer abc", "Bearer def"}, "", identity.CodeMalformed},
		{"only padding", []string{"Bearer =="}, "", identity.CodeMalformed},
		{"padding inside", []string{"Bearer ab=c"}, "", identity.CodeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/children", nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			got, err := identity.ExtractBearer(r)
			if tt.code == "" {
				if err != nil || got != tt.want {
					t.Errorf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			authError(t, err, tt.code)
			if got != "" {
				t.Errorf("token %q returned with an error", got)
			}
		})
	}
}

// BenchmarkVerifyES256 measures full verifications (header, key lookup,
// ES256 signature, claims, replay claim) in parallel, each of a distinct
// token, as the gateway sees them.
func BenchmarkVerifyES256(b *testing.B) {
	f := newFixture(b)
	toks := make([]string, b.N)
	for i := range toks {
		toks[i] = mint(b, f.keys.la, nil)
	}
	var next atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.v.Verify(ctx, toks[next.Add(1)-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// WithDirectory pins the registry a verification uses, whatever the
// verifier's own source says: a request is authenticated against the
// revision it is decided under.
func TestVerifyWithDirectoryPinsTheRegistry(t *testing.T) {
	k := genKeys(t)
	clk := newClock(t0)
	older := buildRegistry(t, k, regOpts{})
	newer := buildRegistry(t, k, regOpts{extraRoles: []string{"school_nurse"}})
	v := identity.NewVerifier(identity.Config{Now: clk.Now}, identity.StaticDirectory(newer), identity.NewMemoryReplayCache(clk.Now, 100))
	nurse := mint(t, k.health, func(c *identity.MintClaims) { c.Role = "school_nurse" })
	_, err := v.Verify(identity.WithDirectory(t.Context(), older), nurse)
	authError(t, err, identity.CodeUnknownRole)
	if _, err := v.Verify(identity.WithDirectory(t.Context(), newer), nurse); err != nil {
		t.Fatalf("with the newer registry: %v", err)
	}
}
