package audit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The query index, written in the transaction that appends the entries.
//
// Posting lists. For each indexed field value there is a list of the
// seqs of the entries that carry it, in log order. A list is identified
// by listKey = dim (1 byte) || FNV-1a-64(value) (8 bytes big-endian) and
// stored in bucket "postings" as chunks: key = listKey || first seq (8
// bytes big-endian), value = the uvarint gaps between the chunk's
// successive seqs after the first (empty for a chunk of one), at most
// chunkCap seqs a chunk. A value hash shared by two values only costs an
// extra read: every query re-checks the entries it returns against the
// full filter, so results are exact.
//
// Time blocks. Entry times are request times, close to log order but not
// exactly in it. Bucket "times" summarises each block of timeBlock seqs:
// key = maxSoFar (8) || block number (8), value = min (8), where min is
// the earliest time in the block and maxSoFar the latest time in the log
// up to the block's end, both in whole Unix seconds, sign-flipped so they
// sort as unsigned big-endian. maxSoFar never decreases, so a seek finds
// the first block that can hold a time at or after a bound; meta
// "time_tail" holds the key of the last block, which is rewritten as it
// fills.

// dims of the posting lists. Subject and practitioner are not among them:
// they are chains (chains.go).
const (
	dimRequester = 'r'
	dimProvider  = 'v'
	dimPurpose   = 'u'
	dimKind      = 'k'
	dimDecision  = 'd'
	dimOverride  = 'o' // one list: every entry that invoked a safeguarding override
	dimProtocol  = 'c'
	dimReview    = 'w'
)

// indexedDims lists every dim, for verification.
var indexedDims = []byte{dimRequester, dimProvider, dimPurpose, dimKind, dimDecision, dimOverride, dimProtocol, dimReview}

const (
	chunkCap  = 128
	timeBlock = 256
)

type listKey [9]byte

// fnv64a is FNV-1a over the bytes of v.
func fnv64a[S ~string | ~[]byte](v S) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(v); i++ {
		h ^= uint64(v[i])
		h *= prime
	}
	return h
}

func makeListKey[S ~string | ~[]byte](dim byte, value S) listKey {
	var k listKey
	k[0] = dim
	binary.BigEndian.PutUint64(k[1:], fnv64a(value))
	return k
}

func chunkKey(lk listKey, first uint64) []byte {
	k := make([]byte, 17)
	copy(k, lk[:])
	binary.BigEndian.PutUint64(k[9:], first)
	return k
}

// indexFields are the fields of an entry the index is built from. The
// append path fills them from an Entry (S = string), Verify from the
// stored bytes (S = []byte), and both derive the lists with the same code.
type indexFields[S ~string | ~[]byte] struct {
	subject, requester, practitioner, provider, purpose, protocol S
	kind, decision, overrideGround, reviewID                      S
	override                                                      bool
	at                                                            time.Time
}

func fieldsOf(e *Entry) indexFields[string] {
	return indexFields[string]{
		subject: e.Subject, requester: e.Requester, practitioner: e.Practitioner, provider: e.Provider,
		purpose: e.Purpose, protocol: e.Protocol, kind: string(e.Kind), decision: e.Decision,
		overrideGround: e.OverrideGround, reviewID: e.ReviewID, override: e.Override, at: e.Time,
	}
}

// field returns the address of the string field for Entry field name, or
// nil if it is not indexed.
func (f *indexFields[S]) field(name string) *S {
	switch name {
	case "Subject":
		return &f.subject
	case "Requester":
		return &f.requester
	case "Practitioner":
		return &f.practitioner
	case "Provider":
		return &f.provider
	case "Purpose":
		return &f.purpose
	case "Protocol":
		return &f.protocol
	case "Kind":
		return &f.kind
	case "Decision":
		return &f.decision
	case "OverrideGround":
		return &f.overrideGround
	case "ReviewID":
		return &f.reviewID
	}
	return nil
}

// invokedOverride reports whether an entry records a safeguarding
// override being invoked (allowed on it, or claimed).
func invokedOverride(override bool, groundLen int) bool { return override || groundLen > 0 }

// lists appends the list keys of f's postings to dst.
func (f *indexFields[S]) lists(dst []listKey) []listKey {
	add := func(dim byte, v S) {
		if len(v) > 0 {
			dst = append(dst, makeListKey(dim, v))
		}
	}
	add(dimRequester, f.requester)
	add(dimProvider, f.provider)
	add(dimPurpose, f.purpose)
	dst = append(dst, makeListKey(dimKind, f.kind)) // every entry has a kind
	add(dimDecision, f.decision)
	if invokedOverride(f.override, len(f.overrideGround)) {
		dst = append(dst, makeListKey(dimOverride, ""))
	}
	add(dimProtocol, f.protocol)
	add(dimReview, f.reviewID)
	return dst
}

