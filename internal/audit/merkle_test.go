package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// mth is the RFC 9162 Merkle tree hash of leaves, written out from the
// RFC (section 2.1.1) as an independent reference.
func mth(leaves [][]byte) []byte {
	switch n := len(leaves); n {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		s := sha256.Sum256(append([]byte{0}, leaves[0]...))
		return s[:]
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		s := sha256.Sum256(slices.Concat([]byte{1}, mth(leaves[:k]), mth(leaves[k:])))
		return s[:]
	}
}

// storedAll returns the stored bytes of entries 1..n.
func storedAll(t *testing.T, l *audit.Log, n uint64) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for seq := uint64(1); seq <= n; seq++ {
		b, err := l.Stored(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out[seq-1] = b
	}
	return out
}

// proofLog is a log of 300 entries appended through Append (several
// commits), shared by the proof tests.
func proofLog(t *testing.T) (*audit.Log, [][]byte) {
	t.Helper()
	l := openLog(t, tempPath(t), audit.Options{})
	for i := 0; i < 300; i += 50 {
		appendN(t, l, i, 50)
	}
	return l, storedAll(t, l, 300)
}

func TestTreeRootsMatchRFC(t *testing.T) {
	l, stored := proofLog(t)
	for _, size := range []uint64{0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 255, 256, 257, 299, 300} {
		got, err := l.RootAt(t.Context(), size)
		if err != nil {
			t.Fatal(err)
		}
		if want := hex.EncodeToString(mth(stored[:size])); got != want {
			t.Fatalf("root at size %d = %s, RFC 9162 says %s", size, got, want)
		}
	}
	if th := l.TreeHead(); th.Size != 300 || th.Root != hex.EncodeToString(mth(stored)) {
		t.Fatalf("TreeHead = %+v", th)
	}
	if _, err := l.RootAt(t.Context(), 301); err == nil {
		t.Fatal("root beyond the log")
	}
}

// Corruptions of a proof that a verifier must reject.
type corruption struct {
	name string
	fn   func(hs [][]byte) [][]byte
}

func proofCorruptions(r *rand.Rand) []corruption {
	return []corruption{
		{"flipped bit", func(hs [][]byte) [][]byte {
			if len(hs) == 0 {
				return nil
			}
			hs = cloneHashes(hs)
			i := r.IntN(len(hs))
			hs[i][r.IntN(32)] ^= 1 << r.IntN(8)
			return hs
		}},
		{"missing first node", func(hs [][]byte) [][]byte {
			if len(hs) == 0 {
				return nil
			}
			return cloneHashes(hs[1:])
		}},
		{"missing last node", func(hs [][]byte) [][]byte {
			if len(hs) == 0 {
				return nil
			}
			return cloneHashes(hs[:len(hs)-1])
		}},
		{"extra node", func(hs [][]byte) [][]byte {
			extra := make([]byte, 32)
			for i := range extra {
				extra[i] = byte(r.IntN(256))
			}
			return append(cloneHashes(hs), extra)
		}},
		{"nodes swapped", func(hs [][]byte) [][]byte {
			if len(hs) < 2 || bytes.Equal(hs[0], hs[1]) {
				return nil
			}
			hs = cloneHashes(hs)
			hs[0], hs[1] = hs[1], hs[0]
			return hs
		}},
	}
}

func cloneHashes(hs [][]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = bytes.Clone(h)
	}
	return out
}

