// Package vault is the keys.Store whose keys live in HashiCorp Vault's
// transit secrets engine: the private signing key and the pseudonym key
// never leave Vault; the gateway only asks it to sign and to HMAC.
//
// # Signing
//
// The signing key is a transit key of type ecdsa-p256 (JWS alg ES256) or
// ed25519 (EdDSA); the alg follows the key type, from a closed list. The
// store builds the JWS signing input (protected header with alg, typ and
// kid "KEY:VERSION"), pins key_version to the version named in the kid,
// and asks transit to sign it with marshaling_algorithm=jws, so that the
// signature comes back as base64url r‖s, ready for the compact JWS.
//
// PublicKeys is every version from max(min_decryption_version,
// min_available_version) to latest_version, each a JWK with its kid.
// After `vault write -f transit/keys/KEY/rotate` the store picks the new
// version up at its next check (CheckInterval, or Refresh): new signatures
// use it, and everything signed before still verifies against the older
// JWKs, which stay published until an operator raises
// min_decryption_version past them.
//
// # Pseudonyms, and why the HMAC key version is pinned
//
// A pseudonym is HMAC-SHA256 of the NHS number under the pseudonym key (a
// transit key of type hmac), hex-encoded: the same 64 lowercase hex
// characters as keys.Local. Transit answers "vault:vN:BASE64"; the store
// decodes and hex-encodes the MAC. Every HMAC is asked for at one pinned
// version (PseudonymKeyVersion, default 1), never "latest": an auditor's
// query for a child must find entries written years ago, so a pseudonym
// may never change, and rotating the key (by mistake, or by a blanket
// rotation policy) must not change it either. An operator must therefore
// never make the pinned version unusable: never raise the key's
// min_encryption_version past it, never trim it (`transit/keys/KEY/trim`),
// never delete the key, and never change pseudonym_key_version in the
// configuration of a gateway whose audit log already holds pseudonyms. The
// store checks the pinned version at start and at every check, and fails
// closed, naming the cause, if it has become unusable.
//
// # Cost
//
// Concurrent sign and HMAC requests are gathered for up to BatchWindow
// (or BatchMax items) into one transit call with batch_input; pseudonyms
// are cached in a bounded LRU (CacheSize entries) while Vault is healthy.
// The cache lives in memory only (it holds the NHS numbers the requests
// carried anyway) and is emptied at the first failure of a call to Vault.
//
// # Failing closed and recovering
//
// Every call to Vault has a deadline (Timeout) and the client does not
// retry on its own. Every failure (sealed, stopped, unreachable, hanging,
// token revoked, permission denied, a key misconfigured) is an *Error
// wrapping keys.ErrUnavailable, which the server answers with 503; the
// first failure empties the pseudonym cache so that nothing is served from
// it until Vault answers again, and Ready fails. A background check
// (CheckInterval) and every request probe Vault again; the token is
// renewed by the Vault API's lifetime watcher, and when it is gone
// (revoked, expired, Vault's storage lost) the store logs in again with
// AppRole (the secret id re-read from its file) or the token file, backing
// off to at most 4 s between attempts, so the store recovers by itself
// within seconds of Vault coming back.
package vault
