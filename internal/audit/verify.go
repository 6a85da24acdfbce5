package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// VerifyOptions configure VerifyFile.
type VerifyOptions struct {
	// OpenTimeout bounds the wait for a writer's lock; zero means
	// DefaultOpenTimeout.
	OpenTimeout time.Duration
	// Keys are the public keys trusted to sign checkpoints: the Trust's
	// copy of the gateway's /.well-known/jwks.json. Nil means signatures
	// are not checked (Report.SignaturesChecked is false).
	Keys jwk.Set
	// Checkpoints are checkpoints kept outside the gateway, each checked
	// against the log: the log must hold at least their size, with the
	// same root and head at that size.
	Checkpoints []ExternalCheckpoint
}

// ExternalCheckpoint is a checkpoint from outside the log file.
type ExternalCheckpoint struct {
	Name string // where it came from, for messages (a file name)
	JWS  []byte // the compact JWS
}

// Report describes a log that passed verification.
type Report struct {
	Entries           uint64        // number of entries, which is also the head seq
	Head              string        // chain hash of the last entry; GenesisHash for an empty log
	Root              string        // Merkle root over all entries, hex
	Checkpoints       int           // stored checkpoints checked
	Latest            *Checkpoint   // the latest stored checkpoint, nil if none
	External          []*Checkpoint // the external checkpoints, all consistent with the log
	SignaturesChecked bool          // whether checkpoint signatures were checked against VerifyOptions.Keys
	Postings          uint64        // index postings checked
}

// Verify checks the whole log file at path offline, without checking
// checkpoint signatures or external checkpoints: VerifyFile with only
// the open timeout of opts.
func Verify(ctx context.Context, path string, opts Options) (*Report, error) {
	return VerifyFile(ctx, path, VerifyOptions{OpenTimeout: opts.OpenTimeout})
}

// VerifyFile checks the whole log file at path offline. It opens the
// file read-only (waiting up to OpenTimeout for a writer's lock, then
// failing with ErrBusy: verify a snapshot of a running log instead) and
// streams every entry in one read transaction, checking:
//
//   - the keys run 1, 2, 3, ... with no gap (a gap is a deleted entry);
//   - each value decodes as exactly one entry with no unknown fields and
//     a seq equal to its key (a swapped or moved entry fails here);
//   - each entry's prev_hash is the recomputed chain hash of the entry
//     before it, GenesisHash for entry 1;
//   - the head seq and hash recorded in meta are those of the last entry
//     (a mismatch is a truncated tail, an altered last entry, or edited
//     meta);
//   - every stored checkpoint and every external checkpoint: its
//     signature (with Keys), and that the Merkle root and chain head
//     recomputed at its size are the ones it states; a checkpoint whose
//     size is beyond the log means the tail was cut off;
//   - the stored Merkle state (the compact range in meta and the stored
//     nodes) and the query index (posting lists and time blocks) are
//     exactly those the entries imply, so proofs and queries served from
//     them are right.
//
// The first failure is returned as a *TamperError naming the damaged
// entry. When a link between entries k-1 and k is broken, Verify looks one
// entry further to tell which side was altered: if entry k still links to
// entry k+1 (or to the recorded head), entry k-1's bytes changed after k
// was chained; otherwise entry k changed. A rewrite that recomputed the
// chain cannot be pinned to one entry: it is caught by the first
// checkpoint whose root no longer matches, and the error names the
// entries after the last checkpoint that still matches (Seq..Last).
// A checkpoint that fails its signature check is a *TamperError (stored
// in the file) or an error wrapping ErrBadCheckpoint (external).
func VerifyFile(ctx context.Context, path string, o VerifyOptions) (*Report, error) {
	opts := Options{OpenTimeout: o.OpenTimeout}.withDefaults()
	db, err := openBolt(path, opts, true)
	if err != nil {
		return nil, fmt.Errorf("audit: verify %s: %w", path, err)
	}
	defer func() { _ = db.Close() }() // read-only: nothing to flush
	var rep *Report
	err = db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if h, err := readMeta(m); err == nil {
				if err := checkApplied(path, h.seq); err != nil { // apply.go
					return err
				}
			}
		}
		v := &verifier{ctx: ctx, tx: tx, o: o}
		var err error
		rep, err = v.run()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: verify %s: %w", path, err)
	}
	return rep, nil
}

