package audit

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	bolt "go.etcd.io/bbolt"
)

// MigrateOptions configure Migrate.
type MigrateOptions struct {
	// Keys, if set, are the gateway's public keys: every signed
	// checkpoint of the old file must verify with one of them. Without
	// them the checkpoints are checked against the old tree but their
	// signatures are not checked (the report says so).
	Keys jwk.Set
	// Now is the clock for the migration entry; nil means time.Now.
	Now func() time.Time
	// OpenTimeout bounds the wait for either file's lock; zero means
	// DefaultOpenTimeout.
	OpenTimeout time.Duration
}

// MigrateReport says what Migrate checked and carried over.
type MigrateReport struct {
	OldFormat   uint64 `json:"old_format"`
	Entries     uint64 `json:"entries"`       // entries of the old log, all carried over
	OldRoot     string `json:"old_root"`      // RFC 9162 root of the old log, recomputed
	OldHead     string `json:"old_head"`      // chain hash of the old log's last entry
	Checkpoints int    `json:"checkpoints"`   // old signed checkpoints, each matched against the old tree
	Signatures  bool   `json:"signatures"`    // whether their signatures were checked
	Checkpoint  string `json:"checkpoint"`    // the old log's last signed checkpoint (compact JWS), "" if none
	NewSize     uint64 `json:"new_size"`      // entries of the new log: Entries + 1
	NewHead     string `json:"new_head"`      // chain hash of the new log's last entry
	OldFileMode string `json:"old_file_mode"` // the old file's mode afterwards (read-only)
}

