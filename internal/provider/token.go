package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/nhs"
)

// TokenType is the typ of a decision token. It differs from every other
// JWT the gateway signs (NotificationType), so that no other signed object
// can be presented to a provider as a decision.
const TokenType = "trustgate-decision+jwt"

// Limits of a decision token.
const (
	// MaxTokenLifetime bounds exp − iat.
	MaxTokenLifetime = 60 * time.Second
	// DefaultSkew is the clock difference tolerated between gateway and
	// provider on exp and iat.
	DefaultSkew = 5 * time.Second
	// MaxTokenBytes bounds a decision token.
	MaxTokenBytes = 16 << 10
	maxIDLen      = 128
)

// Requester is who asked: the requesting agency, practitioner and role.
type Requester struct {
	Partner      string `json:"partner"`
	Practitioner string `json:"practitioner"`
	Role         string `json:"role"`
}

// ProtocolRef names the protocol rule a share was allowed under.
type ProtocolRef struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Rule    string `json:"rule"`
}

// TokenClaims is the payload of a decision token.
type TokenClaims struct {
	Issuer   string `json:"iss"` // the gateway id
	Audience string `json:"aud"` // the provider's partner id
	Subject  string `json:"sub"` // the child's NHS number
	IssuedAt int64  `json:"iat"` // seconds since the epoch
	Expiry   int64  `json:"exp"` // at most MaxTokenLifetime after iat
	ID       string `json:"jti"` // single use

	RequestID  string              `json:"request_id"` // the gateway request that decided
	Requester  Requester           `json:"requester"`
	Purpose    string              `json:"purpose"`
	Categories []string            `json:"categories"`       // the only categories allowed
	Fields     map[string][]string `json:"fields,omitempty"` // per category, the only fields allowed
	Protocol   ProtocolRef         `json:"protocol"`
}

