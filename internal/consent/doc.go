// Package consent is the gateway's consent broker: it keeps the consent
// records of the Trust's children (consents given and refused, their scope,
// their withdrawal), issues consent receipts the family can keep, and keeps
// the queue of safeguarding overrides (sharing without consent) awaiting
// review by an information governance lead.
//
// Everything lives in the gateway's state store, a bbolt file separate from
// the audit log (data/state.db). The store holds no NHS number in clear: a
// record names its subject by the keyed pseudonym the gateway also uses in
// the audit log (keys.Pseudonymizer).
//
// Promises:
//   - Record, Withdraw, OpenReview and CloseReview are atomic and durable:
//     when they return nil the change is fsynced; when they return an error
//     nothing was changed.
//   - A withdrawal is visible to every ForDecision call that starts after
//     Withdraw returns (and so is a Record or a Delete): ForDecision's
//     answers are held in memory only until any record changes, and an
//     answer read while a change was being committed is not held. History is never erased: a withdrawn record keeps
//     its scope, its receipts and who withdrew it when.
//   - ForDecision returns every record of the subject (active, expired,
//     withdrawn, refused), mapped faithfully to policy.Consent; the policy,
//     not this package, decides what they mean for a share.
//   - Errors are classified: *Error (invalid input, not found, conflict,
//     with the field and the reason) or ErrUnavailable (the store failed;
//     callers answer 503 and disclose nothing).
//
// The status of a record is derived, never stored: see Record.Status.
package consent
