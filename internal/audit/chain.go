package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// GenesisHash is the PrevHash of entry 1 and the head hash of an empty
// log: 64 '0's.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// formatVersion is the on-disk format this package writes and reads.
const formatVersion uint64 = 1

var (
	bucketEntries = []byte("entries")
	bucketMeta    = []byte("meta")

	metaVersion  = []byte("version")   // big-endian uint64
	metaHeadSeq  = []byte("head_seq")  // big-endian uint64; 0 for an empty log
	metaHeadHash = []byte("head_hash") // lowercase hex SHA-256 of the head entry's canonical bytes
)

// seqKey returns the bucket key for seq: 8 bytes, big-endian, so that
// cursor order is log order.
func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// keySeq is the inverse of seqKey. ok is false for a key that seqKey
// could not have produced.
func keySeq(k []byte) (seq uint64, ok bool) {
	if len(k) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// hashHex returns the entry hash of canonical bytes: lowercase hex SHA-256.
func hashHex(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// record is one encoded entry, ready to Put.
type record struct {
	val  []byte // canonical bytes E
	hash string // hashHex(E)
}

// encodeEntry returns the canonical bytes of e as entry seq chained to
// prevHash: json.Marshal of the entry with Seq and PrevHash set and Hash
// empty. e is taken by value so the caller's entry is not changed.
func encodeEntry(e Entry, seq uint64, prevHash string) (record, error) {
	e.Seq = seq
	e.PrevHash = prevHash
	e.Hash = ""
	val, err := json.Marshal(&e)
	if err != nil {
		return record{}, fmt.Errorf("encode entry %d: %w: %w", seq, ErrInvalidEntry, err)
	}
	return record{val: val, hash: hashHex(val)}, nil
}

// decodeEntry strictly decodes the stored value of key seq: one JSON
// object, no unknown fields, nothing after it, its seq equal to the key
// and its hash field empty. It fills Hash with the recomputed digest. The
// result shares no memory with val, so val may be a bbolt value that is
// about to become invalid.
func decodeEntry(seq uint64, val []byte) (*Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(val))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(&e); err != nil {
		return nil, tampered(seq, "stored value is not a valid entry: %v", err)
	}
	if dec.InputOffset() != int64(len(val)) {
		return nil, tampered(seq, "stored value has data after the entry")
	}
	if e.Seq != seq {
		return nil, tampered(seq, "seq field is %d but the entry is stored at seq %d", e.Seq, seq)
	}
	if e.Hash != "" {
		return nil, tampered(seq, "stored value has a non-empty hash field")
	}
	e.Hash = hashHex(val)
	return &e, nil
}

// head is the last entry of the log: its seq (0 when empty) and hash
// (GenesisHash when empty).
type head struct {
	seq  uint64
	hash string
}

// readMeta returns the format version and head recorded in the meta
// bucket, checking that they are well formed.
func readMeta(meta *bolt.Bucket) (head, error) {
	v := meta.Get(metaVersion)
	if len(v) != 8 {
		return head{}, tampered(0, "meta has no valid format version")
	}
	if ver := binary.BigEndian.Uint64(v); ver != formatVersion {
		return head{}, fmt.Errorf("format version %d (this build reads %d): %w", ver, formatVersion, ErrUnsupportedVersion)
	}
	s, ok := keySeq(meta.Get(metaHeadSeq))
	if !ok {
		return head{}, tampered(0, "meta has no valid head seq")
	}
	h := meta.Get(metaHeadHash)
	if !isHexHash(h) {
		return head{}, tampered(0, "meta has no valid head hash")
	}
	return head{seq: s, hash: string(h)}, nil
}

// writeMeta records h as the head.
func writeMeta(meta *bolt.Bucket, h head) error {
	if err := meta.Put(metaHeadSeq, seqKey(h.seq)); err != nil {
		return err
	}
	return meta.Put(metaHeadHash, []byte(h.hash))
}

func isHexHash(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// appendRecords puts recs as the entries after from, which must be the
// head recorded in the transaction, and records the new head. It only
// ever puts keys above the current last key: it refuses to run if the
// stored last entry is not from.seq, so no code path overwrites an entry.
func appendRecords(tx *bolt.Tx, from head, recs []record) (head, error) {
	entries := tx.Bucket(bucketEntries)
	meta := tx.Bucket(bucketMeta)
	// Sequential keys: pack pages full instead of splitting them in half.
	entries.FillPercent = 1.0

	stored, err := readMeta(meta)
	if err != nil {
		return head{}, err
	}
	lastKey, _ := entries.Cursor().Last()
	last, _ := keySeq(lastKey)
	if stored != from || last != from.seq {
		return head{}, tampered(from.seq+1,
			"refusing to append: expected head %d, meta records %d and the last entry is %d",
			from.seq, stored.seq, last)
	}
	h := from
	for _, r := range recs {
		h.seq++
		if err := entries.Put(seqKey(h.seq), r.val); err != nil {
			return head{}, fmt.Errorf("put entry %d: %w", h.seq, err)
		}
		h.hash = r.hash
	}
	if err := writeMeta(meta, h); err != nil {
		return head{}, fmt.Errorf("write head: %w", err)
	}
	return h, nil
}