// expectation is a checkpoint to compare with the recomputed log.
type expectation struct {
	cp       *Checkpoint
	source   string // "stored checkpoint" or the external name
	external bool   // given from outside the file: authoritative (compare)
}

type verifier struct {
	ctx context.Context
	tx  *bolt.Tx
	o   VerifyOptions

	expect   map[uint64][]expectation
	sizes    []uint64 // sorted keys of expect
	lastGood uint64   // the largest checkpoint size found consistent so far

	// External checkpoints are authoritative (compare): lastGenuine is
	// the largest external one found consistent so far, maxExternal the
	// largest size given, and storedBad a stored checkpoint that does
	// not match, held until an external checkpoint covering it says
	// whether the entries or the stored checkpoint were changed.
	lastGenuine, maxExternal uint64
	storedBad                *TamperError

	seed     maphash.Seed
	expected map[byte]*digest
}

// digest is an order-independent summary of a set of postings.
type digest struct {
	count uint64
	sum   uint64
}

func (d *digest) add(seed maphash.Seed, lk listKey, seq uint64) {
	var b [17]byte
	copy(b[:], lk[:])
	binary.BigEndian.PutUint64(b[9:], seq)
	d.count++
	d.sum += maphash.Bytes(seed, b[:])
}

func (v *verifier) run() (*Report, error) {
	tx := v.tx
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return nil, tampered(0, "bucket %q is missing", name)
		}
	}
	recorded, err := readMeta(tx.Bucket(bucketMeta))
	if err != nil {
		return nil, err
	}
	rep := &Report{SignaturesChecked: v.o.Keys != nil}
	if err := v.loadCheckpoints(rep); err != nil {
		return nil, err
	}
	v.seed = maphash.MakeSeed()
	v.expected = map[byte]*digest{}
	for _, d := range indexedDims {
		v.expected[d] = &digest{}
	}
	st := &streamState{v: v, recorded: recorded, rng: rangeFactory.NewEmptyRange(0), chains: chainState{},
		last: head{seq: 0, hash: GenesisHash}}
	copy(st.lastHash[:], GenesisHash)
	if k, _ := tx.Bucket(bucketHeads).Cursor().Last(); k != nil {
		var ok bool
		if st.dumpSeq, ok = keySeq(k); !ok || st.dumpSeq == 0 {
			return nil, tampered(0, "malformed key %x in bucket %q", k, bucketHeads)
		}
	}
	if err := v.stream(st); err != nil {
		return nil, err
	}
	if err := st.finish(); err != nil {
		return nil, err
	}
	last := st.last

	// The derived state: Merkle range and nodes, chain heads, time
	// blocks, postings.
	if got, want := tx.Bucket(bucketMeta).Get(metaTreeRange), bytes.Join(st.rng.Hashes(), nil); !bytes.Equal(got, want) && (len(got) != 0 || len(want) != 0) {
		return nil, tampered(0, "the tree range recorded in meta is not the one the entries give (the root served as current would be wrong)")
	}
	nodes := tx.Bucket(bucketTree)
	for _, n := range st.nodes {
		if got := nodes.Get(nodeKey(n.id)); !bytes.Equal(got, n.hash) {
			first, end := n.id.Coverage()
			return nil, tampered(0, "stored Merkle node (level %d, index %d) over entries %d to %d does not match them (proofs served from it would fail)",
				n.id.Level, n.id.Index, first+1, end)
		}
	}
	if n := nodes.Stats().KeyN; n != len(st.nodes) {
		return nil, tampered(0, "bucket %q holds %d Merkle nodes; the entries give %d", bucketTree, n, len(st.nodes))
	}
	if st.dumpSeq != 0 && !bytes.Equal(st.dumpWant, tx.Bucket(bucketHeads).Get(seqKey(st.dumpSeq))) {
		return nil, tampered(0, "the chain heads dump as of entry %d does not match the entries (queries by subject or practitioner could miss entries)", st.dumpSeq)
	}
	if err := v.checkTimes(st.times, last.seq); err != nil {
		return nil, err
	}
	postings, err := v.checkPostings(last.seq)
	if err != nil {
		return nil, err
	}
	root := hasher.EmptyRoot()
	if last.seq > 0 {
		if root, err = st.rng.GetRootHash(nil); err != nil {
			return nil, err
		}
	}
	rep.Entries, rep.Head, rep.Root, rep.Postings = last.seq, last.hash, hex.EncodeToString(root), postings
	return rep, nil
}

