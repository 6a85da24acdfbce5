// Package decision is the live decision's own machinery, the part of the
// request path between the server's validated input and the policy: the
// per-revision memos that answer a request exactly as evaluating the
// policy would (Memo), the static reading of a policy that says when
// remembering is sound (Analyze), the keys and bounded caches they use,
// and the codec that records a decision's exact input in its audit entry
// and rebuilds it (RecordInput, InputOf). The what-if replay
// (internal/whatif) uses the same reading, keys and codec.
//
// Promises:
//   - Exact: Memo.Decide's answer is policy.Revision.Decide's, word for
//     word (the JSON of the two is the same byte for byte), for every
//     input; TestMemoAnswersAsThePlainEvaluation replays a large generated
//     stream through both. A tripwire compares one answer in 256 with the
//     plain evaluation and turns the memo off for good on a difference.
//   - Sound only where proven: a policy that reads the clock, computes
//     with the time or reads the whole input gets no memo (Off says why).
//   - Bounded: each cache holds about its configured size.
//   - Recorded inputs: InputOf(e) rebuilds exactly the input RecordInput
//     recorded in e (json.Marshal of the two is the same).
package decision
