package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// The Merkle tree over the log follows RFC 9162 (and RFC 6962): leaf i
// (0-based) is entry i+1, its hash SHA-256(0x00 || E) over the entry's
// stored bytes E; an interior node is SHA-256(0x01 || left || right). The
// hashing, compact ranges and proof shapes are those of
// github.com/transparency-dev/merkle.
//
// Stored state, all written in the transaction that appends the entries:
//
//   - meta "tree_range": the compact range of the whole tree, the roots of
//     its perfect subtrees left to right (popcount(size) hashes of 32
//     bytes); the root hash is computed from it.
//   - bucket "tree": key = level (1 byte) || index (8 bytes big-endian),
//     value = the 32-byte hash, for every complete perfect subtree whose
//     level is a positive multiple of treeStride. Other nodes are
//     recomputed on demand from the nearest stored level below (at most
//     2^(treeStride-1) reads each), leaves from the entries themselves.
//     This keeps the tree at about 4 bytes of file per entry.

var (
	hasher       = rfc6962.DefaultHasher
	rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}
)

// treeStride is the spacing of the stored levels of the tree.
const treeStride = 4

// leafHash is the Merkle leaf hash of stored bytes E.
func leafHash(stored []byte) []byte { return hasher.HashLeaf(stored) }

// EmptyRoot is the root hash of an empty tree (SHA-256 of nothing), hex.
var EmptyRoot = hex.EncodeToString(hasher.EmptyRoot())

func nodeKey(id compact.NodeID) []byte {
	k := make([]byte, 9)
	k[0] = byte(id.Level)
	binary.BigEndian.PutUint64(k[1:], id.Index)
	return k
}

func storedLevel(level uint) bool { return level > 0 && level%treeStride == 0 }

// tree is the in-memory compact range of the whole log.
type tree struct {
	rng *compact.Range
}

func newTree() *tree { return &tree{rng: rangeFactory.NewEmptyRange(0)} }

func (t *tree) size() uint64 { return t.rng.End() }

// clone returns an independent copy, so that a failed transaction leaves
// the original untouched.
func (t *tree) clone() *tree {
	hs := make([][]byte, len(t.rng.Hashes()))
	for i, h := range t.rng.Hashes() {
		hs[i] = bytes.Clone(h)
	}
	r, err := rangeFactory.NewRange(0, t.rng.End(), hs)
	if err != nil { // cannot happen: the hashes come from a valid range
		panic(err)
	}
	return &tree{rng: r}
}

// root returns the root hash of the whole tree.
func (t *tree) root() []byte {
	if t.size() == 0 {
		return hasher.EmptyRoot()
	}
	r, err := t.rng.GetRootHash(nil)
	if err != nil { // cannot happen: the range starts at 0
		panic(err)
	}
	return r
}

// append adds the leaves of recs, stores the completed nodes of the
// stored levels and records the new compact range in meta.
func (t *tree) append(tx *bolt.Tx, recs []record) error {
	nodes := tx.Bucket(bucketTree)
	nodes.FillPercent = 1.0 // each level is appended in index order
	var perr error
	visit := func(id compact.NodeID, h []byte) {
		if perr == nil && storedLevel(id.Level) {
			perr = nodes.Put(nodeKey(id), bytes.Clone(h))
		}
	}
	for _, r := range recs {
		if err := t.rng.Append(r.leaf, visit); err != nil {
			return err
		}
		if perr != nil {
			return perr
		}
	}
	return tx.Bucket(bucketMeta).Put(metaTreeRange, bytes.Join(t.rng.Hashes(), nil))
}

// loadTree reads the compact range recorded in meta for a log of size n.
func loadTree(meta *bolt.Bucket, n uint64) (*tree, error) {
	v := meta.Get(metaTreeRange)
	want := bits.OnesCount64(n)
	if v == nil && n == 0 {
		return newTree(), nil
	}
	if len(v) != want*32 {
		return nil, tampered(0, "meta records a tree range of %d bytes; a tree of %d entries needs %d", len(v), n, want*32)
	}
	hs := make([][]byte, want)
	for i := range hs {
		hs[i] = bytes.Clone(v[i*32 : (i+1)*32])
	}
	r, err := rangeFactory.NewRange(0, n, hs)
	if err != nil {
		return nil, tampered(0, "meta records an invalid tree range: %v", err)
	}
	return &tree{rng: r}, nil
}