// item is one stored entry on its way through the verification pipeline.
type item struct {
	key, val []byte // alias the read transaction's memory
	sc       scanned
	scanErr  error
	hash     [64]byte // entry (chain) hash: the leaf hash in lowercase hex
	leaf     [32]byte // Merkle leaf hash
}

// batch is a run of items hashed by one worker; done is closed when it
// is.
type batch struct {
	items []item
	done  chan struct{}
}

const verifyBatch = 512

// stream walks the entries in key order on this goroutine (the only one
// that touches the transaction), has workers scan and hash them, and
// feeds them in order to st on one more goroutine. It returns st's first
// error.
func (v *verifier) stream(st *streamState) error {
	workers := max(runtime.GOMAXPROCS(0), 1)
	work := make(chan *batch, workers*2)
	inOrder := make(chan *batch, workers*4)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	// Each worker sums the postings its entries give into its own
	// digests (sums commute); they are added up at the end.
	local := make([][256]digest, workers)
	for w := range workers {
		wg.Go(func() {
			leaf := sha256.New()
			var lists []listKey
			for b := range work {
				for i := range b.items {
					it := &b.items[i]
					it.sc, it.scanErr = scanEntry(it.val)
					leaf.Reset()
					leaf.Write([]byte{rfc6962.RFC6962LeafHashPrefix})
					leaf.Write(it.val)
					leaf.Sum(it.leaf[:0])
					hex.Encode(it.hash[:], it.leaf[:])
					if seq, ok := keySeq(it.key); ok && it.scanErr == nil {
						lists = it.sc.fields.lists(lists[:0])
						for _, lk := range lists {
							local[w][lk[0]].add(v.seed, lk, seq)
						}
					}
				}
				close(b.done)
			}
		})
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		for b := range inOrder {
			<-b.done
			for i := range b.items {
				if err == nil {
					err = st.step(&b.items[i])
				}
			}
			if err != nil {
				select {
				case <-quit:
				default:
					close(quit)
				}
			}
		}
		errc <- err
	}()

	var ctxErr error
	c := v.tx.Bucket(bucketEntries).Cursor()
	b := &batch{done: make(chan struct{})}
	send := func() bool {
		select {
		case <-quit:
			return false
		case work <- b:
		}
		inOrder <- b
		b = &batch{done: make(chan struct{}), items: make([]item, 0, verifyBatch)}
		return true
	}
	n := 0
	for k, val := c.First(); k != nil; k, val = c.Next() {
		b.items = append(b.items, item{key: k, val: val})
		if len(b.items) == verifyBatch && !send() {
			break
		}
		if n++; n&0xfff == 0 {
			if ctxErr = v.ctx.Err(); ctxErr != nil {
				break
			}
		}
	}
	if len(b.items) > 0 && ctxErr == nil {
		send()
	}
	close(work)
	close(inOrder)
	wg.Wait()
	err := <-errc
	if ctxErr != nil {
		return ctxErr
	}
	for w := range local {
		for _, d := range indexedDims {
			v.expected[d].count += local[w][d].count
			v.expected[d].sum += local[w][d].sum
		}
	}
	return err
}

