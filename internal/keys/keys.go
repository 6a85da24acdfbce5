package keys

import (
	"context"
	"crypto/ed25519"
	"errors"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// ErrUnavailable classifies every failure of the backing key store (sealed,
// unreachable, permission denied, timed out). Callers map it to 503.
var ErrUnavailable = errors.New("keys unavailable")

// Pseudonymizer turns a subject identifier (an NHS number) into a stable,
// keyed pseudonym: lowercase hex of HMAC-SHA256 under a key the store holds.
// Without the key the pseudonym cannot be reversed by trying every number.
type Pseudonymizer interface {
	Pseudonym(ctx context.Context, subject string) (string, error)
}

// Signer signs payloads with the gateway's signing key as compact JWS.
type Signer interface {
	// Sign returns a compact JWS over payload whose protected header
	// carries alg, kid and the given typ. Safe for concurrent use.
	Sign(ctx context.Context, payload []byte, typ string) (string, error)
	// PublicKeys returns every public key that may still verify the
	// gateway's signatures (the current one and older versions).
	PublicKeys(ctx context.Context) (jwk.Set, error)
}

// NoteSigner signs the checkpoint notes witnesses co-sign (C2SP signed
// notes, docs/audit-format.md) with the gateway's note key: an Ed25519
// key of its own, beside the JWS signing key, because the signed-note
// ecosystem verifies Ed25519. Ed25519 is deterministic: the same note
// always gets the same signature.
type NoteSigner interface {
	// NoteKey is the public half of the key SignNote signs with now.
	NoteKey(ctx context.Context) (ed25519.PublicKey, error)
	// SignNote returns the 64-byte Ed25519 signature of msg. Safe for
	// concurrent use.
	SignNote(ctx context.Context, msg []byte) ([]byte, error)
}

// Store is everything the gateway needs from its key store.
type Store interface {
	Pseudonymizer
	Signer
	NoteSigner
	// Ready reports whether the store can answer now.
	Ready(ctx context.Context) error
	Close() error
}