// nodeReader computes node hashes of the stored tree in one transaction.
type nodeReader struct {
	entries, nodes *bolt.Bucket
	size           uint64 // leaves present
}

func newNodeReader(tx *bolt.Tx, size uint64) *nodeReader {
	return &nodeReader{entries: tx.Bucket(bucketEntries), nodes: tx.Bucket(bucketTree), size: size}
}

// node returns the hash of the complete perfect subtree id.
func (r *nodeReader) node(id compact.NodeID) ([]byte, error) {
	if _, end := id.Coverage(); end > r.size {
		return nil, fmt.Errorf("node (%d, %d) is beyond the tree of size %d", id.Level, id.Index, r.size)
	}
	switch {
	case id.Level == 0:
		v := r.entries.Get(seqKey(id.Index + 1))
		if v == nil {
			return nil, tampered(id.Index+1, "missing (needed for a Merkle proof)")
		}
		return leafHash(v), nil
	case storedLevel(id.Level):
		v := r.nodes.Get(nodeKey(id))
		if len(v) != 32 {
			return nil, tampered(0, "stored Merkle node (level %d, index %d) is missing or malformed", id.Level, id.Index)
		}
		return bytes.Clone(v), nil
	default:
		left, err := r.node(compact.NewNodeID(id.Level-1, id.Index*2))
		if err != nil {
			return nil, err
		}
		right, err := r.node(compact.NewNodeID(id.Level-1, id.Index*2+1))
		if err != nil {
			return nil, err
		}
		return hasher.HashChildren(left, right), nil
	}
}

func (r *nodeReader) nodes2(ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := r.node(id)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// rootAt returns the root hash of the tree of the first size leaves.
func (r *nodeReader) rootAt(size uint64) ([]byte, error) {
	if size == 0 {
		return hasher.EmptyRoot(), nil
	}
	hs, err := r.nodes2(compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, err
	}
	rng, err := rangeFactory.NewRange(0, size, hs)
	if err != nil {
		return nil, err
	}
	return rng.GetRootHash(nil)
}

// InclusionProof proves that entry Seq is leaf Seq-1 of the tree of Size
// entries whose root is Root (RFC 9162 section 2.1.3). Hashes are
// lowercase hex; Hashes is the audit path, lowest level first.
type InclusionProof struct {
	Seq       uint64   `json:"seq"`
	LeafIndex uint64   `json:"leaf_index"`
	Size      uint64   `json:"size"`
	LeafHash  string   `json:"leaf_hash"`
	Hashes    []string `json:"hashes"`
	Root      string   `json:"root"`
}

// ConsistencyProof proves that the tree of From entries (root FromRoot)
// is a prefix of the tree of To entries (root ToRoot) (RFC 9162 section
// 2.1.4).
type ConsistencyProof struct {
	From     uint64   `json:"from"`
	To       uint64   `json:"to"`
	FromRoot string   `json:"from_root"`
	ToRoot   string   `json:"to_root"`
	Hashes   []string `json:"hashes"`
}

// ProofError says why a proof was not made: the request does not fit the
// log. Errors wrapping it are the caller's mistake, not the log's.
type ProofError struct {
	Field  string // "seq", "size", "from" or "to"
	Reason string
}

func (e *ProofError) Error() string { return "audit: proof: " + e.Field + ": " + e.Reason }

// InclusionProof returns the inclusion proof of entry seq in the tree of
// size entries. size 0 means the current size.
func (l *Log) InclusionProof(ctx context.Context, seq, size uint64) (*InclusionProof, error) {
	var out *InclusionProof
	err := l.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = inclusionProof(tx, l.readHead(tx), seq, size)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: inclusion proof: %w", err)
	}
	return out, nil
}

func inclusionProof(tx *bolt.Tx, n, seq, size uint64) (*InclusionProof, error) {
	if size == 0 {
		size = n
	}
	switch {
	case size > n:
		return nil, &ProofError{"size", fmt.Sprintf("%d is beyond the log's %d entries", size, n)}
	case seq == 0:
		return nil, &ProofError{"seq", "must be at least 1"}
	case seq > size:
		return nil, &ProofError{"seq", fmt.Sprintf("entry %d is not in a tree of %d entries", seq, size)}
	}
	r := newNodeReader(tx, size)
	nodes, err := proof.Inclusion(seq-1, size)
	if err != nil {
		return nil, err
	}
	hs, err := r.nodes2(nodes.IDs)
	if err != nil {
		return nil, err
	}
	path, err := nodes.Rehash(hs, hasher.HashChildren)
	if err != nil {
		return nil, err
	}
	leaf, err := r.node(compact.NewNodeID(0, seq-1))
	if err != nil {
		return nil, err
	}
	root, err := r.rootAt(size)
	if err != nil {
		return nil, err
	}
	return &InclusionProof{Seq: seq, LeafIndex: seq - 1, Size: size, LeafHash: hex.EncodeToString(leaf), Hashes: hexAll(path), Root: hex.EncodeToString(root)}, nil
}

