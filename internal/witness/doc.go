// Package witness owns the checkpoint notes that transparency-log
// witnesses co-sign: each signed audit checkpoint (audit.Checkpoint, the
// ES256 JWS) in the C2SP form (c2sp.org/tlog-checkpoint in a
// c2sp.org/signed-note), signed with the gateway's Ed25519 note key
// (keys.NoteSigner), and the witnesses' cosignatures
// (c2sp.org/tlog-cosignature, cosignature/v1) collected for it.
//
// The note of the checkpoint of size N is
//
//	<origin>
//	<N>
//	<base64 of the RFC 9162 root of entries 1..N>
//
//	— <origin> <base64 of key hash || Ed25519 signature>
//	— <witness> <base64 of key hash || timestamp || Ed25519 signature>
//	...
//
// docs/audit-format.md §7 is the specification.
//
// # Promises
//
// One tree. A note is made only from a checkpoint the audit log stored
// (signed with the JWS key): its size and root are that checkpoint's, so
// the note of size N and the JWS checkpoint of size N, and every
// consistency proof naming N, speak of the same tree.
//
// Deterministic. The gateway's note signature is not stored: Ed25519
// gives the same signature for the same note and key, so the note is
// signed again when asked for. Without the key store no note is given
// (the error wraps keys.ErrUnavailable).
//
// Only verified cosignatures. AddCosignatures stores a signature only if
// the note it came in is, byte for byte, the body of a checkpoint the log
// stored, and the signature verifies as a cosignature/v1 with the key of
// a witness the Trust configured (Options.Witnesses); anything else is an
// *Error naming why (ErrMalformed, ErrWrongTree, ErrUnknownWitness,
// ErrBadCosignature), and nothing is stored. A witness's newer
// cosignature of the same size replaces its older one. Stored
// cosignatures are in their own bbolt file, committed (fsynced) before
// AddCosignatures returns, and survive restarts.
package witness