// unixKey flips the sign bit so that seconds sort as unsigned big-endian.
func unixKey(sec int64) uint64 { return uint64(sec) ^ 1<<63 }
func keyUnix(k uint64) int64   { return int64(k ^ 1<<63) }

// timeSummary is one time block.
type timeSummary struct {
	block         uint64
	min, maxSoFar int64
}

func (s timeSummary) key() []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, unixKey(s.maxSoFar))
	binary.BigEndian.PutUint64(k[8:], s.block)
	return k
}

func (s timeSummary) value() []byte {
	return binary.BigEndian.AppendUint64(nil, unixKey(s.min))
}

func parseTimeSummary(k, v []byte) (timeSummary, bool) {
	if len(k) != 16 || len(v) != 8 {
		return timeSummary{}, false
	}
	return timeSummary{
		block:    binary.BigEndian.Uint64(k[8:]),
		maxSoFar: keyUnix(binary.BigEndian.Uint64(k)),
		min:      keyUnix(binary.BigEndian.Uint64(v)),
	}, true
}

// timeAcc accumulates time blocks over entries appended in seq order.
type timeAcc struct {
	cur     timeSummary
	started bool
	done    []timeSummary // completed or touched blocks, in order
}

func (a *timeAcc) add(seq uint64, unix int64) {
	b := (seq - 1) / timeBlock
	switch {
	case !a.started:
		a.cur = timeSummary{block: b, min: unix, maxSoFar: unix}
		a.started = true
	case b == a.cur.block:
		a.cur.min = min(a.cur.min, unix)
		a.cur.maxSoFar = max(a.cur.maxSoFar, unix)
	default:
		a.done = append(a.done, a.cur)
		a.cur = timeSummary{block: b, min: unix, maxSoFar: max(a.cur.maxSoFar, unix)}
	}
}

// indexBatch collects the postings and times of one append transaction.
type indexBatch struct {
	lists map[listKey][]uint64
	times []struct {
		seq  uint64
		unix int64
	}
	scratch []listKey
}

func newIndexBatch() *indexBatch { return &indexBatch{lists: map[listKey][]uint64{}} }

func (b *indexBatch) add(seq uint64, e *Entry) {
	f := fieldsOf(e)
	b.scratch = f.lists(b.scratch[:0])
	for _, lk := range b.scratch {
		b.lists[lk] = append(b.lists[lk], seq)
	}
	b.times = append(b.times, struct {
		seq  uint64
		unix int64
	}{seq, f.at.Unix()})
}

// write adds the batch to the posting lists and time blocks.
func (b *indexBatch) write(tx *bolt.Tx) error {
	if err := b.writeTimes(tx); err != nil {
		return err
	}
	post := tx.Bucket(bucketPostings)
	// Each list grows at its own end (its last chunk, then a new chunk
	// keyed just above it): pack pages full rather than half.
	post.FillPercent = 1.0
	keys := make([]listKey, 0, len(b.lists))
	for k := range b.lists {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b listKey) int { return bytes.Compare(a[:], b[:]) })
	c := post.Cursor()
	var buf []byte
	for _, lk := range keys {
		seqs := b.lists[lk]
		// The list's last chunk, if any.
		var (
			lastKey []byte
			count   int
			lastSeq uint64
		)
		k, v := c.Seek(chunkKey(lk, 1<<64-1))
		if k == nil {
			k, v = c.Last()
		} else if !bytes.Equal(k, chunkKey(lk, 1<<64-1)) {
			k, v = c.Prev()
		}
		if k != nil && len(k) == 17 && bytes.Equal(k[:9], lk[:]) {
			first := binary.BigEndian.Uint64(k[9:])
			n, last, ok := chunkTail(first, v)
			if !ok {
				return tampered(0, "posting chunk %x is malformed", k)
			}
			lastKey, count, lastSeq = bytes.Clone(k), n, last
			buf = append(buf[:0], v...)
		}
		for _, s := range seqs {
			if lastKey != nil && s <= lastSeq {
				return tampered(s, "posting list %x already holds seq %d or later", lk[:], lastSeq)
			}
			if lastKey == nil || count >= chunkCap {
				if lastKey != nil {
					if err := post.Put(lastKey, bytes.Clone(buf)); err != nil {
						return err
					}
				}
				lastKey, count, lastSeq, buf = chunkKey(lk, s), 1, s, buf[:0]
				continue
			}
			buf = binary.AppendUvarint(buf, s-lastSeq)
			count++
			lastSeq = s
		}
		if err := post.Put(lastKey, bytes.Clone(buf)); err != nil {
			return err
		}
	}
	return nil
}

