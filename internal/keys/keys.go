package keys

import (
	"context"
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

// Store is everything the gateway needs from its key store.
type Store interface {
	Pseudonymizer
	Signer
	// Ready reports whether the store can answer now.
	Ready(ctx context.Context) error
	Close() error
}