// visitedNode is a stored-level Merkle node the entries give.
type visitedNode struct {
	id   compact.NodeID
	hash []byte
}

// streamState is the sequential part of verification: the chain, the
// checkpoints, the tree, the chains of subjects and practitioners, the
// time blocks and the index digests, entry by entry in log order.
type streamState struct {
	v        *verifier
	recorded head
	last     head     // the previous entry; last.hash is filled in by finish
	lastHash [64]byte // the previous entry's chain hash (GenesisHash before entry 1)
	// broken is the seq of an entry whose prev_hash does not match the
	// entry before it; the next entry decides which of the two is blamed.
	broken uint64
	// pending is a checkpoint size reached but not yet compared: the
	// comparison waits one entry, so that the chain, which can name the
	// exact entry, speaks first.
	pending     uint64
	pendingRoot []byte
	pendingHead string

	rng      *compact.Range
	nodes    []visitedNode
	times    timeAcc
	chains   chainState
	dumpSeq  uint64
	dumpWant []byte
}

func (st *streamState) blame(next string) error {
	if st.broken > 1 && string(st.lastHash[:]) == next { // entry `broken` is intact: its predecessor changed
		return tampered(st.broken-1, "contents altered: its hash no longer matches the prev_hash of entry %d", st.broken)
	}
	return tampered(st.broken, "prev_hash does not match entry %d", st.broken-1)
}

func (st *streamState) step(it *item) error {
	v := st.v
	seq, ok := keySeq(it.key)
	if !ok {
		return tampered(st.last.seq+1, "malformed key %x where entry %d should be", it.key, st.last.seq+1)
	}
	if seq != st.last.seq+1 {
		if st.broken != 0 {
			return tampered(st.broken, "prev_hash does not match entry %d", st.broken-1)
		}
		return tampered(st.last.seq+1, "missing (the next stored entry is %d)", seq)
	}
	f, err := it.sc, it.scanErr
	switch {
	case err == nil && f.seq != seq:
		err = tampered(seq, "seq field is %d but the entry is stored at seq %d", f.seq, seq)
	case err != nil:
		err = tampered(seq, "stored value is not a valid entry: %v", err)
	}
	if err != nil {
		if st.broken != 0 {
			return tampered(st.broken, "prev_hash does not match entry %d", st.broken-1)
		}
		return err
	}
	if st.broken != 0 {
		return st.blame(string(f.prevHash))
	}
	if string(f.prevHash) != string(st.lastHash[:]) {
		st.broken = seq
	}
	if st.pending != 0 && st.broken == 0 {
		if err := v.compare(st.pending, st.pendingRoot, st.pendingHead); err != nil {
			return err
		}
		st.pending = 0
	}
	st.last.seq, st.lastHash = seq, it.hash

	if err := st.rng.Append(it.leaf[:], func(id compact.NodeID, h []byte) {
		if storedLevel(id.Level) {
			st.nodes = append(st.nodes, visitedNode{id: id, hash: bytes.Clone(h)})
		}
	}); err != nil {
		return err
	}
	if _, ok := v.expect[seq]; ok {
		st.pending, st.pendingHead = seq, string(st.lastHash[:])
		if st.pendingRoot, err = st.rng.GetRootHash(nil); err != nil {
			return err
		}
	}
	if p := st.chains.step(chainSubject, f.fields.subject, seq); p != f.prevSubject {
		return tampered(seq, "prev_subject is %d but the previous entry about the same child is %d (a broken chain: an entry was removed, moved or rewritten)", f.prevSubject, p)
	}
	if p := st.chains.step(chainPractitioner, f.fields.practitioner, seq); p != f.prevPractitioner {
		return tampered(seq, "prev_practitioner is %d but the previous entry by the same practitioner is %d (a broken chain: an entry was removed, moved or rewritten)", f.prevPractitioner, p)
	}
	if seq == st.dumpSeq {
		st.dumpWant = st.chains.dump()
	}
	st.times.add(seq, f.fields.at.Unix())
	return nil
}

