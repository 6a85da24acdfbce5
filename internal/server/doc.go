// Package server owns the gateway's HTTP surface: routes, request decoding
// and validation, the one mapping from errors to HTTP statuses, and the
// guarantee that every /v1 request is written to the audit log, durably,
// before its answer leaves.
//
// Promises:
//   - Every /v1 request (allowed, denied, rejected, unauthenticated, failed)
//     produces exactly one audit entry, appended and fsynced before the
//     response is written. If the append fails the caller gets 503 and no
//     decision (fail closed).
//   - Bad input is a 4xx naming the field and the reason; nothing is
//     evaluated and nothing is stored besides the audit entry.
//   - A dependency that cannot answer (keys, policy, audit) is a 503 that
//     says which, and nothing is disclosed.
//   - Handlers see one consistent revision (registry + policy + protocols)
//     for the whole request.
//   - A state change a handler makes (a consent recorded, a review item
//     opened or closed) is undone when its audit entry cannot be written;
//     a withdrawal of consent is kept, since it only ever stops sharing.
//   - No NHS number reaches the audit log, not even in a request path
//     (auditPath writes such a segment as {nhs}).
//   - A share request (share.go) discloses only what the decision allows:
//     the record fetched from the provider is cut down to the allowed
//     categories and fields whatever the provider sent; a provider failure
//     is a 502/503/504 with nothing partial. The audit entry names the
//     categories, fields and the record's SHA-256, never a value. The
//     access notifications it owes are queued durably before the answer,
//     held until the audit entry is written, and taken back if it cannot be.
//   - The auditors' endpoints (audit.go: checkpoints, proofs, entries,
//     stats, access reports, snapshots) read one consistent state of the
//     log, are audited like any request (a query about a child is recorded
//     about that child), and are open only to their roles (auditor,
//     ig_lead; checkpoints and consistency proofs to any partner).
package server
