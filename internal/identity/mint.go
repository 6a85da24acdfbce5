package identity

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// MintClaims are the claims of a token made by Mint.
type MintClaims struct {
	Issuer   string // iss: partner id; required
	Subject  string // sub: practitioner id; required
	Role     string // role; required
	Audience string // aud; DefaultAudience when empty
	JTI      string // jti; 128 random bits when empty
	// IssuedAt is iat, truncated to the second; time.Now when zero.
	IssuedAt time.Time
	// Lifetime sets exp = iat + Lifetime; DefaultMaxLifetime when zero.
	Lifetime time.Duration
	// Extra are further claims (nbf, for instance); they may not name iss,
	// sub, aud, exp, iat, jti or role.
	Extra map[string]any
}

// Mint signs an agency bearer token with key, a private JWK with a kid: an
// EC P-256 key signs ES256, an Ed25519 key EdDSA. The protected header
// carries alg, kid and typ JWT. Mint is for tests, benchmarks, the demo and
// developers' `trustgate token mint`; agencies mint their own tokens.
func Mint(key jwk.Key, c MintClaims) (string, error) {
	if key == nil {
		return "", errors.New("identity: mint: no key")
	}
	alg, err := algForPrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("identity: mint: %w", err)
	}
	if key.KeyID() == "" {
		return "", errors.New("identity: mint: the key has no kid")
	}
	for name, v := range map[string]string{"issuer": c.Issuer, "subject": c.Subject, "role": c.Role} {
		if v == "" {
			return "", fmt.Errorf("identity: mint: %s is required", name)
		}
	}
	if c.Lifetime < 0 {
		return "", errors.New("identity: mint: lifetime is negative")
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.JTI == "" {
		c.JTI = rand.Text()
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	c.IssuedAt = c.IssuedAt.Truncate(time.Second)
	if c.Lifetime == 0 {
		c.Lifetime = DefaultMaxLifetime
	}

	tok := jwt.New()
	tok.Options().Enable(jwt.FlattenAudience) // "aud": "trustgate", not ["trustgate"]
	claims := []struct {
		name string
		v    any
	}{
		{jwt.IssuerKey, c.Issuer},
		{jwt.SubjectKey, c.Subject},
		{jwt.AudienceKey, c.Audience},
		{jwt.JwtIDKey, c.JTI},
		{jwt.IssuedAtKey, c.IssuedAt},
		{jwt.ExpirationKey, c.IssuedAt.Add(c.Lifetime)},
		{"role", c.Role},
	}
	for _, cl := range claims {
		if _, clash := c.Extra[cl.name]; clash {
			return "", fmt.Errorf("identity: mint: extra claim %q would replace a standard claim", cl.name)
		}
		if err := tok.Set(cl.name, cl.v); err != nil {
			return "", fmt.Errorf("identity: mint: claim %s: %w", cl.name, err)
		}
	}
	for name, v := range c.Extra {
		if err := tok.Set(name, v); err != nil {
			return "", fmt.Errorf("identity: mint: claim %s: %w", name, err)
		}
	}

	hdr := jws.NewHeaders()
	for k, v := range map[string]any{jws.KeyIDKey: key.KeyID(), jws.TypeKey: "JWT"} {
		if err := hdr.Set(k, v); err != nil {
			return "", fmt.Errorf("identity: mint: header %s: %w", k, err)
		}
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("identity: mint: %w", err)
	}
	return string(signed), nil
}

// algForPrivateKey is the signing algorithm of an agency private key.
func algForPrivateKey(key jwk.Key) (jwa.SignatureAlgorithm, error) {
	var alg jwa.SignatureAlgorithm
	switch k := key.(type) {
	case jwk.ECDSAPrivateKey:
		if k.Crv() != jwa.P256 {
			return "", fmt.Errorf("EC curve %s is not allowed (P-256)", k.Crv())
		}
		alg = jwa.ES256
	case jwk.OKPPrivateKey:
		if k.Crv() != jwa.Ed25519 {
			return "", fmt.Errorf("OKP curve %s is not allowed (Ed25519)", k.Crv())
		}
		alg = jwa.EdDSA
	default:
		return "", fmt.Errorf("key type %s is not an agency signing key (EC P-256 or Ed25519 private key)", key.KeyType())
	}
	if ka := key.Algorithm().String(); ka != "" && ka != alg.String() {
		return "", fmt.Errorf("the key is for %s, not %s", ka, alg)
	}
	return alg, nil
}