// finish resolves what the last entry left open: a broken link, the
// recorded head, a pending checkpoint, checkpoints beyond the end.
func (st *streamState) finish() error {
	if st.last.seq > 0 {
		st.last.hash = string(st.lastHash[:])
	}
	if st.broken != 0 {
		return st.blame(st.recorded.hash)
	}
	if err := checkHead(st.recorded, st.last.seq, st.last.hash); err != nil {
		return err
	}
	if st.pending != 0 {
		if err := st.v.compare(st.pending, st.pendingRoot, st.pendingHead); err != nil {
			return err
		}
	}
	if err := st.v.checkBeyond(st.last.seq); err != nil {
		return err
	}
	if st.v.storedBad != nil {
		return st.v.storedBad
	}
	return nil
}

// loadCheckpoints reads the stored checkpoints and the external ones,
// checking signatures if keys were given.
func (v *verifier) loadCheckpoints(rep *Report) error {
	v.expect = map[uint64][]expectation{}
	c := v.tx.Bucket(bucketCheckpoints).Cursor()
	for k, val := c.First(); k != nil; k, val = c.Next() {
		size, ok := keySeq(k)
		if !ok {
			return tampered(0, "malformed key %x in bucket %q", k, bucketCheckpoints)
		}
		cp, err := ParseCheckpoint(val, v.o.Keys)
		if err != nil {
			return &TamperError{Checkpoint: size, Reason: fmt.Sprintf("stored checkpoint at size %d: %v (forged or altered)", size, err)}
		}
		if cp.Size != size {
			return &TamperError{Checkpoint: size, Reason: fmt.Sprintf("stored checkpoint at key %d states size %d (moved)", size, cp.Size)}
		}
		v.expect[size] = append(v.expect[size], expectation{cp: cp, source: "stored checkpoint"})
		rep.Checkpoints++
		rep.Latest = cp
	}
	for _, x := range v.o.Checkpoints {
		cp, err := ParseCheckpoint(x.JWS, v.o.Keys)
		if err != nil {
			return fmt.Errorf("external checkpoint %s: %w", x.Name, err)
		}
		v.expect[cp.Size] = append(v.expect[cp.Size], expectation{cp: cp, source: "external checkpoint " + x.Name, external: true})
		v.maxExternal = max(v.maxExternal, cp.Size)
		rep.External = append(rep.External, cp)
	}
	for s := range v.expect {
		v.sizes = append(v.sizes, s)
	}
	slices.Sort(v.sizes)
	return nil
}

// compare checks every checkpoint of size n against the recomputed root
// and head at n.
//
// Checkpoints given from outside the file are authoritative: the
// checkpoints stored in the file were signed with a key that may sit on
// the same disk (the local key store), so a rewrite re-signed with it
// leaves stored checkpoints that match the forged entries. When external
// checkpoints are given, only they narrow a mismatch down: the damage is
// reported between the last external checkpoint that still matches and
// the earliest one (or stored one) that does not. A stored checkpoint
// that does not match, with an external one at or beyond its size still
// to come, is held: if that external checkpoint matches, the entries are
// intact and the stored checkpoint is what was changed.
func (v *verifier) compare(n uint64, root []byte, headHash string) error {
	rootHex := hex.EncodeToString(root)
	matches := func(x expectation) bool { return x.cp.Root == rootHex && x.cp.Head == headHash }
	genuine := false
	for _, x := range v.expect[n] {
		if x.external {
			if !matches(x) {
				return v.differs(n, x)
			}
			genuine = true
		}
	}
	for _, x := range v.expect[n] {
		if !x.external && !matches(x) {
			if genuine || v.maxExternal > n {
				if v.storedBad == nil {
					v.storedBad = v.differs(n, x)
				}
				continue
			}
			return v.differs(n, x)
		}
	}
	if genuine {
		v.lastGenuine = n
		if bad := v.storedBad; bad != nil {
			return &TamperError{Checkpoint: bad.Checkpoint, Reason: fmt.Sprintf(
				"the stored checkpoint at size %d does not match the log, but the external checkpoint at size %d, which covers it, does: the entries are intact and the stored checkpoint was altered or forged",
				bad.Checkpoint, n)}
		}
	}
	v.lastGood = n
	return nil
}