func unhex(t *testing.T, hs ...string) [][]byte {
	t.Helper()
	out := make([][]byte, len(hs))
	for i, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func TestInclusionProofs(t *testing.T) {
	l, stored := proofLog(t)
	hasher := rfc6962.DefaultHasher
	r := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for _, size := range []uint64{1, 2, 3, 7, 8, 9, 16, 17, 100, 255, 256, 257, 300} {
		root := unhex(t, hex.EncodeToString(mth(stored[:size])))[0]
		seqs := []uint64{1, size, (size + 1) / 2}
		for range 4 {
			seqs = append(seqs, 1+r.Uint64N(size))
		}
		for _, seq := range seqs {
			p, err := l.InclusionProof(t.Context(), seq, size)
			if err != nil {
				t.Fatal(err)
			}
			leaf := hasher.HashLeaf(stored[seq-1])
			if p.LeafHash != hex.EncodeToString(leaf) || p.Root != hex.EncodeToString(root) || p.Size != size || p.LeafIndex != seq-1 {
				t.Fatalf("proof of %d in %d: %+v", seq, size, p)
			}
			hs := unhex(t, p.Hashes...)
			// The library's verifier accepts it ...
			if err := proof.VerifyInclusion(hasher, seq-1, size, leaf, hs, root); err != nil {
				t.Fatalf("entry %d in tree of %d: the RFC 9162 verifier rejects the proof: %v", seq, size, err)
			}
			if err := audit.VerifyInclusion(p, stored[seq-1], p.Root); err != nil {
				t.Fatalf("VerifyInclusion: %v", err)
			}
			// ... and rejects it corrupted.
			for _, c := range proofCorruptions(r) {
				bad := c.fn(hs)
				if bad == nil {
					continue
				}
				if proof.VerifyInclusion(hasher, seq-1, size, leaf, bad, root) == nil {
					t.Fatalf("entry %d in %d: proof with %s accepted", seq, size, c.name)
				}
			}
			if seq > 1 && proof.VerifyInclusion(hasher, seq-2, size, leaf, hs, root) == nil {
				t.Fatalf("entry %d in %d: proof accepted for index-1", seq, size)
			}
			if seq < size && proof.VerifyInclusion(hasher, seq, size, leaf, hs, root) == nil {
				t.Fatalf("entry %d in %d: proof accepted for index+1", seq, size)
			}
			// A proof for one tree size does not pass for another signed
			// (size, root) pair. (A root alone does not commit to a size:
			// that is why checkpoints sign both.)
			for _, sz := range []uint64{size - 1, size + 1, size * 2} {
				if sz >= seq && sz != size && sz <= 300 && proof.VerifyInclusion(hasher, seq-1, sz, leaf, hs, mth(stored[:sz])) == nil {
					t.Fatalf("entry %d in %d: proof accepted for size %d", seq, size, sz)
				}
			}
			if proof.VerifyInclusion(hasher, seq-1, size, hasher.HashLeaf(append(bytes.Clone(stored[seq-1]), ' ')), hs, root) == nil {
				t.Fatalf("entry %d in %d: proof accepted for altered entry bytes", seq, size)
			}
			checked++
		}
	}
	t.Logf("%d inclusion proofs checked, each against 9 corruptions", checked)

	for _, bad := range []struct {
		seq, size uint64
		field     string
	}{{0, 10, "seq"}, {11, 10, "seq"}, {1, 301, "size"}} {
		_, err := l.InclusionProof(t.Context(), bad.seq, bad.size)
		var pe *audit.ProofError
		if !errors.As(err, &pe) || pe.Field != bad.field {
			t.Fatalf("InclusionProof(%d, %d): err = %v, want a ProofError on %s", bad.seq, bad.size, err, bad.field)
		}
	}
}

func TestConsistencyProofs(t *testing.T) {
	l, stored := proofLog(t)
	hasher := rfc6962.DefaultHasher
	r := rand.New(rand.NewPCG(3, 4))
	pairs := [][2]uint64{{1, 1}, {1, 2}, {1, 300}, {2, 3}, {3, 7}, {4, 8}, {7, 8}, {8, 9}, {15, 17}, {16, 256}, {100, 257}, {255, 256}, {256, 300}, {299, 300}, {300, 300}}
	for range 10 {
		a := 1 + r.Uint64N(300)
		pairs = append(pairs, [2]uint64{a, a + r.Uint64N(301-a)})
	}
	for _, pr := range pairs {
		from, to := pr[0], pr[1]
		p, err := l.ConsistencyProof(t.Context(), from, to)
		if err != nil {
			t.Fatal(err)
		}
		r1, r2 := mth(stored[:from]), mth(stored[:to])
		if p.FromRoot != hex.EncodeToString(r1) || p.ToRoot != hex.EncodeToString(r2) {
			t.Fatalf("consistency %d→%d: roots %s %s", from, to, p.FromRoot, p.ToRoot)
		}
		hs := unhex(t, p.Hashes...)
		if err := proof.VerifyConsistency(hasher, from, to, hs, r1, r2); err != nil {
			t.Fatalf("consistency %d→%d: the RFC 9162 verifier rejects the proof: %v", from, to, err)
		}
		if err := audit.VerifyConsistency(p, p.FromRoot, p.ToRoot); err != nil {
			t.Fatal(err)
		}
		for _, c := range proofCorruptions(r) {
			bad := c.fn(hs)
			if bad == nil {
				continue
			}
			if proof.VerifyConsistency(hasher, from, to, bad, r1, r2) == nil {
				t.Fatalf("consistency %d→%d: proof with %s accepted", from, to, c.name)
			}
		}
		if from < to {
			if from+1 < to && proof.VerifyConsistency(hasher, from+1, to, hs, mth(stored[:from+1]), r2) == nil {
				t.Fatalf("consistency %d→%d: accepted for from+1", from, to)
			}
			if to < 300 && proof.VerifyConsistency(hasher, from, to+1, hs, r1, mth(stored[:to+1])) == nil {
				t.Fatalf("consistency %d→%d: accepted for to+1", from, to)
			}
			// A different earlier tree (a rewritten prefix) does not pass.
			other := mth(append([][]byte{[]byte("forged")}, stored[1:from]...))
			if proof.VerifyConsistency(hasher, from, to, hs, other, r2) == nil {
				t.Fatalf("consistency %d→%d: accepted from a forged earlier root", from, to)
			}
		}
	}
	for _, bad := range []struct {
		from, to uint64
		field    string
	}{{0, 10, "from"}, {11, 10, "from"}, {1, 301, "to"}} {
		_, err := l.ConsistencyProof(t.Context(), bad.from, bad.to)
		var pe *audit.ProofError
		if !errors.As(err, &pe) || pe.Field != bad.field {
			t.Fatalf("ConsistencyProof(%d, %d): err = %v, want a ProofError on %s", bad.from, bad.to, err, bad.field)
		}
	}
}

// TestTreeSurvivesReopenAndFailedCommit checks that the tree state is
// part of the transaction: a failed commit leaves no trace in it, and a
// reopened log carries on with the same roots.
func TestTreeSurvivesReopenAndFailedCommit(t *testing.T) {
	path := tempPath(t)
	fail := false
	l, err := audit.OpenWithHooks(path, audit.Options{}, audit.Hooks{BeforeCommit: func(int) error {
		if fail {
			return errors.New("injected")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 37)
	before := l.TreeHead()
	fail = true
	e := audit.TypicalEntry(99)
	if _, _, err := l.Append(t.Context(), &e); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if l.TreeHead() != before {
		t.Fatalf("tree moved on a failed commit: %+v → %+v", before, l.TreeHead())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, path, audit.Options{})
	if l.TreeHead() != before {
		t.Fatalf("reopened tree %+v, want %+v", l.TreeHead(), before)
	}
	appendN(t, l, 37, 30)
	stored := storedAll(t, l, 67)
	if got := l.TreeHead().Root; got != hex.EncodeToString(mth(stored)) {
		t.Fatalf("root after reopen and 30 more = %s", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, path)
	if rep.Root != hex.EncodeToString(mth(stored)) || rep.Entries != 67 {
		t.Fatalf("Verify = %+v", rep)
	}
}
