// Package keys owns the gateway's own secrets: the key that pseudonymises
// every child's NHS number in the audit log, the key the gateway signs
// with (consent receipts, decision tokens, checkpoints, notifications),
// and the Ed25519 note key that signs the checkpoint notes witnesses
// co-sign (NoteSigner; internal/witness).
//
// Callers see only the Store interface. The embedded default is a local key
// store in the data directory (files created on first start with mode 0600);
// a HashiCorp Vault transit implementation satisfies the same interface, and
// both must pass the same conformance suite. No caller may know which one it
// has.
//
// Promises: Pseudonym is deterministic for a given store (the same subject
// always yields the same pseudonym, across restarts and key rotations of the
// signing key); the private signing key never leaves the store; every
// method honours its context's deadline and returns an error wrapping
// ErrUnavailable when the backing store cannot answer, so that callers fail
// closed.
package keys