// SignToken checks the claims' form and signs them with s as a compact JWS
// of type TokenType.
func SignToken(ctx context.Context, s Signer, c *TokenClaims) (string, error) {
	if err := c.check(); err != nil {
		return "", fmt.Errorf("provider: decision token: %w", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("provider: decision token: %w", err)
	}
	return s.Sign(ctx, payload, TokenType)
}

// check validates everything about the claims but the times against a
// clock and the audience against a provider.
func (c *TokenClaims) check() error {
	switch {
	case c.Issuer == "":
		return tokenErr(CodeMissingClaim, "claim iss is required")
	case c.Audience == "":
		return tokenErr(CodeMissingClaim, "claim aud is required (one partner id)")
	case c.IssuedAt <= 0 || c.Expiry <= 0:
		return tokenErr(CodeMissingClaim, "claims iat and exp are required")
	case time.Duration(c.Expiry-c.IssuedAt)*time.Second > MaxTokenLifetime || c.Expiry < c.IssuedAt:
		return tokenErr(CodeLifetimeTooLong, "exp − iat must be between 0 and %s", MaxTokenLifetime)
	case utf8.RuneCountInString(c.ID) < 1 || utf8.RuneCountInString(c.ID) > maxIDLen:
		return tokenErr(CodeMissingClaim, "claim jti is required (1 to %d characters)", maxIDLen)
	case c.RequestID == "" || c.Requester.Partner == "" || c.Requester.Practitioner == "" || c.Purpose == "" || c.Protocol.ID == "":
		return tokenErr(CodeMissingClaim, "claims request_id, requester, purpose and protocol are required")
	case len(c.Categories) == 0:
		return tokenErr(CodeMissingClaim, "claim categories is required (at least one)")
	}
	if d, err := nhs.Normalize(c.Subject); err != nil || d != c.Subject {
		return tokenErr(CodeMissingClaim, "claim sub must be a ten-digit NHS number")
	}
	for _, cat := range c.Categories {
		if !namePattern.MatchString(cat) {
			return tokenErr(CodeMalformed, "category %q is not an identifier", clip(cat))
		}
	}
	for cat, ff := range c.Fields {
		if !contains(c.Categories, cat) {
			return tokenErr(CodeMalformed, "fields for category %q that is not allowed", clip(cat))
		}
		if len(ff) == 0 {
			return tokenErr(CodeMalformed, "fields for category %q lists no field", cat)
		}
	}
	return nil
}

// VerifierConfig configures a TokenVerifier.
type VerifierConfig struct {
	// Partner is this provider's partner id: the only audience accepted.
	Partner string
	// Issuer is the gateway id: the only issuer accepted. Default "trustgate".
	Issuer string
	// Keys yields the gateway's public keys.
	Keys KeySource
	// Replay remembers used jti until they expire. Default: an in-memory
	// cache of 100,000 ids (a restarted provider forgets; a token lives at
	// most a minute).
	Replay identity.ReplayCache
	// Skew is tolerated on exp and iat. Default DefaultSkew.
	Skew time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// TokenVerifier checks decision tokens. Safe for concurrent use.
type TokenVerifier struct{ c VerifierConfig }

// NewTokenVerifier returns a verifier; it panics without Partner or Keys
// (a wiring mistake).
func NewTokenVerifier(c VerifierConfig) *TokenVerifier {
	if c.Partner == "" || c.Keys == nil {
		panic("provider: NewTokenVerifier needs a partner id and a key source")
	}
	if c.Issuer == "" {
		c.Issuer = "trustgate"
	}
	if c.Skew <= 0 {
		c.Skew = DefaultSkew
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Replay == nil {
		c.Replay = identity.NewMemoryReplayCache(c.Now, 100_000)
	}
	return &TokenVerifier{c: c}
}

// Verify checks raw in order — form, header, signature, issuer, audience,
// expiry, lifetime, claims — and last claims its jti, so a token is used
// once. Failures are *TokenError (errors.Is ErrInvalidToken) or wrap
// ErrKeysUnavailable.
func (v *TokenVerifier) Verify(ctx context.Context, raw string) (*TokenClaims, error) {
	payload, err := verifyJWS(ctx, v.c.Keys, raw, TokenType, MaxTokenBytes)
	if err != nil {
		return nil, err
	}
	var c TokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, tokenErr(CodeMalformed, "payload is not a decision token's claims")
	}
	if c.Issuer != v.c.Issuer {
		return nil, tokenErr(CodeWrongIssuer, "iss must be %q", v.c.Issuer)
	}
	if c.Audience != v.c.Partner {
		return nil, tokenErr(CodeWrongAudience, "aud must be %q, this provider", v.c.Partner)
	}
	now := v.c.Now()
	if c.Expiry <= 0 || c.IssuedAt <= 0 {
		return nil, tokenErr(CodeMissingClaim, "claims iat and exp are required")
	}
	exp, iat := time.Unix(c.Expiry, 0), time.Unix(c.IssuedAt, 0)
	if now.After(exp.Add(v.c.Skew)) {
		return nil, tokenErr(CodeExpired, "token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if iat.After(now.Add(v.c.Skew)) {
		return nil, tokenErr(CodeNotYetValid, "token issued in the future (iat %s)", iat.UTC().Format(time.RFC3339))
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if err := v.c.Replay.Claim(c.ID, exp.Add(v.c.Skew)); err != nil {
		if errors.Is(err, identity.ErrReplayed) {
			return nil, tokenErr(CodeReplayed, "token %q has already been used", clip(c.ID))
		}
		return nil, tokenErr(CodeReplayCacheFull, "token ids cannot be remembered right now; refused")
	}
	return &c, nil
}

// The failure codes of token (and notification) verification; stable.
const (
	CodeTokenMissing     = "token_missing"
	CodeTokenTooLarge    = "token_too_large"
	CodeMalformed        = "malformed"
	CodeAlgNotAllowed    = "alg_not_allowed"
	CodeHeaderNotAllowed = "header_not_allowed"
	CodeWrongType        = "wrong_type"
	CodeUnknownKID       = "unknown_kid"
	CodeBadSignature     = "bad_signature"
	CodeWrongIssuer      = "wrong_issuer"
	CodeWrongAudience    = "wrong_audience"
	CodeMissingClaim     = "missing_claim"
	CodeExpired          = "expired"
	CodeNotYetValid      = "not_yet_valid"
	CodeLifetimeTooLong  = "lifetime_too_long"
	CodeReplayed         = "replayed"
	CodeReplayCacheFull  = "replay_cache_full" // the provider cannot remember more ids: fail closed
)

// ErrInvalidToken classifies every refused token: each *TokenError
// unwraps to it.
var ErrInvalidToken = errors.New("invalid token")

// TokenError says why a token was refused. Message never holds the token.
type TokenError struct {
	Code    string
	Message string
}

func (e *TokenError) Error() string { return "token refused: " + e.Code + ": " + e.Message }

// Unwrap lets errors.Is(err, ErrInvalidToken) match.
func (e *TokenError) Unwrap() error { return ErrInvalidToken }

func tokenErr(code, format string, a ...any) *TokenError {
	return &TokenError{Code: code, Message: fmt.Sprintf(format, a...)}
}