// differs is the error for checkpoint x of size n that no longer matches:
// the entries from the last checkpoint still trusted to match (external
// ones only, when any were given) to n.
func (v *verifier) differs(n uint64, x expectation) *TamperError {
	lower, narrowed := v.lastGood, "no earlier checkpoint narrows it down"
	switch {
	case v.maxExternal > 0 && v.lastGenuine > 0:
		lower, narrowed = v.lastGenuine, fmt.Sprintf("the external checkpoint at %d still matches; stored checkpoints are not trusted to narrow it down, since they could have been re-signed", v.lastGenuine)
	case v.maxExternal > 0:
		lower, narrowed = 0, "no earlier external checkpoint narrows it down; stored checkpoints are not trusted to, since they could have been re-signed"
	case lower > 0:
		narrowed = fmt.Sprintf("the checkpoint at %d still matches", lower)
	}
	return &TamperError{Seq: lower + 1, Last: n, Checkpoint: n, Reason: fmt.Sprintf(
		"the Merkle root over entries 1 to %d is not the one in the %s signed at %s: one of these entries was changed, removed, inserted or moved, and the chain recomputed to hide it (%s)",
		n, x.source, x.cp.Time.Format(time.RFC3339), narrowed)}
}

// checkBeyond reports a checkpoint that covers more entries than the log
// holds: the tail was cut off.
func (v *verifier) checkBeyond(n uint64) error {
	for _, s := range v.sizes {
		if s > n {
			x := v.expect[s][0]
			return &TamperError{Seq: n + 1, Last: s, Checkpoint: s, Reason: fmt.Sprintf(
				"missing: the %s signed at %s covers %d entries but the log ends at %d (truncated tail)",
				x.source, x.cp.Time.Format(time.RFC3339), s, n)}
		}
	}
	return nil
}

// checkTimes compares the stored time blocks with the entries' times.
func (v *verifier) checkTimes(acc timeAcc, n uint64) error {
	var want []timeSummary
	if acc.started {
		want = append(acc.done, acc.cur)
	}
	c := v.tx.Bucket(bucketTimes).Cursor()
	i := 0
	for k, val := c.First(); k != nil; k, val = c.Next() {
		s, ok := parseTimeSummary(k, val)
		if !ok || i >= len(want) || s != want[i] {
			block := uint64(i)
			if ok {
				block = s.block
			}
			return tampered(0, "time index block %d (entries %d to %d) does not match the entries' times (queries by time could miss entries)",
				block, block*timeBlock+1, min((block+1)*timeBlock, max(n, 1)))
		}
		i++
	}
	if i != len(want) {
		return tampered(0, "the time index has %d blocks; the entries give %d", i, len(want))
	}
	tail := v.tx.Bucket(bucketMeta).Get(metaTimeTail)
	if (len(want) == 0 && tail != nil) || (len(want) > 0 && !bytes.Equal(tail, want[len(want)-1].key())) {
		return tampered(0, "meta %q does not name the last time block", metaTimeTail)
	}
	return nil
}

