// Package protocol owns the Trust's information-sharing protocols (ISPs): the
// documents the partners' senior officers sign, the detached multi-party
// signatures over them, and the decision whether a protocol is in force.
//
// # What it promises
//
//   - Parse decodes a protocol file strictly (unknown keys are rejected) and
//     validates its structure; every failure is a *FieldError naming the field
//     path (rules[2].consent) and unwrapping to ErrInvalid.
//   - Lint checks a parsed protocol against the partner registry: unknown
//     partners, types, purposes, categories and roles, partners named in rules
//     who did not sign, rules that no signatory can satisfy. Any problem of
//     severity "error" keeps the protocol out of force.
//   - A protocol binds only its signatories. Resolve expands each rule's
//     providers and requesters to the concrete signatory partner ids that may
//     act under it: a rule naming a partner type applies only to signatories
//     of that type, a rule naming a partner applies only if it signed. A
//     non-signatory is never bound and never benefits.
//   - Signatures are one JWS in General JSON Serialization (RFC 7515 §7.2.1)
//     with a detached payload: the protocol file's exact bytes. There is one
//     signature per signatory, each verified on its own against that
//     partner's registered key named by kid; only ES256 and EdDSA are
//     accepted, and only the protected headers alg, kid, typ, partner,
//     protocol and version. Any standard JOSE library can verify them.
//   - Evaluate and LoadDir decide "in force": the file parses, Lint finds no
//     errors, every signatory has exactly one verifying signature, and
//     effective_from <= now < expires, and no signatory has withdrawn. When
//     it is not in force, Status.Reasons says exactly why and Status.Findings
//     locates each reason (file, line, signature). Time is always passed in;
//     the package never reads the clock.
//   - A signatory withdraws with a signed withdrawal (Withdraw, WithdrawFile):
//     a compact JWS over the protocol id, version, partner and effective
//     time, kept beside the protocol in FILE.withdrawals.json. From its
//     effective time the protocol is in force for no one (Status.Until); a
//     withdrawal that does not verify keeps the protocol out of force.
//
// The package reads and writes files only in EvaluateFile, ReadDocument,
// LoadDir, SignFile, WithdrawFile and ReadPrivateKey; everything else is a pure function of its arguments.
// It never logs and never exits. The file formats and the signing workflow
// are described in docs/protocols.md.
package protocol
