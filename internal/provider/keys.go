package provider

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/nhs"
)

// ErrKeysUnavailable: the gateway's key set could not be fetched. A
// provider answers 503 and discloses nothing.
var ErrKeysUnavailable = errors.New("gateway keys unavailable")

// errUnknownKey: the key set, even refreshed, has no key with that kid.
var errUnknownKey = errors.New("no such key")

// KeySource yields the gateway's public key with a given kid. Key returns
// an error wrapping ErrKeysUnavailable when the set cannot be had, and
// errUnknownKey (unexported; a *TokenError reaches the caller) when the
// set has no such key.
type KeySource interface {
	Key(ctx context.Context, kid string) (jwk.Key, error)
}

// Signer signs a payload as a compact JWS with the gateway's key
// (keys.Signer satisfies it).
type Signer interface {
	Sign(ctx context.Context, payload []byte, typ string) (string, error)
}

// GatewayKeys is the gateway's key set fetched over HTTP from its
// /.well-known/jwks.json and cached (jwk.Cache): refreshed in the
// background, and at once — at most every refreshEvery — when a token
// names a kid the cached set lacks (the gateway rotated its key).
type GatewayKeys struct {
	url          string
	cache        *jwk.Cache
	refreshEvery time.Duration

	mu          sync.Mutex
	lastRefresh time.Time
}

var _ KeySource = (*GatewayKeys)(nil)

// NewGatewayKeys registers jwksURL with a cache bound to ctx. client makes
// the fetches (its transport carries the CA for an https URL; give it a
// timeout). Plain http is accepted only for a loopback host. Nothing is
// fetched until the first Key.
func NewGatewayKeys(ctx context.Context, jwksURL string, client *http.Client) (*GatewayKeys, error) {
	if err := CheckURL(jwksURL); err != nil {
		return nil, fmt.Errorf("provider: gateway key set: %w", err)
	}
	c := jwk.NewCache(ctx)
	if err := c.Register(jwksURL, jwk.WithHTTPClient(client), jwk.WithMinRefreshInterval(time.Minute), jwk.WithRefreshInterval(15*time.Minute)); err != nil {
		return nil, fmt.Errorf("provider: gateway key set: %w", err)
	}
	return &GatewayKeys{url: jwksURL, cache: c, refreshEvery: 10 * time.Second}, nil
}

// Key implements KeySource.
func (g *GatewayKeys) Key(ctx context.Context, kid string) (jwk.Key, error) {
	set, err := g.cache.Get(ctx, g.url)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
	}
	if k, ok := set.LookupKeyID(kid); ok {
		return publicOnly(k)
	}
	g.mu.Lock()
	due := time.Since(g.lastRefresh) >= g.refreshEvery
	if due {
		g.lastRefresh = time.Now()
	}
	g.mu.Unlock()
	if !due {
		return nil, errUnknownKey
	}
	set, err = g.cache.Refresh(ctx, g.url)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
	}
	if k, ok := set.LookupKeyID(kid); ok {
		return publicOnly(k)
	}
	return nil, errUnknownKey
}

// StaticKeys is a fixed key set (tests; a provider given the set as a file).
type StaticKeys struct{ Set jwk.Set }

// Key implements KeySource.
func (s StaticKeys) Key(_ context.Context, kid string) (jwk.Key, error) {
	if k, ok := s.Set.LookupKeyID(kid); ok {
		return publicOnly(k)
	}
	return nil, errUnknownKey
}

// publicOnly refuses private or symmetric material in a published set.
func publicOnly(k jwk.Key) (jwk.Key, error) {
	switch k.(type) {
	case jwk.ECDSAPublicKey, jwk.OKPPublicKey:
		return k, nil
	default:
		return nil, fmt.Errorf("%w: key %q is not an EC or OKP public key", ErrKeysUnavailable, k.KeyID())
	}
}

// CheckURL accepts an https URL, or an http URL whose host is a loopback
// address: records and notifications never cross a network in clear.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q: plain http is only allowed to a loopback host; use https", raw)
	default:
		return fmt.Errorf("%q: scheme must be https (or http to a loopback host)", raw)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// refusedHeaders are protected header parameters whose presence refuses a
// JWS: crit (extensions we do not implement), jku/x5u/x5c/jwk (keys named
// by the token itself), b64 (unencoded payloads).
var refusedHeaders = []string{"crit", "jku", "x5u", "x5c", "jwk", "b64"}

var b64 = base64.RawURLEncoding.Strict()

// verifyJWS checks a compact JWS of type typ signed by a key of src and
// returns its payload. Failures are *TokenError, or wrap ErrKeysUnavailable.
func verifyJWS(ctx context.Context, src KeySource, raw, typ string, maxBytes int) ([]byte, error) {
	if raw == "" {
		return nil, tokenErr(CodeTokenMissing, "no token")
	}
	if len(raw) > maxBytes {
		return nil, tokenErr(CodeTokenTooLarge, "token is %d bytes; at most %d are accepted", len(raw), maxBytes)
	}
	h, rest, ok1 := strings.Cut(raw, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || strings.Contains(s, ".") {
		return nil, tokenErr(CodeMalformed, "not a compact JWS (three base64url segments)")
	}
	hdrJSON, err := b64.DecodeString(h)
	if err != nil {
		return nil, tokenErr(CodeMalformed, "protected header is not base64url")
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return nil, tokenErr(CodeMalformed, "payload is not base64url")
	}
	var hdr map[string]json.RawMessage
	if json.Unmarshal(hdrJSON, &hdr) != nil || hdr == nil {
		return nil, tokenErr(CodeMalformed, "protected header is not a JSON object")
	}
	var algName, gotTyp, kid string
	_ = json.Unmarshal(hdr["alg"], &algName)
	var alg jwa.SignatureAlgorithm
	switch algName {
	case string(jwa.ES256):
		alg = jwa.ES256
	case string(jwa.EdDSA):
		alg = jwa.EdDSA
	default:
		return nil, tokenErr(CodeAlgNotAllowed, "alg %q is not allowed; ES256 or EdDSA is required", clip(algName))
	}
	for _, name := range refusedHeaders {
		if _, present := hdr[name]; present {
			return nil, tokenErr(CodeHeaderNotAllowed, "header parameter %q is not accepted", name)
		}
	}
	if json.Unmarshal(hdr["typ"], &gotTyp) != nil || !strings.EqualFold(gotTyp, typ) {
		return nil, tokenErr(CodeWrongType, "typ must be %s", typ)
	}
	if json.Unmarshal(hdr["kid"], &kid) != nil || kid == "" {
		return nil, tokenErr(CodeUnknownKID, "kid is required")
	}
	key, err := src.Key(ctx, kid)
	if errors.Is(err, errUnknownKey) {
		return nil, tokenErr(CodeUnknownKID, "kid %q is not a key of the gateway", clip(kid))
	}
	if err != nil {
		return nil, err
	}
	if err := identity.KeyFitsAlg(key, alg); err != nil {
		return nil, tokenErr(CodeAlgNotAllowed, "key %q cannot verify %s: %v", clip(kid), alg, err)
	}
	verified, err := jws.Verify([]byte(raw), jws.WithCompact(), jws.WithKey(alg, key))
	if err != nil || !bytes.Equal(verified, payload) {
		return nil, tokenErr(CodeBadSignature, "signature does not verify with the gateway's key %q", clip(kid))
	}
	return payload, nil
}

// NewID returns 128 random bits in hex: token and notification ids.
func NewID() string {
	return nhs.FreeOf(func() string {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	})
}