// checkPostings walks every posting chunk, checks its shape and compares
// the postings, dim by dim, with those the entries give. It returns the
// number of postings.
func (v *verifier) checkPostings(n uint64) (uint64, error) {
	stored := map[byte]*digest{}
	for _, d := range indexedDims {
		stored[d] = &digest{}
	}
	var (
		total   uint64
		prevKey listKey
		prevEnd uint64
		seqs    []uint64
	)
	c := v.tx.Bucket(bucketPostings).Cursor()
	for k, val := c.First(); k != nil; k, val = c.Next() {
		if len(k) != 17 || stored[k[0]] == nil {
			return 0, tampered(0, "malformed posting key %x", k)
		}
		var lk listKey
		copy(lk[:], k[:9])
		first := binary.BigEndian.Uint64(k[9:])
		var ok bool
		seqs, ok = decodeChunk(seqs[:0], first, val)
		if !ok || len(seqs) > chunkCap || first == 0 || seqs[len(seqs)-1] > n {
			return 0, tampered(0, "posting chunk %x is malformed or names entries beyond the log", k)
		}
		if lk == prevKey && first <= prevEnd {
			return 0, tampered(first, "posting chunk %x overlaps the chunk before it", k)
		}
		prevKey, prevEnd = lk, seqs[len(seqs)-1]
		for _, s := range seqs {
			stored[lk[0]].add(v.seed, lk, s)
		}
		total += uint64(len(seqs))
	}
	for _, d := range indexedDims {
		if *stored[d] != *v.expected[d] {
			return 0, v.locatePostingDamage(d, n)
		}
	}
	return total, nil
}

// locatePostingDamage finds the first entry whose posting in dim d is
// wrong (missing, extra or in the wrong list). It is the slow path, run
// only once the digests differ.
func (v *verifier) locatePostingDamage(d byte, n uint64) error {
	name := map[byte]string{dimRequester: "requester", dimProvider: "provider", dimPurpose: "purpose", dimKind: "kind", dimDecision: "decision", dimOverride: "override", dimProtocol: "protocol", dimReview: "review"}[d]
	storedBy := map[uint64][]listKey{}
	c := v.tx.Bucket(bucketPostings).Cursor()
	var seqs []uint64
	for k, val := c.Seek([]byte{d}); k != nil && k[0] == d; k, val = c.Next() {
		var lk listKey
		copy(lk[:], k[:9])
		seqs, _ = decodeChunk(seqs[:0], binary.BigEndian.Uint64(k[9:]), val)
		for _, s := range seqs {
			storedBy[s] = append(storedBy[s], lk)
		}
	}
	var lists []listKey
	ec := v.tx.Bucket(bucketEntries).Cursor()
	for k, val := ec.First(); k != nil; k, val = ec.Next() {
		seq, _ := keySeq(k)
		f, err := scanEntry(val)
		if err != nil {
			return tampered(seq, "stored value is not a valid entry: %v", err)
		}
		var want []listKey
		lists = f.fields.lists(lists[:0])
		for _, lk := range lists {
			if lk[0] == d {
				want = append(want, lk)
			}
		}
		if !slices.Equal(want, storedBy[seq]) {
			return tampered(0, "the %s index is wrong for entry %d (queries by %s would miss or misreport it)", name, seq, name)
		}
		delete(storedBy, seq)
	}
	for s := range storedBy {
		return tampered(0, "the %s index lists entry %d, which is not in the log", name, s)
	}
	return tampered(0, "the %s index does not match the entries", name)
}

// chainState follows the chains while Verify streams the entries,
// allocating only for new values.
type chainState map[string]*uint64

// step records seq as the newest entry with value v in chain dim and
// returns the previous one (0 for none or an empty value).
func (c chainState) step(dim byte, v []byte, seq uint64) uint64 {
	if len(v) == 0 {
		return 0
	}
	var buf [80]byte
	k := append(append(buf[:0], dim), v...)
	if p := c[string(k)]; p != nil {
		prev := *p
		*p = seq
		return prev
	}
	s := seq
	c[string(k)] = &s
	return 0
}

func (c chainState) dump() []byte {
	h := make(heads, len(c))
	for k, p := range c {
		h[k] = *p
	}
	return h.dump()
}
