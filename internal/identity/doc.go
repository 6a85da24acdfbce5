// Package identity owns the authentication of partner agencies: it verifies
// the bearer JWT that every /v1 call carries, signed by the calling agency's
// key from the partner registry, and it remembers which tokens have been
// used so that none is accepted twice. It also mints tokens for tests, the
// demo and developers, and extracts the bearer token from a request.
//
// # The promise
//
// Verifier.Verify accepts a token only if every rule below holds, checked in
// this order; the first that fails decides the *AuthError's Code:
//
//  1. The token is not empty (token_missing) and is at most
//     Config.MaxTokenBytes long (token_too_large); the length is checked
//     before anything is decoded.
//  2. It is one compact JWS, so exactly one signature: three base64url
//     segments, a JSON object as protected header, a JSON object as payload
//     (malformed). The JSON serializations are refused.
//  3. The protected header:
//     - alg is ES256 or EdDSA, a closed list (alg_not_allowed);
//     - none of crit, jku, x5u, x5c, jwk, b64 is present (header_not_allowed);
//     - typ, if present, is JWT in any case (malformed);
//     - kid is present (unknown_kid).
//  4. The claimed iss, read from the not yet verified payload, names a
//     partner of the Trust (unknown_issuer; a missing iss is missing_claim);
//     kid names a key in that partner's own key set (unknown_kid: another
//     partner's kid does not do); the key fits alg (ES256: EC P-256, EdDSA:
//     OKP Ed25519) and, if the key states an alg, it is the header's
//     (alg_not_allowed).
//  5. The signature verifies with exactly that key and that algorithm
//     (bad_signature).
//  6. The claims, with skew = Config.Skew and now = Config.Now():
//     - aud is exactly Config.Audience, as a string or a one-element array
//     (wrong_audience; a missing aud too);
//     - exp is present (missing_claim) and not before now-skew (expired);
//     - iat is present (missing_claim) and not after now+skew (not_yet_valid);
//     - nbf, if present, is not after now+skew (not_yet_valid);
//     - exp-iat is at most Config.MaxLifetime (lifetime_too_long);
//     - jti and sub are present, 1 to 128 characters, and role is a
//     non-empty string (missing_claim, naming the claim);
//     - role is in the Trust's role vocabulary (unknown_role), and one the
//     issuing agency may assert: the registry's held_by (role_not_held).
//  7. Last, the replay cache accepts (iss, jti) until exp+skew: a second use
//     is replayed, a full cache is replay_cache_full (fail closed). Only a
//     token that passed every other rule is claimed, so a refused token is
//     not used up.
//
// Claims whose JSON type does not fit (say "exp": "soon" or "sub": 7) make
// the claims set invalid: malformed, at step 4. Every *AuthError unwraps to
// ErrUnauthenticated; from step 4 on it also carries the claimed iss, sub
// and jti, and whether the signature had verified, so the audit log can say
// who claimed to ask. Messages never contain the token or key material.
// Errors that are not *AuthError are internal failures; the request is
// refused all the same.
//
// # Why these headers are refused
//
// The Trust's registry is the only source of keys, and the header is
// attacker-controlled until the signature verifies, so no header may choose
// a key, an algorithm family, or what the signature covers:
//
//   - alg outside {ES256, EdDSA}: "none" would accept an unsigned token;
//     HS256 would let a caller use the agency's public key as an HMAC
//     secret (algorithm confusion); RS256, ES384 and the rest are not keys
//     the Trust issues. A closed list means the header can only pick among
//     the algorithms we chose, and the key must fit the one picked.
//   - jku and x5u: URLs to fetch a key from. Honouring them would let the
//     caller supply its own key, and make the gateway fetch from addresses
//     the caller chooses (server-side request forgery).
//   - jwk and x5c: a key or certificate chain embedded in the token. Trusting
//     it lets anyone sign with a key of their own (CVE-2018-0114 and its
//     kin); the gateway does no certificate path validation and wants none.
//   - crit: names extensions the recipient must understand or refuse
//     (RFC 7515 §4.1.11). We implement none, so any crit is refused.
//   - b64: RFC 7797's unencoded payload changes which bytes the signature
//     covers. It is only legitimate when listed in crit (refused above), and
//     the JOSE library honours it even without crit, so it is refused
//     outright to keep the signed bytes and the claims read the same.
//   - typ other than JWT: explicit typing (RFC 8725 §3.11) keeps a JWS made
//     for another purpose from being taken as an access token; a missing typ
//     is accepted because many agency libraries do not set it.
//
// # Hot reload and replay
//
// NewVerifier takes a func() Directory rather than a Directory: the app
// keeps its current *registry.Registry behind an atomic pointer and passes a
// function that loads it. Verify calls it once per token, so a reload takes
// effect at the next request and no verification mixes two revisions.
//
// MemoryReplayCache is bounded and in memory. The gateway makes "used"
// survive restarts by Seed-ing it at start-up from the audit log, which
// records the issuer and jti of every token whose claim succeeded: the key
// is ReplayKey(iss, jti) and the expiry the token's exp+skew or, if the
// entry does not keep it, the entry's time plus Config.ReplayHorizon().
package identity
