package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Chains. Subject and Practitioner take very many values (every child,
// every practitioner), so a posting index on them would dirty a random
// page on nearly every append. Instead each entry carries the seq of the
// previous entry with the same value (Entry.PrevSubject,
// Entry.PrevPractitioner, assigned by the log), and the log keeps the
// newest seq of every value, the heads, in memory. A query for a subject
// starts at its head, or at the cursor, and follows the chain down: k
// entries cost k reads. The links are part of the stored bytes, so the
// Merkle tree commits to them: the entries about one child join up, and
// an access report can show there is no gap between them.
//
// The heads are rebuilt on open from the last dump in bucket "heads" and
// the entries after it. A dump is written in the append transaction that
// reaches a multiple of headsDumpEvery entries: key = the seq it is as of
// (8 bytes big-endian), value = for each head in key order: dim (1 byte),
// uvarint length, the value, uvarint seq. The previous dump is deleted in
// the same transaction.

const (
	chainSubject      = 's'
	chainPractitioner = 'p'
)

// headsDumpEvery is the spacing of the heads dumps (a variable for tests).
var headsDumpEvery uint64 = 1 << 16

var bucketHeads = []byte("heads")

// heads maps chainKey(dim, value) to the newest seq with that value.
type heads map[string]uint64

func chainKey(dim byte, v string) string { return string(dim) + v }

// linker assigns the chain links of a batch on top of the committed
// heads, without changing them until the batch commits.
type linker struct {
	base    heads
	overlay map[string]uint64
}

func newLinker(base heads) *linker { return &linker{base: base, overlay: map[string]uint64{}} }

func (l *linker) newestKey(k string) uint64 {
	if s, ok := l.overlay[k]; ok {
		return s
	}
	return l.base[k]
}

// encode links e into the chains as entry seq and encodes it, splicing
// into tmpl (marshalTemplate's, or nil to encode in full); the links are
// recorded only if it encodes. e is the log's own copy of the entry
// (newAppendReq's), completed in place.
func (l *linker) encode(e *Entry, tmpl []byte, seq uint64, prevHash string) (record, error) {
	var ks, kp string // each chain key is built once
	if e.Subject != "" {
		ks = chainKey(chainSubject, e.Subject)
		e.PrevSubject = l.newestKey(ks)
	}
	if e.Practitioner != "" {
		kp = chainKey(chainPractitioner, e.Practitioner)
		e.PrevPractitioner = l.newestKey(kp)
	}
	var rec record
	if tmpl != nil {
		e.Seq, e.PrevHash = seq, prevHash
		val := splice(tmpl, seq, e.PrevSubject, e.PrevPractitioner, prevHash)
		leaf := leafHash(val)
		e.Hash = hex.EncodeToString(leaf)
		rec = record{entry: e, val: val, hash: e.Hash, leaf: leaf}
	} else {
		var err error
		if rec, err = encodeEntry(*e, seq, prevHash); err != nil {
			return rec, err
		}
	}
	if ks != "" {
		l.overlay[ks] = seq
	}
	if kp != "" {
		l.overlay[kp] = seq
	}
	return rec, nil
}

// merged returns the heads after the batch, as a new map.
func (l *linker) merged() heads {
	m := maps.Clone(l.base)
	if m == nil {
		m = heads{}
	}
	maps.Copy(m, l.overlay)
	return m
}

func (h heads) dump() []byte {
	keys := slices.Sorted(maps.Keys(h))
	var b []byte
	for _, k := range keys {
		b = append(b, k[0])
		b = binary.AppendUvarint(b, uint64(len(k)-1))
		b = append(b, k[1:]...)
		b = binary.AppendUvarint(b, h[k])
	}
	return b
}

func parseDump(v []byte) (heads, bool) {
	h := heads{}
	for len(v) > 0 {
		dim := v[0]
		n, w := binary.Uvarint(v[1:])
		if w <= 0 || uint64(len(v)-1-w) < n {
			return nil, false
		}
		val := string(v[1+w : 1+w+int(n)])
		v = v[1+w+int(n):]
		seq, w := binary.Uvarint(v)
		if w <= 0 || (dim != chainSubject && dim != chainPractitioner) {
			return nil, false
		}
		h[chainKey(dim, val)] = seq
		v = v[w:]
	}
	return h, true
}

// writeHeadsDump records h as of seq and deletes older dumps.
func writeHeadsDump(tx *bolt.Tx, seq uint64, h heads) error {
	b := tx.Bucket(bucketHeads)
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return b.Put(seqKey(seq), h.dump())
}

// dumpDue reports whether appending after from up to to crosses a
// multiple of headsDumpEvery.
func dumpDue(from, to uint64) bool { return from/headsDumpEvery != to/headsDumpEvery }

// loadHeads rebuilds the heads of a log of n entries: the last dump, then
// the entries after it.
func loadHeads(tx *bolt.Tx, n uint64) (heads, error) {
	h := heads{}
	var from uint64
	if k, v := tx.Bucket(bucketHeads).Cursor().Last(); k != nil {
		s, ok := keySeq(k)
		d, ok2 := parseDump(v)
		if !ok || !ok2 || s > n {
			return nil, tampered(0, "the chain heads dump %x is malformed or beyond the log", k)
		}
		h, from = d, s
	}
	c := tx.Bucket(bucketEntries).Cursor()
	var key []byte
	for k, v := c.Seek(seqKey(from + 1)); k != nil; k, v = c.Next() {
		seq, _ := keySeq(k)
		subject, practitioner, ok := chainFields(v)
		if !ok {
			f, err := scanEntry(v)
			if err != nil {
				return nil, tampered(seq, "stored value is not a valid entry: %v", err)
			}
			subject, practitioner = f.fields.subject, f.fields.practitioner
		}
		if len(subject) > 0 {
			key = append(append(key[:0], chainSubject), subject...)
			h[string(key)] = seq
		}
		if len(practitioner) > 0 {
			key = append(append(key[:0], chainPractitioner), practitioner...)
			h[string(key)] = seq
		}
	}
	return h, nil
}

// The keys of the chained fields as the canonical form writes them.
var (
	keySubject      = []byte(`"subject":"`)
	keyPractitioner = []byte(`"practitioner":"`)
)

// chainFields finds the subject and practitioner of a stored entry
// without parsing it: Open replays up to headsDumpEvery entries to
// rebuild the heads, and a full scan (scanEntry) of each is most of the
// time a restart takes. Sound for any entry Append wrote: the stored form
// is canonical JSON of a flat object (strings, numbers, booleans, arrays
// of strings: no nested objects), so every '"' inside a value is escaped
// and `"subject":"` can only be that key, which occurs at most once; keys
// are sorted, so the subject follows the practitioner. ok is false, for
// scanEntry to decide, when a value holds an escape or does not end. A
// damaged entry may yield a wrong head, hence a wrong link in a later
// entry; Verify reports the damaged entry itself first (it walks in
// order), so nothing is hidden.
func chainFields(v []byte) (subject, practitioner []byte, ok bool) {
	value := func(v, key []byte) (val, rest []byte, ok bool) {
		i := bytes.Index(v, key)
		if i < 0 {
			return nil, v, true
		}
		v = v[i+len(key):]
		j := bytes.IndexByte(v, '"')
		if j < 0 || bytes.IndexByte(v[:j], '\\') >= 0 {
			return nil, nil, false
		}
		return v[:j], v[j:], true
	}
	practitioner, rest, ok := value(v, keyPractitioner)
	if !ok {
		return nil, nil, false
	}
	subject, _, ok = value(rest, keySubject)
	return subject, practitioner, ok
}

// chainIter walks one chain downwards by floor lookups.
type chainIter struct {
	entries *bolt.Bucket
	dim     byte
	cur     uint64 // the largest seq of the chain not yet ruled out; 0: exhausted
}

// floor returns the largest seq <= s in the chain, or 0.
func (it *chainIter) floor(s uint64) (uint64, error) {
	for it.cur > s {
		v := it.entries.Get(seqKey(it.cur))
		if v == nil {
			return 0, tampered(it.cur, "missing (linked from a later entry)")
		}
		f, err := scanEntry(v)
		if err != nil {
			return 0, tampered(it.cur, "stored value is not a valid entry: %v", err)
		}
		next := f.prevSubject
		if it.dim == chainPractitioner {
			next = f.prevPractitioner
		}
		if next >= it.cur {
			return 0, tampered(it.cur, "chain link %d does not point to an earlier entry", next)
		}
		it.cur = next
	}
	return it.cur, nil
}