func (b *indexBatch) writeTimes(tx *bolt.Tx) error {
	if len(b.times) == 0 {
		return nil
	}
	times := tx.Bucket(bucketTimes)
	meta := tx.Bucket(bucketMeta)
	var acc timeAcc
	tailKey := meta.Get(metaTimeTail)
	if tailKey != nil {
		tailKey = bytes.Clone(tailKey)
		s, ok := parseTimeSummary(tailKey, times.Get(tailKey))
		if !ok {
			return tampered(0, "the last time block is missing or malformed")
		}
		acc.cur, acc.started = s, true
	}
	for _, t := range b.times {
		acc.add(t.seq, t.unix)
	}
	acc.done = append(acc.done, acc.cur)
	// The old tail is rewritten under its new key (maxSoFar may have grown).
	if tailKey != nil {
		if err := times.Delete(tailKey); err != nil {
			return err
		}
	}
	times.FillPercent = 1.0
	for _, s := range acc.done {
		if err := times.Put(s.key(), s.value()); err != nil {
			return err
		}
	}
	return meta.Put(metaTimeTail, acc.cur.key())
}

// chunkTail returns the number of seqs in a chunk and its last seq.
func chunkTail(first uint64, v []byte) (n int, last uint64, ok bool) {
	n, last = 1, first
	for len(v) > 0 {
		d, w := binary.Uvarint(v)
		if w <= 0 || d == 0 {
			return 0, 0, false
		}
		last += d
		n++
		v = v[w:]
	}
	return n, last, n <= chunkCap
}

// decodeChunk appends the seqs of a chunk to dst.
func decodeChunk(dst []uint64, first uint64, v []byte) ([]uint64, bool) {
	dst = append(dst, first)
	s := first
	for len(v) > 0 {
		d, w := binary.Uvarint(v)
		if w <= 0 || d == 0 || s+d < s {
			return dst, false
		}
		s += d
		dst = append(dst, s)
		v = v[w:]
	}
	return dst, true
}

// seqRange returns the seqs [lo, hi] that can hold an entry with a time
// in [from, to) (a zero bound is open) in a log of n entries, from the
// time blocks: a superset, which callers narrow by each entry's time.
// lo > hi means none.
func seqRange(tx *bolt.Tx, n uint64, from, to time.Time) (lo, hi uint64, err error) {
	lo, hi = 1, n
	c := tx.Bucket(bucketTimes).Cursor()
	if !from.IsZero() {
		k, v := c.Seek(binary.BigEndian.AppendUint64(nil, unixKey(from.Unix())))
		if k == nil {
			return 1, 0, nil
		}
		s, ok := parseTimeSummary(k, v)
		if !ok {
			return 0, 0, tampered(0, "time block %x is malformed", k)
		}
		lo = s.block*timeBlock + 1
	}
	if !to.IsZero() {
		bound := to.Unix() // an entry before `to` has whole seconds <= bound
		k, v := c.Last()
		for ; k != nil; k, v = c.Prev() {
			s, ok := parseTimeSummary(k, v)
			if !ok {
				return 0, 0, tampered(0, "time block %x is malformed", k)
			}
			if s.min <= bound {
				hi = min(hi, (s.block+1)*timeBlock)
				break
			}
		}
		if k == nil {
			return 1, 0, nil
		}
	}
	return lo, hi, nil
}

// listIter walks one posting list downwards by floor lookups.
type listIter struct {
	c     *bolt.Cursor
	key   listKey
	seqs  []uint64 // the loaded chunk
	bound uint64   // the chunk covers [seqs[0], bound] at least
}

// floor returns the largest seq <= s in the list, or 0 if there is none.
func (it *listIter) floor(s uint64) (uint64, error) {
	if len(it.seqs) == 0 || s < it.seqs[0] || s > it.bound {
		want := chunkKey(it.key, s)
		k, v := it.c.Seek(want)
		switch {
		case k == nil:
			k, v = it.c.Last()
		case !bytes.Equal(k, want):
			k, v = it.c.Prev()
		}
		if k == nil || len(k) != 17 || !bytes.Equal(k[:9], it.key[:]) {
			it.seqs = it.seqs[:0]
			return 0, nil
		}
		var ok bool
		it.seqs, ok = decodeChunk(it.seqs[:0], binary.BigEndian.Uint64(k[9:]), v)
		if !ok {
			return 0, tampered(0, "posting chunk %x is malformed", k)
		}
		it.bound = s
	}
	i, found := slices.BinarySearch(it.seqs, s)
	if found {
		return s, nil
	}
	if i == 0 {
		return 0, fmt.Errorf("posting chunk does not cover seq %d", s) // cannot happen: seqs[0] <= s
	}
	return it.seqs[i-1], nil
}