// Migrate carries the log at oldPath, written in an earlier format (2 or
// 3), into a new log at newPath in the current format, without breaking
// the old log's verifiability (docs/audit-format.md §5):
//
//  1. it checks the old file as Verify would check its chain and tree:
//     every entry decodes strictly in its format, the keys run 1..n, each
//     prev_hash is the previous entry's hash, meta's head is the last
//     entry, and every stored signed checkpoint names the recomputed
//     root and head at its size (and verifies with opts.Keys if given);
//  2. it writes entry 1 of the new log, of kind "migration", holding the
//     old format, size, root and head and the old log's last signed
//     checkpoint verbatim, so that every checkpoint of the new log
//     commits to the old tree;
//  3. it appends every old entry in order, as entry seq+1, with its old
//     seq and entry hash (origin_seq, origin_hash): an old inclusion proof
//     for that hash still ties it to the old checkpoints. A format-2
//     decision's whole policy input has no field in the current format
//     and stays in the old file only;
//  4. it makes the old file read-only (mode 0444) and leaves it in place.
//
// newPath must not exist. On failure nothing is left at newPath.
func Migrate(ctx context.Context, oldPath, newPath string, opts MigrateOptions) (rep *MigrateReport, err error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if _, err := os.Lstat(newPath); err == nil {
		return nil, fmt.Errorf("audit: migrate: %s exists; the new log must be a new file", newPath)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit: migrate: %w", err)
	}
	old, err := bolt.Open(oldPath, 0o400, &bolt.Options{ReadOnly: true, Timeout: opts.OpenTimeout})
	if err != nil {
		return nil, fmt.Errorf("audit: migrate: open %s: %w", oldPath, err)
	}
	defer old.Close()

	rep = &MigrateReport{Signatures: opts.Keys != nil}
	if err := old.View(func(tx *bolt.Tx) error { return checkLegacy(ctx, tx, opts.Keys, rep) }); err != nil {
		return nil, fmt.Errorf("audit: migrate: %s: %w", oldPath, err)
	}

	nl, err := Open(newPath, Options{OpenTimeout: opts.OpenTimeout})
	if err != nil {
		return nil, fmt.Errorf("audit: migrate: %w", err)
	}
	defer func() {
		if cerr := nl.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("audit: migrate: close the new log: %w", cerr)
		}
		if err != nil {
			rep = nil
			os.Remove(newPath)
		}
	}()
	first := Entry{
		Time: opts.Now(), Kind: KindMigration, OriginFormat: int(rep.OldFormat), OriginSize: rep.Entries,
		OriginRoot: rep.OldRoot, OriginHash: rep.OldHead, OriginCheckpoint: rep.Checkpoint,
	}
	if _, _, err := nl.Append(ctx, &first); err != nil {
		return nil, fmt.Errorf("audit: migrate: %w", err)
	}
	err = old.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		batch := make([]Entry, 0, migrateBatch)
		for k, v := c.First(); ; k, v = c.Next() {
			if k != nil {
				seq, _ := keySeq(k)
				e, err := decodeLegacy(rep.OldFormat, seq, v)
				if err != nil {
					return err
				}
				e.OriginSeq, e.OriginHash = seq, e.Hash
				e.Seq, e.PrevHash, e.Hash, e.PrevSubject, e.PrevPractitioner = 0, "", "", 0, 0
				batch = append(batch, *e)
			}
			if len(batch) == migrateBatch || (k == nil && len(batch) > 0) {
				if err := nl.appendInOrder(ctx, batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
			if k == nil {
				return nil
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("audit: migrate: %w", err)
	}
	rep.NewSize, rep.NewHead = nl.Head()
	if err := os.Chmod(oldPath, 0o444); err != nil {
		return nil, fmt.Errorf("audit: migrate: make the old file read-only: %w", err)
	}
	rep.OldFileMode = "0444"
	return rep, nil
}

// migrateBatch is how many entries Migrate queues before waiting for
// them: the committer takes them in order, in few commits.
const migrateBatch = 4096

// appendInOrder appends es in order: queued one after another from one
// goroutine, the committer takes them in that order.
func (l *Log) appendInOrder(ctx context.Context, es []Entry) error {
	reqs := make([]*appendReq, 0, len(es))
	for i := range es {
		r, err := newAppendReq(&es[i])
		if err != nil {
			return err
		}
		if err := l.enqueue(ctx, r); err != nil {
			return err
		}
		reqs = append(reqs, r)
	}
	for _, r := range reqs {
		if res := <-r.res; res.err != nil {
			return res.err
		}
	}
	return nil
}

// checkLegacy checks an old-format file's chain, tree, head and
// checkpoints (Migrate's step 1) and fills rep.
func checkLegacy(ctx context.Context, tx *bolt.Tx, keys jwk.Set, rep *MigrateReport) error {
	meta, entries := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
	if meta == nil || entries == nil {
		return tampered(0, "not an audit log: bucket %q or %q is missing", bucketMeta, bucketEntries)
	}
	v := meta.Get(metaVersion)
	if len(v) != 8 {
		return tampered(0, "meta has no valid format version")
	}
	switch rep.OldFormat = binary.BigEndian.Uint64(v); rep.OldFormat {
	case 2, 3:
	case formatVersion:
		return fmt.Errorf("already in format %d: nothing to migrate: %w", formatVersion, ErrUnsupportedVersion)
	default:
		return fmt.Errorf("format version %d cannot be migrated (2 and 3 can): %w", rep.OldFormat, ErrUnsupportedVersion)
	}
	// The signed checkpoints, by size.
	cps := map[uint64]*Checkpoint{}
	var sizes []uint64
	if b := tx.Bucket(bucketCheckpoints); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			size, ok := keySeq(k)
			if !ok {
				return tampered(0, "malformed key %x in bucket %q", k, bucketCheckpoints)
			}
			cp, err := ParseCheckpoint(v, keys)
			if err != nil {
				return fmt.Errorf("checkpoint %d: %w", size, err)
			}
			if cp.Size != size {
				return tampered(size, "checkpoint stored under size %d says %d", size, cp.Size)
			}
			cps[size] = cp
			sizes = append(sizes, size)
			return nil
		})
		if err != nil {
			return err
		}
	}
	rng := rangeFactory.NewEmptyRange(0)
	prev := GenesisHash
	var n uint64
	c := entries.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		seq, ok := keySeq(k)
		if !ok || seq != n+1 {
			return tampered(n+1, "missing: the next key is %x (a deleted entry)", k)
		}
		e, err := decodeLegacy(rep.OldFormat, seq, v)
		if err != nil {
			return err
		}
		if e.PrevHash != prev {
			return tampered(seq, "prev_hash %s is not the hash %s of entry %d", e.PrevHash, prev, n)
		}
		if err := rng.Append(leafHash(v), nil); err != nil {
			return err
		}
		n, prev = seq, e.Hash
		if cp := cps[seq]; cp != nil {
			root, err := rng.GetRootHash(nil)
			if err != nil {
				return err
			}
			if hex.EncodeToString(root) != cp.Root || cp.Head != prev {
				return tampered(seq, "the signed checkpoint at size %d does not match the log (root %s, head %s)", seq, cp.Root, cp.Head)
			}
		}
	}
	for _, s := range sizes {
		if s > n {
			return tampered(n+1, "missing: a stored checkpoint covers %d entries but the log ends at %d (truncated tail)", s, n)
		}
	}
	h, err := readHead(meta)
	if err != nil {
		return err
	}
	if err := checkHead(h, n, prev); err != nil {
		return err
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return err
	}
	rep.Entries, rep.OldRoot, rep.OldHead, rep.Checkpoints = n, hex.EncodeToString(root), prev, len(sizes)
	if n == 0 {
		rep.OldRoot = EmptyRoot
	}
	if len(sizes) > 0 {
		rep.Checkpoint = cps[sizes[len(sizes)-1]].JWS
	}
	return nil
}

