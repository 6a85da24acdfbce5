package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/childrens-trust/trustgate/internal/registry"
)

// Defaults for Config's zero fields.
const (
	DefaultAudience      = "trustgate"
	DefaultMaxLifetime   = 5 * time.Minute
	DefaultSkew          = 60 * time.Second
	DefaultMaxTokenBytes = 8192
)

// maxIDLen bounds jti and sub, in characters (runes).
const maxIDLen = 128

// Config tunes a Verifier. A zero or negative field takes its default.
type Config struct {
	// Audience is the only accepted aud value. Default "trustgate".
	Audience string
	// MaxLifetime bounds exp - iat. Default 5m.
	MaxLifetime time.Duration
	// Skew is the clock difference tolerated on exp, iat and nbf. Default 60s.
	Skew time.Duration
	// MaxTokenBytes bounds the raw token; longer tokens are refused before
	// any decoding. Default 8192.
	MaxTokenBytes int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.MaxLifetime <= 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.Skew <= 0 {
		c.Skew = DefaultSkew
	}
	if c.MaxTokenBytes <= 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ReplayHorizon bounds how long after Verify accepted a token its replay key
// can still need remembering: an accepted token has iat <= now+Skew and
// exp <= iat+MaxLifetime, and is remembered until exp+Skew, so until at most
// MaxLifetime + 2*Skew after it was accepted. The gateway seeds the replay
// cache at start-up with Seed(ReplayKey(iss, jti), at.Add(ReplayHorizon()))
// for each audit entry recorded at time at, when the entry lacks the exp.
func (c Config) ReplayHorizon() time.Duration {
	c = c.withDefaults()
	return c.MaxLifetime + 2*c.Skew
}

// Directory is what the verifier needs from the partner registry.
type Directory interface {
	// Partner returns the partner with the given id.
	Partner(id string) (*registry.Partner, bool)
	// HasRole reports whether role is in the Trust's role vocabulary.
	HasRole(role string) bool
	// MayHold reports whether partner may assert role for its
	// practitioners (the registry's held_by).
	MayHold(partner, role string) bool
}

var _ Directory = (*registry.Registry)(nil)

// StaticDirectory returns a directory source that always yields d, for
// wiring without hot reload (tests, the demo, one-shot commands).
func StaticDirectory(d Directory) func() Directory {
	return func() Directory { return d }
}

// Claims is the verified identity of a caller.
type Claims struct {
	Partner      string // iss: the calling agency's partner id
	Practitioner string // sub: the practitioner's id within that agency
	Role         string // role: the practitioner's role, in the Trust's vocabulary
	JTI          string // jti: the token's unique id
	KeyID        string // kid: the partner key that signed the token
	IssuedAt     time.Time
	Expiry       time.Time
}

// Verifier verifies agency bearer tokens. Safe for concurrent use.
type Verifier struct {
	cfg     Config
	dir     func() Directory
	replay  ReplayCache
	rawKeys rawKeyCache
}

// NewVerifier returns a Verifier. dir is called once at the start of each
// Verify and that Directory is used for the whole verification, so a
// registry swapped in by a hot reload takes effect at the next call and a
// verification never mixes two revisions; it must return a non-nil
// Directory. replay remembers used tokens. NewVerifier panics if dir or
// replay is nil: that is a wiring mistake, not a runtime condition.
func NewVerifier(cfg Config, dir func() Directory, replay ReplayCache) *Verifier {
	if dir == nil || replay == nil {
		panic("identity: NewVerifier needs a directory source and a replay cache")
	}
	return &Verifier{cfg: cfg.withDefaults(), dir: dir, replay: replay}
}

// refusedHeaders are the protected header parameters whose presence refuses
// a token; doc.go explains each.
var refusedHeaders = []string{"crit", "jku", "x5u", "x5c", "jwk", "b64"}

var b64 = base64.RawURLEncoding.Strict()

// Verify checks raw, a compact JWS, against the rules in the package
// documentation, in order, failing at the first. Authentication failures
// are *AuthError (errors.Is(err, ErrUnauthenticated)); any other error is
// an internal failure (no directory, a replay cache that failed) and the
// request must be refused all the same. The token's (iss, jti) is claimed
// in the replay cache only when every other rule has passed.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	fail := func(code, format string, args ...any) *AuthError {
		return &AuthError{Code: code, Message: fmt.Sprintf(format, args...)}
	}
	if raw == "" {
		return nil, fail(CodeTokenMissing, "no bearer token")
	}
	if len(raw) > v.cfg.MaxTokenBytes {
		return nil, fail(CodeTokenTooLarge, "token is %d bytes; at most %d are accepted", len(raw), v.cfg.MaxTokenBytes)
	}

	// A compact JWS: three base64url segments, so exactly one signature.
	hSeg, pSeg, sSeg, ok := splitCompact(raw)
	if !ok {
		if strings.HasPrefix(strings.TrimSpace(raw), "{") {
			return nil, fail(CodeMalformed, "JWS JSON serialization is not accepted; send one compact JWS")
		}
		return nil, fail(CodeMalformed, "not a compact JWS (three base64url segments separated by '.')")
	}
	hdrJSON, err := b64.DecodeString(hSeg)
	if err != nil {
		return nil, fail(CodeMalformed, "protected header is not base64url")
	}
	payload, err := b64.DecodeString(pSeg)
	if err != nil {
		return nil, fail(CodeMalformed, "payload is not base64url")
	}
	sig, err := b64.DecodeString(sSeg)
	if err != nil {
		return nil, fail(CodeMalformed, "signature is not base64url")
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil || hdr == nil {
		return nil, fail(CodeMalformed, "protected header is not a JSON object")
	}

	// The protected header.
	var algName string
	if json.Unmarshal(hdr["alg"], &algName) != nil {
		return nil, fail(CodeAlgNotAllowed, "alg is missing or not a string; ES256 or EdDSA is required")
	}
	var alg jwa.SignatureAlgorithm
	switch algName {
	case string(jwa.ES256):
		alg = jwa.ES256
	case string(jwa.EdDSA):
		alg = jwa.EdDSA
	default:
		return nil, fail(CodeAlgNotAllowed, "alg %q is not allowed; ES256 or EdDSA is required", clip(algName, 32))
	}
	for _, name := range refusedHeaders {
		if _, present := hdr[name]; present {
			return nil, fail(CodeHeaderNotAllowed, "header parameter %q is not accepted", name)
		}
	}
	if rawTyp, present := hdr["typ"]; present {
		var typ string
		if json.Unmarshal(rawTyp, &typ) != nil || !strings.EqualFold(typ, "JWT") {
			return nil, fail(CodeMalformed, "typ must be JWT")
		}
	}
	rawKID, present := hdr["kid"]
	if !present {
		return nil, fail(CodeUnknownKID, "kid is required")
	}
	var kid string
	if json.Unmarshal(rawKID, &kid) != nil {
		return nil, fail(CodeMalformed, "kid is not a string")
	}
	if kid == "" {
		return nil, fail(CodeUnknownKID, "kid is required")
	}

	// The claimed issuer, from the still unverified payload, chooses the key.
	if !bytes.HasPrefix(bytes.TrimLeft(payload, " \t\r\n"), []byte("{")) {
		return nil, fail(CodeMalformed, "payload is not a JSON claims set")
	}
	tok, err := parseClaims(payload)
	if err != nil {
		return nil, fail(CodeMalformed, "payload is not a valid JWT claims set: %v", err)
	}
	claimed := &AuthError{
		Issuer:  clip(tok.iss, maxClaimedLen),
		Subject: clip(tok.sub, maxClaimedLen),
		JTI:     clip(tok.jti, maxClaimedLen),
	}
	failClaimed := func(code, format string, args ...any) *AuthError {
		e := *claimed
		e.Code, e.Message = code, fmt.Sprintf(format, args...)
		return &e
	}
	iss := tok.iss
	if iss == "" {
		return nil, failClaimed(CodeMissingClaim, "claim iss is required")
	}
	dir, _ := ctx.Value(directoryKey{}).(Directory)
	if dir == nil {
		dir = v.dir()
	}
	if dir == nil {
		return nil, errors.New("identity: no partner directory is loaded")
	}
	partner, ok := dir.Partner(iss)
	if !ok {
		return nil, failClaimed(CodeUnknownIssuer, "issuer %q is not a partner of the Trust", clip(iss, 64))
	}
	var key jwk.Key
	if set := partner.Keys(); set != nil {
		key, ok = set.LookupKeyID(kid)
	}
	if key == nil || !ok {
		return nil, failClaimed(CodeUnknownKID, "kid %q is not a key of partner %q", clip(kid, 64), partner.ID)
	}
	if err := KeyFitsAlg(key, alg); err != nil {
		return nil, failClaimed(CodeAlgNotAllowed, "key %q of partner %q cannot verify %s: %v", kid, partner.ID, alg, err)
	}

	// The signature, with exactly that key and algorithm, over the
	// signing input as received (RFC 7515 §5.2: header '.' payload). The
	// segments are already split and decoded, so jwx's verifier for alg is
	// given them directly rather than re-parsing the token.
	pub, err := v.rawKeys.get(key)
	if err != nil {
		return nil, failClaimed(CodeAlgNotAllowed, "key %q of partner %q is not usable: %v", kid, partner.ID, err)
	}
	if err := verifiers[alg].Verify([]byte(raw[:len(hSeg)+1+len(pSeg)]), sig, pub); err != nil {
		return nil, failClaimed(CodeBadSignature, "signature does not verify with key %q of partner %q", kid, partner.ID)
	}
	claimed.Verified = true

	// The claims.
	if len(tok.aud) != 1 || tok.aud[0] != v.cfg.Audience {
		return nil, failClaimed(CodeWrongAudience, "aud must be exactly %q", v.cfg.Audience)
	}
	now := v.cfg.Now()
	exp, ok := tok.exp.get()
	if !ok {
		return nil, failClaimed(CodeMissingClaim, "claim exp is required")
	}
	if exp.Before(now.Add(-v.cfg.Skew)) {
		return nil, failClaimed(CodeExpired, "token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	iat, ok := tok.iat.get()
	if !ok {
		return nil, failClaimed(CodeMissingClaim, "claim iat is required")
	}
	if iat.After(now.Add(v.cfg.Skew)) {
		return nil, failClaimed(CodeNotYetValid, "token issued in the future (iat %s)", iat.UTC().Format(time.RFC3339))
	}
	if nbf, ok := tok.nbf.get(); ok && nbf.After(now.Add(v.cfg.Skew)) {
		return nil, failClaimed(CodeNotYetValid, "token not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	if life := exp.Sub(iat); life > v.cfg.MaxLifetime {
		return nil, failClaimed(CodeLifetimeTooLong, "token lifetime %s exceeds %s", life, v.cfg.MaxLifetime)
	}
	jti := tok.jti
	if n := utf8.RuneCountInString(jti); n < 1 || n > maxIDLen {
		return nil, failClaimed(CodeMissingClaim, "claim jti is required (1 to %d characters)", maxIDLen)
	}
	sub := tok.sub
	if n := utf8.RuneCountInString(sub); n < 1 || n > maxIDLen {
		return nil, failClaimed(CodeMissingClaim, "claim sub is required (1 to %d characters)", maxIDLen)
	}
	role := tok.role
	if role == "" {
		return nil, failClaimed(CodeMissingClaim, "claim role is required (a string)")
	}
	if !dir.HasRole(role) {
		return nil, failClaimed(CodeUnknownRole, "role %q is not in the Trust's vocabulary", clip(role, 64))
	}
	if !dir.MayHold(partner.ID, role) {
		return nil, failClaimed(CodeRoleNotHeld, "role %q is not one that partner %q may assert (the registry's held_by)", role, partner.ID)
	}

	// Last: a token is used once.
	if err := v.replay.Claim(ReplayKey(iss, jti), exp.Add(v.cfg.Skew)); err != nil {
		switch {
		case errors.Is(err, ErrReplayed):
			e := failClaimed(CodeReplayed, "token %q of partner %q has already been used", clip(jti, 64), iss)
			e.cause = err
			return nil, e
		case errors.Is(err, ErrReplayCacheFull):
			e := failClaimed(CodeReplayCacheFull, "replay cache is full; refusing until entries expire")
			e.cause = err
			return nil, e
		default:
			return nil, fmt.Errorf("identity: replay cache: %w", err)
		}
	}
	return &Claims{
		Partner:      iss,
		Practitioner: sub,
		Role:         role,
		JTI:          jti,
		KeyID:        kid,
		IssuedAt:     iat,
		Expiry:       exp,
	}, nil
}

// splitCompact splits a compact JWS into its three segments. Empty header
// or payload segments are refused; an empty signature is left for the alg
// rule to refuse (that is what an unsecured "alg":"none" token looks like).
func splitCompact(raw string) (h, p, s string, ok bool) {
	h, rest, ok1 := strings.Cut(raw, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || strings.Contains(s, ".") {
		return "", "", "", false
	}
	return h, p, s, true
}

// KeyFitsAlg checks that a public key is of the type alg needs (ES256: EC
// P-256; EdDSA: OKP Ed25519; any other alg is refused) and, when the key
// names its algorithm, that it names alg. Every verifier of the project's
// tokens (agency tokens here, decision tokens in providers) uses it.
func KeyFitsAlg(key jwk.Key, alg jwa.SignatureAlgorithm) error {
	switch alg {
	case jwa.ES256:
		k, ok := key.(jwk.ECDSAPublicKey)
		if !ok || k.Crv() != jwa.P256 {
			return errors.New("ES256 needs an EC P-256 public key")
		}
	case jwa.EdDSA:
		k, ok := key.(jwk.OKPPublicKey)
		if !ok || k.Crv() != jwa.Ed25519 {
			return errors.New("EdDSA needs an OKP Ed25519 public key")
		}
	default:
		return fmt.Errorf("algorithm %s is not allowed", alg)
	}
	if ka := key.Algorithm().String(); ka != "" && ka != alg.String() {
		return fmt.Errorf("the key is for %s", ka)
	}
	return nil
}

type directoryKey struct{}

// WithDirectory returns a context under which Verify uses d instead of the
// verifier's directory source, so that a request is authenticated against
// the very revision it is then decided under (no straddling a reload).
func WithDirectory(ctx context.Context, d Directory) context.Context {
	return context.WithValue(ctx, directoryKey{}, d)
}
