// Package policy owns the Rego side of a decision: it compiles the policy
// modules once per revision (prepared query), hands them the in-force
// protocols and the registry as data, and evaluates typed inputs into typed
// decisions.
//
// Promises:
//   - Compile once, evaluate many: a Revision is immutable and safe for
//     concurrent use; preparing happens only in Prepare.
//   - Fail closed: an undefined result, a result that is not an object, an
//     object that does not decode strictly into Decision, or an evaluation
//     error is a deny (Decide returns a deny Decision and an error wrapping
//     ErrEvaluation; callers map the error to 503 and disclose nothing).
//   - The revision hash covers the policy sources and the data (in-force
//     protocols, registry, settings): two revisions with the same hash
//     decide identically for the same input.
//   - Before a revision is activated it can be checked (verify.go): Check
//     compiles modules and tests strictly and locates every problem (file,
//     line, column); RunTests runs the Rego tests with OPA's tester, as
//     `opa test` does, with coverage; Probe evaluates like Decide but
//     reports a malformed answer as an error instead of a deny.
//   - A decision's Input is recorded in its audit entry as the entry's own
//     fields plus a residual (recorded.go: EncodeResidual, DecodeResidual,
//     the one codec for it), from which the exact Input is rebuilt, byte
//     for byte as json.Marshal writes it.
package policy
