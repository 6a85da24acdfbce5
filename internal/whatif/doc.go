// Package whatif replays recorded decisions against a proposed policy
// revision and reports, before the revision goes live, which real past
// decisions it would have changed: allow → deny, deny → allow, categories
// widened or narrowed, another rule, or a failure to evaluate; grouped by
// change, protocol rule and purpose, with counts and example audit
// sequence numbers.
//
// What it promises:
//   - The report is exactly what evaluating every recorded input against
//     the proposed revision would give (Options.NoMemo does that; the
//     tests compare the two). Outcomes are memoised only when a static
//     reading of the policy shows the decision depends on the time only
//     through comparisons with protocol and consent dates; memo hits are
//     spot-checked against direct evaluations, and a difference makes the
//     replay run again without the memo.
//   - Bounded memory: records stream in batches, the memo is capped, only
//     groups and their examples are kept.
//   - It never writes: the audit log is read in read transactions.
//   - It replays exactly the inputs the gateway decided on:
//     decision.InputOf rebuilds each from its audit entry (the entry's
//     fields and its input residual, which decision.RecordInput writes
//     for the server). The reading of the policy that says when outcomes
//     may be memoised, the memo keys and the bounded caches are the live
//     decision's own (internal/decision), used here.
//
// docs/ig-guide.md shows it in use; docs/performance.md measures it.
package whatif