// ConsistencyProof returns the consistency proof between the trees of
// from and to entries. to 0 means the current size.
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) (*ConsistencyProof, error) {
	var out *ConsistencyProof
	err := l.view(ctx, func(tx *bolt.Tx) error {
		n := l.readHead(tx)
		if to == 0 {
			to = n
		}
		switch {
		case to > n:
			return &ProofError{"to", fmt.Sprintf("%d is beyond the log's %d entries", to, n)}
		case from == 0:
			return &ProofError{"from", "must be at least 1"}
		case from > to:
			return &ProofError{"from", fmt.Sprintf("%d is larger than to (%d)", from, to)}
		}
		r := newNodeReader(tx, to)
		nodes, err := proof.Consistency(from, to)
		if err != nil {
			return err
		}
		hs, err := r.nodes2(nodes.IDs)
		if err != nil {
			return err
		}
		path, err := nodes.Rehash(hs, hasher.HashChildren)
		if err != nil {
			return err
		}
		r1, err := r.rootAt(from)
		if err != nil {
			return err
		}
		r2, err := r.rootAt(to)
		if err != nil {
			return err
		}
		out = &ConsistencyProof{From: from, To: to, FromRoot: hex.EncodeToString(r1), ToRoot: hex.EncodeToString(r2), Hashes: hexAll(path)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: consistency proof: %w", err)
	}
	return out, nil
}

// RootAt returns the root hash (hex) of the tree of the first size
// entries.
func (l *Log) RootAt(ctx context.Context, size uint64) (string, error) {
	var out string
	err := l.view(ctx, func(tx *bolt.Tx) error {
		if n := l.readHead(tx); size > n {
			return &ProofError{"size", fmt.Sprintf("%d is beyond the log's %d entries", size, n)}
		}
		r, err := newNodeReader(tx, size).rootAt(size)
		out = hex.EncodeToString(r)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("audit: root at %d: %w", size, err)
	}
	return out, nil
}

// VerifyInclusion checks p with the RFC 9162 verifier of
// github.com/transparency-dev/merkle: that LeafHash at LeafIndex is in
// the tree of Size leaves with root root (hex). If stored is not nil, it
// also checks that LeafHash is the leaf hash of those stored bytes.
func VerifyInclusion(p *InclusionProof, stored []byte, root string) error {
	leaf, err := hex.DecodeString(p.LeafHash)
	if err != nil {
		return fmt.Errorf("leaf hash: %w", err)
	}
	if stored != nil && !bytes.Equal(leafHash(stored), leaf) {
		return fmt.Errorf("leaf hash %s is not the hash of the entry's stored bytes", p.LeafHash)
	}
	if p.Seq != p.LeafIndex+1 {
		return fmt.Errorf("seq %d is not leaf index %d + 1", p.Seq, p.LeafIndex)
	}
	path, err := unhexAll(p.Hashes)
	if err != nil {
		return err
	}
	rt, err := hex.DecodeString(root)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	return proof.VerifyInclusion(hasher, p.LeafIndex, p.Size, leaf, path, rt)
}

// VerifyConsistency checks p with the RFC 9162 verifier against the two
// roots (hex) the caller trusts.
func VerifyConsistency(p *ConsistencyProof, fromRoot, toRoot string) error {
	path, err := unhexAll(p.Hashes)
	if err != nil {
		return err
	}
	r1, err1 := hex.DecodeString(fromRoot)
	r2, err2 := hex.DecodeString(toRoot)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("roots must be hex")
	}
	return proof.VerifyConsistency(hasher, p.From, p.To, path, r1, r2)
}

func hexAll(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}

func unhexAll(ss []string) ([][]byte, error) {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("proof hash %d is not 32 bytes of hex", i)
		}
		out[i] = b
	}
	return out, nil
}
