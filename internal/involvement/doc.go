// Package involvement owns the index of the team around the child: which
// agencies and practitioners are involved with each child (involvements),
// the child's early help episodes (the early help assessment, formerly
// CAF) with their team and lead professional history, and the matches
// between agencies that have each recorded a concern about the same child.
// It holds no case detail: every field is an identifier, a code from a
// closed vocabulary, a date, a flag or a practitioner's work contact.
//
// Storage is one bbolt file (data/index.db), exclusively this package's,
// keyed by the child's pseudonym from the key store (32 raw bytes of the
// HMAC; no NHS number is stored):
//
//	meta                 "version" → big-endian uint64 (format 2)
//	inv                  pseudonym ‖ id(8) → Involvement, binary (codec.go)
//	ids                  id(8) → pseudonym (an involvement's child, by id)
//	active               partner ‖ 0x00 ‖ pseudonym ‖ id(8) → ∅ (each agency's active caseload)
//	renew                renewed-at ns(8) ‖ id(8) → ∅ (active involvements by last renewal: lapsing)
//	ends                 end ns(8) ‖ id(8) → ∅ (ended involvements by end: erasure)
//	episodes             pseudonym ‖ id(8) → Episode JSON
//	epids                id(8) → pseudonym
//	matches              pseudonym ‖ id(8) → Match JSON
//	parties              partner ‖ 0x00 ‖ practitioner ‖ 0x00 ‖ id(8) → pseudonym (a practitioner's matches)
//
// Format 2 stores an involvement in the binary form of codec.go (format 1
// stored its JSON: three times the bytes, and the decoding was most of a
// lookup's read); Open refuses a file of another format with a message
// that says what to do.
//
// Promises:
//
//   - One consistent view: View reads a child's involvements, episodes
//     and matches in one read transaction.
//   - Every change is one write transaction, and returns an Undo that
//     restores exactly the keys it touched: the server takes a change back
//     when its audit entry cannot be written, so nothing changes unrecorded.
//   - Sync is idempotent: what an agency sends is the truth for that
//     agency; sending it again changes nothing; involvements it no longer
//     lists are ended (reason "caseload"), never deleted.
//   - Matches are made in the same transaction as the involvement that
//     causes them, once per pair of involvements.
//   - Retention (Sweep): an active involvement not renewed within ActiveFor
//     lapses (ends, reason "lapsed"); an ended one is erased VisibleFor
//     after its end, with the child's episodes closed as long ago and the
//     matches that name only erased involvements. Sweep records each
//     child's erasure (what was erased, never the content) through the
//     caller's recorder before it erases, and erases nothing it could not
//     record.
package involvement
