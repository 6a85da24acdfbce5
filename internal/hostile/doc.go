// Package hostile is an independent hostile client of the gateway: what a
// compromised agency system could do with only the documented API
// (docs/api.md, docs/openapi.yaml) and the agencies' signing keys.
//
// It imports nothing of the gateway's own code (no internal/server, no
// internal/authz, no internal/nhs, no internal/identity): the NHS number
// arithmetic, the token minting, the request generator and the log scan
// are written here again from the documents, so that a mistake in the
// gateway's code is not repeated in the check. Its test
// (TestIndependentHostileClient) builds the trustgate binary, prepares a
// demo Trust with `trustgate demo init`, starts `trustgate demo run` as a
// process of its own on ports chosen at run time, sends several thousand
// hostile requests, restarts it, stops it, and reads the audit file with
// `trustgate audit export` and as raw bytes. The figures are in
// docs/security.md.
package hostile
