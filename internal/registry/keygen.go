package registry

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// GenerateKey makes a new agency signing key pair for partnerID. alg is
// ES256 or EdDSA. The private JWK carries kid, alg and use=sig; the public
// key is the same key without private material, ready for the registry.
// The kid is "<partner>-<first 12 chars of the RFC 7638 thumbprint>".
func GenerateKey(partnerID string, alg jwa.SignatureAlgorithm) (priv, pub jwk.Key, err error) {
	var raw any
	switch alg {
	case jwa.ES256:
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jwa.EdDSA:
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, nil, fmt.Errorf("generate key: algorithm %s is not allowed (ES256, EdDSA)", alg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	priv, err = jwk.FromRaw(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	tp, err := priv.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	kid := partnerID + "-" + base64.RawURLEncoding.EncodeToString(tp)[:12]
	for k, v := range map[string]any{jwk.KeyIDKey: kid, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: "sig"} {
		if err := priv.Set(k, v); err != nil {
			return nil, nil, fmt.Errorf("generate key: %w", err)
		}
	}
	pub, err = priv.PublicKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	return priv, pub, nil
}
