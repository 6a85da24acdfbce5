package audit

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Report describes a log that passed Verify.
type Report struct {
	Entries uint64 // number of entries, which is also the head seq
	Head    string // hash of the last entry; GenesisHash for an empty log
}

// Verify checks the whole log file at path offline. It opens the file
// read-only (waiting up to opts.OpenTimeout for a writer's lock, then
// failing with ErrBusy: verify a Snapshot of a running log instead) and
// streams every entry in one read transaction, checking that:
//
//   - the keys run 1, 2, 3, ... with no gap (a gap is a deleted entry);
//   - each value decodes as exactly one entry with no unknown fields, an
//     empty hash field, and a seq equal to its key (a swapped or moved
//     entry fails here);
//   - each entry's prev_hash is the recomputed hash of the entry before
//     it, GenesisHash for entry 1;
//   - the head seq and hash recorded in meta are those of the last entry
//     (a mismatch is a truncated tail, an altered last entry, or edited
//     meta).
//
// The first failure is returned as a *TamperError naming the damaged
// entry. When a link between entries k-1 and k is broken, Verify looks one
// entry further to tell which side was altered: if entry k still links to
// entry k+1 (or to the recorded head), entry k-1's bytes changed after k
// was chained; otherwise entry k changed.
//
// A hash chain cannot detect a consistent rewrite of the log from some
// entry to the head, with meta updated to match; see the package
// documentation.
func Verify(ctx context.Context, path string, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	db, err := openBolt(path, opts, true)
	if err != nil {
		return nil, fmt.Errorf("audit: verify %s: %w", path, err)
	}
	defer func() { _ = db.Close() }() // read-only: nothing to flush
	var rep *Report
	err = db.View(func(tx *bolt.Tx) error {
		var err error
		rep, err = verifyTx(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: verify %s: %w", path, err)
	}
	return rep, nil
}

func verifyTx(ctx context.Context, tx *bolt.Tx) (*Report, error) {
	entries, meta := tx.Bucket(bucketEntries), tx.Bucket(bucketMeta)
	if entries == nil {
		return nil, tampered(0, "bucket %q is missing", bucketEntries)
	}
	if meta == nil {
		return nil, tampered(0, "bucket %q is missing", bucketMeta)
	}
	recorded, err := readMeta(meta)
	if err != nil {
		return nil, err
	}

	last := head{seq: 0, hash: GenesisHash} // the previous entry, hash recomputed
	// broken is the seq of an entry whose prev_hash does not match the
	// entry before it; the next entry decides which of the two is blamed.
	var broken uint64
	blame := func(next string) error {
		if broken > 1 && last.hash == next { // entry `broken` is intact: its predecessor changed
			return tampered(broken-1, "contents altered: its hash no longer matches the prev_hash of entry %d", broken)
		}
		return tampered(broken, "prev_hash does not match entry %d", broken-1)
	}

	c := entries.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		seq, ok := keySeq(k)
		if !ok {
			return nil, tampered(last.seq+1, "malformed key %x where entry %d should be", k, last.seq+1)
		}
		if seq&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if seq != last.seq+1 {
			if broken != 0 {
				return nil, tampered(broken, "prev_hash does not match entry %d", broken-1)
			}
			return nil, tampered(last.seq+1, "missing (the next stored entry is %d)", seq)
		}
		f, err := scanEntry(v)
		switch {
		case err == nil && f.seq != seq:
			err = tampered(seq, "seq field is %d but the entry is stored at seq %d", f.seq, seq)
		case err == nil && len(f.hash) != 0:
			err = tampered(seq, "stored value has a non-empty hash field")
		case err != nil:
			err = tampered(seq, "stored value is not a valid entry: %v", err)
		}
		if err != nil {
			if broken != 0 {
				return nil, tampered(broken, "prev_hash does not match entry %d", broken-1)
			}
			return nil, err
		}
		if broken != 0 {
			return nil, blame(string(f.prevHash))
		}
		if string(f.prevHash) != last.hash {
			broken = seq
		}
		last = head{seq: seq, hash: hashHex(v)}
	}
	if broken != 0 {
		return nil, blame(recorded.hash)
	}
	if err := checkHead(recorded, last.seq, last.hash); err != nil {
		return nil, err
	}
	return &Report{Entries: last.seq, Head: last.hash}, nil
}