// LegacyFile describes a log to write in an earlier format (WriteLegacy).
type LegacyFile struct {
	Version uint64  // 2 or 3
	Entries []Entry // in order; Seq, PrevHash, PrevSubject and PrevPractitioner are assigned
	// Inputs are format-2 decisions' whole policy inputs, by index into
	// Entries.
	Inputs map[int]json.RawMessage
	// CheckpointAt are the sizes at which a signed checkpoint is stored,
	// signed by Signer for LogID.
	CheckpointAt []uint64
	Signer       Signer
	LogID        string
	Time         time.Time // the checkpoints' time
}

// WriteLegacy writes f as a new log file at path in format 2 or 3, as the
// builds of those formats wrote it (entries, meta, signed checkpoints;
// the index buckets empty). It exists so that migration is tested from
// files the tests make themselves; the gateway never writes old formats.
func WriteLegacy(ctx context.Context, path string, f LegacyFile) error {
	if f.Version != 2 && f.Version != 3 {
		return fmt.Errorf("audit: write legacy: format %d: %w", f.Version, ErrUnsupportedVersion)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: DefaultOpenTimeout})
	if err != nil {
		return fmt.Errorf("audit: write legacy: %w", err)
	}
	defer db.Close()
	at := map[uint64]bool{}
	for _, s := range f.CheckpointAt {
		at[s] = true
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		meta, entries, cpb := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries), tx.Bucket(bucketCheckpoints)
		if err := meta.Put(metaVersion, binary.BigEndian.AppendUint64(nil, f.Version)); err != nil {
			return err
		}
		rng := rangeFactory.NewEmptyRange(0)
		h := head{hash: GenesisHash}
		lastSubject, lastPractitioner := map[string]uint64{}, map[string]uint64{}
		for i, e := range f.Entries {
			h.seq++
			e.Seq, e.PrevHash, e.Hash = h.seq, h.hash, ""
			e.Time = e.Time.UTC()
			e.PrevSubject, e.PrevPractitioner = 0, 0
			if e.Subject != "" {
				e.PrevSubject, lastSubject[e.Subject] = lastSubject[e.Subject], h.seq
			}
			if e.Practitioner != "" {
				e.PrevPractitioner, lastPractitioner[e.Practitioner] = lastPractitioner[e.Practitioner], h.seq
			}
			var val []byte
			var err error
			if f.Version == 2 {
				val, err = json.Marshal(v2Of(&e, f.Inputs[i]))
			} else {
				val, err = marshalV3(&e)
			}
			if err != nil {
				return err
			}
			if err := entries.Put(seqKey(h.seq), val); err != nil {
				return err
			}
			h.hash = hashHex(val)
			if err := rng.Append(leafHash(val), nil); err != nil {
				return err
			}
			if at[h.seq] {
				root, _ := rng.GetRootHash(nil)
				cp := Checkpoint{Log: f.LogID, Size: h.seq, Root: hex.EncodeToString(root), Head: h.hash, Time: f.Time}
				p, err := cp.payload()
				if err != nil {
					return err
				}
				jws, err := f.Signer.Sign(ctx, p, CheckpointType)
				if err != nil {
					return err
				}
				if err := cpb.Put(seqKey(h.seq), []byte(jws)); err != nil {
					return err
				}
			}
		}
		return writeMeta(meta, h)
	})
}
