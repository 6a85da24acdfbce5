package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/x25519"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// t0 is the fixed "now" of every test.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// agencyKey is a partner's signing key pair.
type agencyKey struct {
	partner string
	alg     jwa.SignatureAlgorithm
	priv    jwk.Key
	pub     jwk.Key
}

func (k agencyKey) kid() string { return k.priv.KeyID() }

func genAgencyKey(t testing.TB, partner string, alg jwa.SignatureAlgorithm) agencyKey {
	t.Helper()
	priv, pub, err := registry.GenerateKey(partner, alg)
	if err != nil {
		t.Fatal(err)
	}
	return agencyKey{partner: partner, alg: alg, priv: priv, pub: pub}
}

// keys are the Trust's agency keys, shared by every registry revision a
// test builds.
type keys struct {
	la     agencyKey // local authority, ES256
	health agencyKey // health trust, EdDSA
	police agencyKey // police, ES256
	// p384 is registered for police with no alg: it fits neither ES256
	// (wrong curve) nor EdDSA.
	p384 jwk.Key
	// mislabelled is an EC P-256 police key whose registered alg is ES384.
	mislabelled jwk.Key
	// x25519 is registered for health: an OKP key, but a key-agreement
	// curve that cannot verify EdDSA.
	x25519 jwk.Key
}

func genKeys(t testing.TB) *keys {
	t.Helper()
	k := &keys{
		la:     genAgencyKey(t, "la-social-care", jwa.ES256),
		health: genAgencyKey(t, "health-trust", jwa.EdDSA),
		police: genAgencyKey(t, "police-force", jwa.ES256),
	}
	raw, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k.p384 = publicJWK(t, raw, map[string]any{jwk.KeyIDKey: "police-force-p384"})
	raw256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k.mislabelled = publicJWK(t, raw256, map[string]any{jwk.KeyIDKey: "police-force-mislabelled", jwk.AlgorithmKey: jwa.ES384})
	xpub, _, err := x25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k.x25519 = publicJWK(t, xpub, map[string]any{jwk.KeyIDKey: "health-trust-x25519"})
	return k
}

func publicJWK(t testing.TB, raw any, fields map[string]any) jwk.Key {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range fields {
		if err := k.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// regOpts vary a registry revision.
type regOpts struct {
	extraRoles []string // added to the role vocabulary
	dropLAKey  bool     // the local authority has rotated its key out
}

// buildRegistry parses a Trust of three partners with inline JWKS.
func buildRegistry(t testing.TB, k *keys, o regOpts) *registry.Registry {
	t.Helper()
	jwks := func(ks ...jwk.Key) string {
		set := jwk.NewSet()
		for _, key := range ks {
			if err := set.AddKey(key); err != nil {
				t.Fatal(err)
			}
		}
		b, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	laKeys := []jwk.Key{k.la.pub}
	if o.dropLAKey {
		laKeys = nil
	}
	var roles strings.Builder
	for _, r := range append([]string{"social_worker", "gp", "police_officer"}, o.extraRoles...) {
		fmt.Fprintf(&roles, "  - {id: %s, description: %s}\n", r, r)
	}
	doc := fmt.Sprintf(`id: test-trust
name: Test Children's Trust
purposes:
  - {id: safeguarding, description: Safeguarding a child at risk}
categories:
  - {id: identity, description: Basic identity}
roles:
%spartners:
  - id: la-social-care
    name: Children's Social Care
    type: local_authority
    jwks: %s
  - id: health-trust
    name: Community Health Trust
    type: health
    jwks: %s
  - id: police-force
    name: Police
    type: police
    jwks: %s
`, roles.String(), jwks(laKeys...), jwks(k.health.pub, k.x25519), jwks(k.police.pub, k.p384, k.mislabelled))
	reg, err := registry.Parse(t.Context(), []byte(doc), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// fixture is a verifier over a registry of three partners on a fixed clock.
type fixture struct {
	keys  *keys
	reg   *registry.Registry
	clock *clock
	cache *identity.MemoryReplayCache
	v     *identity.Verifier
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	k := genKeys(t)
	f := &fixture{keys: k, reg: buildRegistry(t, k, regOpts{}), clock: newClock(t0)}
	f.cache = identity.NewMemoryReplayCache(f.clock.Now, 1<<20)
	f.v = identity.NewVerifier(identity.Config{Now: f.clock.Now}, identity.StaticDirectory(f.reg), f.cache)
	return f
}

var jtiSeq atomic.Int64

func nextJTI() string { return fmt.Sprintf("jti-%06d", jtiSeq.Add(1)) }

// claims is a valid claims set for partner iss at t0, as raw JSON values.
func claims(iss string) map[string]any {
	return map[string]any{
		"iss":  iss,
		"sub":  "practitioner-0042",
		"role": "social_worker",
		"aud":  "trustgate",
		"jti":  nextJTI(),
		"iat":  t0.Unix(),
		"exp":  t0.Add(5 * time.Minute).Unix(),
	}
}

func header(alg jwa.SignatureAlgorithm, kid string) map[string]any {
	return map[string]any{"alg": alg.String(), "typ": "JWT", "kid": kid}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// signRaw hand-builds a compact JWS over exactly the given header and
// claims, signing with key (a jwk.Key, raw private key or HMAC secret)
// under alg. Nothing is added or checked: hostile tokens are built with it.
func signRaw(t testing.TB, alg jwa.SignatureAlgorithm, key any, hdr, cl map[string]any) string {
	t.Helper()
	input := b64JSON(t, hdr) + "." + b64JSON(t, cl)
	return input + "." + signInput(t, alg, key, input)
}

// signInput signs a hand-built signing input with key under alg and
// returns the base64url signature.
func signInput(t testing.TB, alg jwa.SignatureAlgorithm, key any, input string) string {
	t.Helper()
	signer, err := jws.NewSigner(alg)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign([]byte(input), key)
	if err != nil {
		t.Fatal(err)
	}
	return b64(sig)
}

// signAs signs cl with an agency key under its own alg and kid.
func signAs(t testing.TB, k agencyKey, cl map[string]any) string {
	t.Helper()
	return signRaw(t, k.alg, k.priv, header(k.alg, k.kid()), cl)
}

// mint makes a valid token of k's partner at t0, adjusted by mod.
func mint(t testing.TB, k agencyKey, mod func(*identity.MintClaims)) string {
	t.Helper()
	c := identity.MintClaims{
		Issuer:   k.partner,
		Subject:  "practitioner-0042",
		Role:     "social_worker",
		IssuedAt: t0,
	}
	if mod != nil {
		mod(&c)
	}
	tok, err := identity.Mint(k.priv, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// authError asserts err is an *AuthError with code and returns it.
func authError(t testing.TB, err error, code string) *identity.AuthError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	var ae *identity.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("got %T %v, want *AuthError %s", err, err, code)
	}
	if ae.Code != code {
		t.Fatalf("code = %s (%s), want %s", ae.Code, ae.Message, code)
	}
	if !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("errors.Is(%v, ErrUnauthenticated) = false", err)
	}
	if ae.Message == "" {
		t.Fatal("empty message")
	}
	return ae
}
