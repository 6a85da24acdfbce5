// Package audit owns the gateway's audit log: an append-only,
// tamper-evident record of every request that reaches the gateway
// (allowed, denied, rejected, unauthenticated, unavailable), kept in one
// bbolt file, with a Merkle tree over it, signed checkpoints, indexes for
// auditors' queries, access reports with proofs, export and figures.
// docs/auditing.md is the auditor's guide; this comment is the contract.
//
// # Promises
//
// Durable before the answer. Log.Append returns only after the
// transaction holding the entry has committed, and bbolt fsyncs on commit
// (NoSync is never set). The gateway writes its HTTP response after Append
// returns; if Append fails, the caller answers 503 (errors wrap
// ErrUnavailable).
//
// One transaction. The entries of a commit, the Merkle tree state, the
// query index (posting lists, time blocks) and, when due, the chain heads
// dump are written in the same write transaction: none of them can
// disagree with the entries after a crash.
//
// Group commit. One committer goroutine takes every queued append, up to
// Options.MaxBatch, into a single write transaction, assigns seqs, chains
// and links them in that order, and commits once: concurrent requests
// share one fsync. If the commit fails, every append in the group fails,
// the head, the tree and the chain heads do not advance, and the Log
// refuses further appends (and checkpoints) while it probes in the
// background (recover.go): when a probe file and a probe transaction on
// the log are written and fsynced, it re-reads the committed state from
// the file and takes appends again. Health reports the state.
//
// Append-only. No code path updates or deletes an entry: the only writes
// to "entries" are Puts of keys above the current last key, checked inside
// each write transaction against the head recorded in meta. Reads run in
// read transactions and copy values out before the transaction ends.
//
// # Format (version 4)
//
// Bucket "entries": key = seq as 8 bytes big-endian, starting at 1 (so
// cursor order is log order); value = the stored bytes E of the entry:
// the RFC 8785 (JCS) canonical JSON of the entry as the API shows it,
// with Seq, PrevSubject, PrevPractitioner and PrevHash set and hash left
// out (docs/audit-format.md is the specification, with test vectors in
// testdata/audit-format/). Append first gives the entry the one form its
// bytes hold: times in UTC, each byte of a string that is not valid UTF-8
// replaced by U+FFFD, so that reads, exports and reports show exactly
// what was hashed. The entry's hash is lowercase hex of its Merkle leaf
// hash, SHA-256(0x00 || E): one hash serves the chain and the tree. Entry
// 1 has PrevHash = GenesisHash (64 '0's); entry n has PrevHash = the hash
// of entry n-1. Hash is never stored; reads fill it in. Versions 2 and 3
// (short stored names, dense values: legacy.go) are refused by Open and
// carried into version 4 by Migrate, whose first entry commits to the old
// log's final state and last signed checkpoint.
//
// The Merkle tree (merkle.go) is RFC 9162's: leaf n-1 is entry n, its
// hash SHA-256(0x00 || E); interior nodes SHA-256(0x01 || left || right).
// Meta "tree_range" holds the compact range (the perfect subtrees' roots)
// of the whole log; bucket "tree" holds every complete node on levels 4,
// 8, 12, ...; other nodes are recomputed from the nearest stored level or
// from the entries.
//
// Bucket "checkpoints" (checkpoint.go): key = tree size (8 bytes
// big-endian), value = the checkpoint, a compact JWS signed with the
// gateway's key (typ trustgate-checkpoint+json) over
// {"log","size","root","head","time"}.
//
// The index: bucket "postings" (index.go) holds posting lists by
// requester, provider, purpose, kind, decision, override, protocol and
// review id; subjects and practitioners are chained instead (chains.go:
// PrevSubject, PrevPractitioner, with bucket "heads" holding a periodic
// dump of each chain's newest seq); bucket "times" summarises the times of
// each block of 256 entries. Meta holds "version" (4), "head_seq",
// "head_hash", "tree_range" and "time_tail".
//
// # What Verify detects, and what it cannot
//
// Before bbolt maps a file, Open and VerifyFile check its structure with
// ordinary reads (structure.go): meta pages, every page of the tree,
// the order of keys that lookups rely on, the freelist. Damage there is a
// *StructureError naming the page (and the first entry on it, if any):
// no byte sequence makes either crash in bbolt's memory map.
//
// VerifyFile walks the file offline and reports the first damage as a
// *TamperError naming the entry: a deleted entry (a gap in the keys), an
// altered entry (its hash no longer matches the next entry's prev_hash, or
// the recorded head), a moved or swapped entry (its seq field differs from
// its key), an unparseable entry or unknown field, a truncated tail or
// edited head (meta's head differs from the last entry), and a broken
// subject or practitioner chain. It recomputes the Merkle tree and
// compares it with every stored checkpoint and every checkpoint given from
// outside (their signatures checked against the keys given), so a
// truncated tail or a rewrite with a fresh, self-consistent chain is
// caught as soon as one checkpoint made before it is at hand: the error
// then names the entries between the last checkpoint that still matches
// and the first that does not (TamperError.Seq to Last), because a rewrite
// that recomputed the chain leaves no per-entry trace. It also checks the
// stored tree nodes, the chain heads dump, the time blocks and every
// posting against the entries, so that proofs and queries served from
// them are right.
//
// What it cannot: a rewrite of entries that no checkpoint covers yet
// (made after the last checkpoint anyone kept) verifies, as does a whole
// log forged by someone who holds the signing key. Checkpoints are
// therefore made often (Every, Interval), at shutdown, and pushed outside
// the gateway (a directory, a webhook) where the partners keep them.
//
// # Concurrency and processes
//
// A Log is safe for concurrent use. The file is locked by the process
// that opens it; a second Open (or Verify) waits Options.OpenTimeout and
// fails with ErrBusy. To read a running gateway's log, take a consistent
// copy through the gateway (GET /v1/audit/snapshot, `trustgate audit
// snapshot`, which stream Log.SnapshotStream from one read transaction)
// and verify the copy. Options.ReadOnly opens a copy for reading (queries,
// reports, export) without changing it.
package audit
