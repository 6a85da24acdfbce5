package identity

import (
	"errors"
	"unicode/utf8"
)

// ErrUnauthenticated classifies every authentication failure: every
// *AuthError unwraps to it. The server maps it to 401 exactly once.
var ErrUnauthenticated = errors.New("unauthenticated")

// The failure codes of Verify and ExtractBearer. They are stable: audit
// entries, metrics and API error bodies carry them.
const (
	CodeTokenMissing     = "token_missing"      // no bearer token
	CodeTokenTooLarge    = "token_too_large"    // longer than Config.MaxTokenBytes
	CodeMalformed        = "malformed"          // not one compact JWS carrying a JSON claims set; bad typ
	CodeAlgNotAllowed    = "alg_not_allowed"    // alg outside {ES256, EdDSA}, or not the key's algorithm
	CodeHeaderNotAllowed = "header_not_allowed" // crit, jku, x5u, x5c, jwk or b64 in the header
	CodeUnknownKID       = "unknown_kid"        // kid missing or not a key of the issuer
	CodeUnknownIssuer    = "unknown_issuer"     // iss is not a partner of the Trust
	CodeBadSignature     = "bad_signature"      // signature does not verify with the issuer's key
	CodeWrongAudience    = "wrong_audience"     // aud is not exactly Config.Audience
	CodeMissingClaim     = "missing_claim"      // a required claim is absent or not of the required form
	CodeExpired          = "expired"            // exp is in the past (beyond the skew)
	CodeNotYetValid      = "not_yet_valid"      // iat or nbf is in the future (beyond the skew)
	CodeLifetimeTooLong  = "lifetime_too_long"  // exp - iat exceeds Config.MaxLifetime
	CodeUnknownRole      = "unknown_role"       // role is not in the Trust's vocabulary
	CodeRoleNotHeld      = "role_not_held"      // the issuer's agency may not assert this role (registry held_by)
	CodeNotAppointed     = "not_appointed"      // an appointed role without an appointment in force (internal/authz)
	CodeReplayed         = "replayed"           // this (iss, jti) has been used before
	CodeReplayCacheFull  = "replay_cache_full"  // the replay cache is full: fail closed
)

// AuthError is an authentication failure. Code is one of the Code*
// constants; Message is for humans and never contains the token or key
// material (values taken from the token are quoted and clipped).
//
// Issuer, Subject and JTI are the identity the token claimed, set once the
// payload could be read (empty for failures before that). They are bounded
// in length but otherwise exactly what the caller sent. Verified reports
// whether the signature had been verified with the issuer's registered key
// before the failure, i.e. whether Issuer, Subject and JTI are authentic or
// merely claimed.
type AuthError struct {
	Code    string
	Message string

	Issuer   string
	Subject  string
	JTI      string
	Verified bool

	cause error // ErrReplayed or ErrReplayCacheFull, for errors.Is
}

func (e *AuthError) Error() string { return "unauthenticated: " + e.Code + ": " + e.Message }

// Unwrap returns ErrUnauthenticated.
func (e *AuthError) Unwrap() error { return ErrUnauthenticated }

// Is lets errors.Is see the replay cache's classification through an
// AuthError, so errors.Is(err, ErrReplayCacheFull) holds for a
// replay_cache_full failure (a server may answer 503 rather than 401).
func (e *AuthError) Is(target error) bool {
	return e.cause != nil && errors.Is(e.cause, target)
}

// maxClaimedLen bounds the claimed identity carried on an AuthError.
const maxClaimedLen = 256

// clip shortens s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
