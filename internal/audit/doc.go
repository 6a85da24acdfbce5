// Package audit owns the gateway's audit log: an append-only,
// tamper-evident record of every request that reaches the gateway
// (allowed, denied, rejected, unauthenticated, unavailable), kept in one
// bbolt file.
//
// # Promises
//
// Durable before the answer. Log.Append returns only after the
// transaction holding the entry has committed, and bbolt fsyncs on commit
// (NoSync is never set). The gateway writes its HTTP response after Append
// returns; if Append fails, the caller answers 503 (errors wrap
// ErrUnavailable).
//
// Group commit. One committer goroutine takes every queued append, up to
// Options.MaxBatch, into a single write transaction, assigns seqs and
// chains them in that order, and commits once: concurrent requests share
// one fsync. If the commit fails, every append in the group fails, the
// head does not advance, and the Log refuses further appends until it is
// reopened (after a failed fsync the file's state is uncertain; failing
// closed is the safe answer for an audit log).
//
// Append-only. No code path updates or deletes an entry: the only writes
// are Puts of keys above the current last key, checked inside each write
// transaction against the head recorded in meta, plus the update of that
// head. Reads run in read transactions and copy values out before the
// transaction ends.
//
// # Format (version 1)
//
// Bucket "entries": key = seq as 8 bytes big-endian, starting at 1 (so
// cursor order is log order); value = the canonical bytes E of the entry.
// Bucket "meta": "version" (8-byte big-endian 1), "head_seq" (8-byte
// big-endian seq of the last entry, 0 when empty), "head_hash" (hash of
// the last entry, GenesisHash when empty).
//
// E is encoding/json.Marshal of the Entry with Seq set, PrevHash set and
// Hash = "". The entry's hash is lowercase hex SHA-256(E). Entry 1 has
// PrevHash = GenesisHash (64 '0's); entry n has PrevHash = hash of entry
// n-1. Hash is never stored; reads fill it in from the recomputed digest.
// A later Merkle tree over the log will use leaf = SHA-256(0x00 || E).
//
// # What Verify detects, and what it cannot
//
// Verify walks the file offline and reports the first damage as a
// *TamperError naming the entry: a deleted entry (a gap in the keys), an
// altered entry (its hash no longer matches the next entry's prev_hash, or
// the recorded head), a moved or swapped entry (its seq field differs from
// its key), an unparseable entry or unknown field, and a truncated tail or
// edited head (meta's head differs from the last entry). Open checks the
// head against the last entry on every start.
//
// A hash chain alone cannot detect a consistent rewrite: someone with
// write access to the file can rewrite entry k and every entry after it,
// recompute the chain and update meta, and the result verifies (in the
// limit, replace the whole log). Likewise the newest entry is protected
// only by meta, which lives in the same file. Detecting that needs the
// head to be committed to somewhere the attacker cannot rewrite: signed
// Merkle checkpoints, published to the partners, are planned for that.
//
// # Concurrency and processes
//
// A Log is safe for concurrent use. The file is locked by the process
// that opens it; a second Open (or Verify) waits Options.OpenTimeout and
// fails with ErrBusy. To read a running gateway's log, take a consistent
// copy with Log.Snapshot or Log.SnapshotFile (the `trustgate audit
// snapshot` command) and Verify the copy.
package audit
