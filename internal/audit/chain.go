package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/gowebpki/jcs"
	bolt "go.etcd.io/bbolt"
)

// GenesisHash is the PrevHash of entry 1 and the head hash of an empty
// log: 64 '0's.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// formatVersion is the on-disk format this package writes and reads:
// each entry stored as the RFC 8785 (JCS) canonical JSON of the entry as
// the API shows it, without "hash" (docs/audit-format.md). Version 1
// (no Merkle tree, no indexes) is refused; versions 2 and 3 (short
// stored names, legacy.go) are refused by Open and carried into this
// format by Migrate.
const formatVersion uint64 = 4

var (
	bucketEntries     = []byte("entries")
	bucketMeta        = []byte("meta")
	bucketTree        = []byte("tree")        // stored Merkle nodes (merkle.go)
	bucketPostings    = []byte("postings")    // query index (index.go)
	bucketTimes       = []byte("times")       // time blocks (index.go)
	bucketCheckpoints = []byte("checkpoints") // signed checkpoints (checkpoint.go)

	// allBuckets is every bucket of a version-2 file, in creation order.
	allBuckets = [][]byte{bucketEntries, bucketMeta, bucketTree, bucketPostings, bucketTimes, bucketCheckpoints, bucketHeads}

	metaVersion   = []byte("version")    // big-endian uint64
	metaHeadSeq   = []byte("head_seq")   // big-endian uint64; 0 for an empty log
	metaHeadHash  = []byte("head_hash")  // the head entry's hash (hashHex)
	metaTreeRange = []byte("tree_range") // the compact range [0, head_seq): popcount(head_seq) 32-byte hashes
	metaTimeTail  = []byte("time_tail")  // the key of the last time block (index.go)
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

// hashHex returns the entry hash of stored bytes E, which is also what
// the next entry's prev_hash holds: lowercase hex of the Merkle leaf hash
// SHA-256(0x00 || E). One hash serves the chain and the tree.
func hashHex(stored []byte) string {
	return hex.EncodeToString(leafHash(stored))
}

// --- the stored encoding -------------------------------------------------

// v3Names maps an Entry field's JSON name to the name it had in the
// stored bytes of format 3 (legacy.go reads them for Migrate). Format 4
// stores every field under its JSON name.
var v3Names = map[string]string{
	"seq":                  "n",
	"time":                 "t",
	"request_id":           "i",
	"kind":                 "k",
	"method":               "m",
	"path":                 "u",
	"status":               "st",
	"requester":            "r",
	"practitioner":         "pr",
	"role":                 "rl",
	"token_id":             "j",
	"provider":             "pv",
	"purpose":              "pu",
	"subject":              "s",
	"categories":           "c",
	"decision":             "d",
	"allowed_categories":   "a",
	"reasons":              "w",
	"protocol":             "p",
	"protocol_version":     "v",
	"rule":                 "ru",
	"lawful_basis":         "l",
	"override_ground":      "og",
	"policy_revision":      "q",
	"input_residual":       "x",
	"override":             "o",
	"review_id":            "rv",
	"consents":             "cs",
	"refusals_on_record":   "rf",
	"consent_id":           "ci",
	"consent_action":       "ca",
	"receipt_id":           "rc",
	"review_outcome":       "ro",
	"disclosed_categories": "dc",
	"disclosed_fields":     "df",
	"disclosed_sha256":     "dh",
	"provider_error":       "pe",
	"notification_ids":     "ni",
	"lead_partner":         "lp",
	"lead_practitioner":    "lq",
	"error":                "e",
	"prev_subject":         "ps",
	"prev_practitioner":    "pp",
	"prev_hash":            "h",
	"hash":                 "-", // never stored
}

var (
	entryType = reflect.TypeFor[Entry]()
	// storedType is Entry with Hash left out (it is never stored): the
	// same fields, names, layout and order, so an *Entry can be viewed as
	// a pointer to it (asStored).
	storedType = buildStoredType(nil, false)
	// v3Type is Entry as format 3 stored it: the json tags rewritten to
	// the short names of v3Names, and the time and the hex identifiers
	// given the types that encoded them (codec.go).
	v3Type = buildStoredType(v3Names, true)
)

// buildStoredType derives a stored type from Entry: each field under its
// name in names (its JSON name if absent), hash left out, and with dense
// the time and hex identifiers given codec.go's types. A clash between
// stored names is a programming error in this package, caught at
// start-up by every test.
func buildStoredType(names map[string]string, dense bool) reflect.Type {
	fields := make([]reflect.StructField, entryType.NumField())
	used := map[string]string{}
	for i := range entryType.NumField() {
		f := entryType.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			panic("audit: Entry field " + f.Name + " has no JSON name")
		}
		short, ok := names[name]
		if !ok {
			short = name
		}
		if name == "hash" {
			short = "-"
		}
		if short != "-" {
			if prev, dup := used[short]; dup {
				panic("audit: Entry fields " + prev + " and " + f.Name + " share the stored name " + short)
			}
			used[short] = f.Name
		}
		tag := short
		if opts != "" && short != "-" {
			tag += "," + opts
		}
		typ := f.Type
		switch {
		case !dense:
		case typ == reflect.TypeFor[time.Time]():
			typ = reflect.TypeFor[storedTime]()
		case hexFields[name]:
			typ = reflect.TypeFor[storedHex]()
		case typ == reflect.TypeFor[Residual]():
			typ = reflect.TypeFor[json.RawMessage]()
		}
		if !f.Type.ConvertibleTo(typ) || f.Type.Size() != typ.Size() {
			panic("audit: Entry field " + f.Name + " cannot be stored as " + typ.String())
		}
		fields[i] = reflect.StructField{Name: f.Name, Type: typ, Tag: reflect.StructTag(`json:"` + tag + `"`)}
	}
	t := reflect.StructOf(fields)
	// The same fields in the same order, each of a type with the same
	// underlying type: the same layout, so an *Entry can be viewed as a
	// pointer to the stored type (asStored).
	if t.Size() != entryType.Size() {
		panic("audit: stored entry type does not match Entry")
	}
	for i := range t.NumField() {
		if t.Field(i).Offset != entryType.Field(i).Offset {
			panic("audit: stored entry type does not have Entry's layout")
		}
	}
	return t
}

// asStored views e as a pointer to the stored type (same memory), for
// encoding/json to read or fill under the stored names. The layouts are
// checked to be identical when storedType is built; unlike a reflect
// conversion, this costs no copy.
func asStored(e *Entry) any {
	return reflect.NewAt(storedType, unsafe.Pointer(e)).Interface()
}

// asV3 views e as a pointer to v3Type, as asStored does for storedType.
func asV3(e *Entry) any {
	return reflect.NewAt(v3Type, unsafe.Pointer(e)).Interface()
}

// marshalStored returns the stored bytes of e (format 4,
// docs/audit-format.md): the RFC 8785 canonical form (JCS) of the
// entry's JSON as the API shows it, without hash. jcs.Transform
// (github.com/gowebpki/jcs, a port of the RFC's reference code)
// canonicalises what encoding/json writes: members sorted by name,
// strings with only the escapes JCS makes, numbers in their shortest
// form. e's strings must be valid UTF-8 (Append makes them so).
func marshalStored(e *Entry) ([]byte, error) {
	if b, ok := appendCanonical(make([]byte, 0, 1536), e); ok {
		return b, nil
	}
	return marshalStoredReference(e)
}

// marshalStoredReference is marshalStored by encoding/json and jcs, the
// definition appendCanonical is held to.
func marshalStoredReference(e *Entry) ([]byte, error) {
	b, err := json.Marshal(asStored(e))
	if err != nil {
		return nil, err
	}
	return jcs.Transform(b)
}

// makeStorable gives e the one form its stored bytes hold, so that what
// the log indexes, returns and shows is exactly what it stored: each
// byte of a string that is not part of valid UTF-8 becomes U+FFFD (as
// encoding/json would write it), in InputResidual too.
func makeStorable(e *Entry) {
	v := reflect.ValueOf(e).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); {
		case f.Kind() == reflect.String:
			if s := f.String(); !utf8.ValidString(s) {
				f.SetString(toValidUTF8(s))
			}
		case f.Type() == reflect.TypeFor[[]string]():
			for j := range f.Len() {
				if s := f.Index(j).String(); !utf8.ValidString(s) {
					f.Index(j).SetString(toValidUTF8(s))
				}
			}
		}
	}
	if !utf8.Valid(e.InputResidual) {
		e.InputResidual = Residual(toValidUTF8(string(e.InputResidual)))
	}
}

// toValidUTF8 replaces each byte of s that is not part of a valid UTF-8
// sequence by U+FFFD (one per byte, unlike strings.ToValidUTF8).
func toValidUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Splicing. The committer must not spend its time in encoding/json: it
// holds the one write transaction every request waits on. So Append
// encodes the entry in the caller's goroutine as a template, with Seq,
// PrevSubject, PrevPractitioner and PrevHash zero, and the committer only
// splices in the values it assigns. In the canonical form the members
// are sorted: prev_hash (always written), prev_practitioner and
// prev_subject (left out when 0) are adjacent, and seq comes later. The
// last `,"prev_hash":""` and the last `,"seq":0` of a template are these
// members: a quote inside a string is always escaped, and no member after
// them holds an object. canSplice checks the result against a full
// encoding once; without it the committer encodes in full.

const (
	tmplHash = `,"prev_hash":""`
	tmplSeq  = `,"seq":0`
)

var canSplice = func() bool {
	e := Entry{Time: time.Unix(1, 0).UTC(), RequestID: "r", Kind: KindDecision, Subject: "s", Practitioner: "p", Status: 200}
	tmpl, err := marshalTemplate(e)
	if err != nil {
		return false
	}
	e.Seq, e.PrevSubject, e.PrevPractitioner, e.PrevHash = 12, 3, 4, GenesisHash
	full, err := marshalStored(&e)
	return err == nil && bytes.Equal(full, splice(tmpl, 12, 3, 4, GenesisHash))
}()

// marshalTemplate encodes e with the fields the committer assigns left
// zero.
func marshalTemplate(e Entry) ([]byte, error) {
	e.Seq, e.PrevSubject, e.PrevPractitioner, e.PrevHash, e.Hash = 0, 0, 0, "", ""
	b, err := marshalStored(&e)
	if err != nil {
		return nil, err
	}
	i, j := bytes.LastIndex(b, []byte(tmplHash)), bytes.LastIndex(b, []byte(tmplSeq))
	if i < 0 || j < i+len(tmplHash) || j+len(tmplSeq) >= len(b) || (b[j+len(tmplSeq)] != ',' && b[j+len(tmplSeq)] != '}') {
		return nil, fmt.Errorf("unexpected stored encoding %.40q", b)
	}
	return b, nil
}

// splice completes a template made by marshalTemplate. prevHash is a
// chain hash (lowercase hex), which JSON writes as it is. It writes into
// tmpl's own spare capacity when there is room (marshalTemplate leaves
// some), so that the committer, which splices, allocates nothing for it;
// tmpl is not to be used again.
func splice(tmpl []byte, seq, prevSubject, prevPractitioner uint64, prevHash string) []byte {
	i, j := bytes.LastIndex(tmpl, []byte(tmplHash)), bytes.LastIndex(tmpl, []byte(tmplSeq))
	var midBuf, seqBuf [192]byte
	mid := append(midBuf[:0], `,"prev_hash":"`...)
	mid = append(mid, prevHash...)
	mid = append(mid, '"')
	if prevPractitioner != 0 {
		mid = append(mid, `,"prev_practitioner":`...)
		mid = strconv.AppendUint(mid, prevPractitioner, 10)
	}
	if prevSubject != 0 {
		mid = append(mid, `,"prev_subject":`...)
		mid = strconv.AppendUint(mid, prevSubject, 10)
	}
	sq := strconv.AppendUint(append(seqBuf[:0], `,"seq":`...), seq, 10)
	b0, b1 := i+len(tmplHash), j // B: between the two placeholders
	c0 := j + len(tmplSeq)       // C: after the second
	n := i + len(mid) + (b1 - b0) + len(sq) + (len(tmpl) - c0)
	if cap(tmpl) < n || len(mid) < len(tmplHash) || len(sq) < len(tmplSeq) {
		b := make([]byte, 0, n)
		b = append(b, tmpl[:i]...)
		b = append(b, mid...)
		b = append(b, tmpl[b0:b1]...)
		b = append(b, sq...)
		return append(b, tmpl[c0:]...)
	}
	// In place, right to left: every piece moves right, so none is
	// overwritten before it has moved.
	out := tmpl[:n]
	cLen := len(tmpl) - c0
	copy(out[n-cLen:], tmpl[c0:len(tmpl)])
	copy(out[n-cLen-len(sq):], sq)
	newB := i + len(mid)
	copy(out[newB:newB+(b1-b0)], tmpl[b0:b1])
	copy(out[i:], mid)
	return out
}

// record is one encoded entry, ready to Put.
type record struct {
	entry *Entry // the entry as encoded (Seq, PrevHash set)
	val   []byte // stored bytes E
	hash  string // hashHex(E): the entry (chain) hash, hex of leaf
	leaf  []byte // SHA-256(0x00 || E): the Merkle leaf hash
}

// encodeEntry returns the stored bytes of e as entry seq chained to
// prevHash. e is taken by value so the caller's entry is not changed.
func encodeEntry(e Entry, seq uint64, prevHash string) (record, error) {
	e.Seq = seq
	e.PrevHash = prevHash
	e.Hash = ""
	val, err := marshalStored(&e)
	if err != nil {
		return record{}, fmt.Errorf("encode entry %d: %w: %w", seq, ErrInvalidEntry, err)
	}
	leaf := leafHash(val)
	e.Hash = hex.EncodeToString(leaf)
	return record{entry: &e, val: val, hash: e.Hash, leaf: leaf}, nil
}

// decodeEntry strictly decodes the stored value of key seq: one JSON
// object under the JSON names, no unknown fields, nothing after it, its
// seq equal to the key. It fills Hash with the recomputed chain hash. The
// result shares no memory with val, so val may be a bbolt value that is
// about to become invalid.
func decodeEntry(seq uint64, val []byte) (*Entry, error) {
	var e Entry
	if err := decodeStrict(seq, val, asStored(&e), &e.Seq, "entry"); err != nil {
		return nil, err
	}
	e.Time = e.Time.UTC()
	e.Hash = hashHex(val)
	return &e, nil
}

// decodeStrict decodes val, the stored value of key seq, into v: one
// JSON object, no unknown fields, nothing after it, and *gotSeq (the
// decoded seq) equal to the key. what names the format in errors.
func decodeStrict(seq uint64, val []byte, v any, gotSeq *uint64, what string) error {
	dec := json.NewDecoder(bytes.NewReader(val))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return tampered(seq, "stored value is not a valid %s: %v", what, err)
	}
	if dec.InputOffset() != int64(len(val)) {
		return tampered(seq, "stored value has data after the entry")
	}
	if *gotSeq != seq {
		return tampered(seq, "seq field is %d but the entry is stored at seq %d", *gotSeq, seq)
	}
	return nil
}

// --- meta ----------------------------------------------------------------

// head is the last entry of the log: its seq (0 when empty) and hash
// (GenesisHash when empty).
type head struct {
	seq  uint64
	hash string
}

// readMeta returns the head recorded in the meta bucket, checking the
// format version and that the head is well formed.
func readMeta(meta *bolt.Bucket) (head, error) {
	v := meta.Get(metaVersion)
	if len(v) != 8 {
		return head{}, tampered(0, "meta has no valid format version")
	}
	if ver := binary.BigEndian.Uint64(v); ver != formatVersion {
		return head{}, unsupportedVersion(ver)
	}
	return readHead(meta)
}

// unsupportedVersion says which format a file is in, which this build
// reads, and what to do: migrate (formats 2 and 3), or use the build
// that wrote it.
func unsupportedVersion(ver uint64) error {
	var hint string
	switch {
	case ver == 2 || ver == 3:
		hint = "a log from an earlier build: carry it into format 4 with `trustgate audit migrate --db FILE`, " +
			"the gateway stopped (docs/audit-format.md §5); the old file is kept, read-only"
	case ver > formatVersion:
		hint = "written by a newer build of trustgate: read it with that build"
	default:
		hint = "not a format any build of trustgate wrote (formats 2 and 3 can be migrated)"
	}
	return fmt.Errorf("the audit log is in format version %d; this build reads format %d and migrates 2 and 3: %s: %w",
		ver, formatVersion, hint, ErrUnsupportedVersion)
}

// readHead reads the head recorded in meta, whatever the format version.
func readHead(meta *bolt.Bucket) (head, error) {
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

// appendTx runs appendRecords in a write transaction of its own, after
// hook (if not nil; a test's fault injection: its error aborts the
// transaction), and returns the new head. Every write of entries into the
// file goes through it: a commit without a journal, an apply, a replay.
func appendTx(db *bolt.DB, from head, tr *tree, headsAt func(seq uint64) heads, recs []record, hook func(n int) error) (head, error) {
	var to head
	err := db.Update(func(tx *bolt.Tx) error {
		if hook != nil {
			if err := hook(len(recs)); err != nil {
				return err
			}
		}
		var err error
		to, err = appendRecords(tx, from, tr, headsAt, recs)
		return err
	})
	return to, err
}

// appendRecords puts recs as the entries after from, which must be the
// head recorded in the transaction, and in the same transaction extends
// the Merkle tree (tr, which it advances), the query index and the time
// blocks, dumps the chain heads if due (headsAt gives the heads as of a
// seq), and records the new head. It only ever puts entry keys above
// the current last key: it refuses to run if the stored last entry is not
// from.seq, so no code path overwrites an entry.
func appendRecords(tx *bolt.Tx, from head, tr *tree, headsAt func(seq uint64) heads, recs []record) (head, error) {
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
	if stored != from || last != from.seq || tr.size() != from.seq {
		return head{}, tampered(from.seq+1,
			"refusing to append: expected head %d, meta records %d, the last entry is %d and the tree holds %d",
			from.seq, stored.seq, last, tr.size())
	}
	h := from
	ix := newIndexBatch()
	for _, r := range recs {
		h.seq++
		if err := entries.Put(seqKey(h.seq), r.val); err != nil {
			return head{}, fmt.Errorf("put entry %d: %w", h.seq, err)
		}
		h.hash = r.hash
		ix.add(h.seq, r.entry)
	}
	if err := tr.append(tx, recs); err != nil {
		return head{}, fmt.Errorf("extend the tree: %w", err)
	}
	if err := ix.write(tx); err != nil {
		return head{}, fmt.Errorf("index: %w", err)
	}
	if dumpDue(from.seq, h.seq) {
		if err := writeHeadsDump(tx, h.seq, headsAt(h.seq)); err != nil {
			return head{}, fmt.Errorf("chain heads: %w", err)
		}
	}
	if err := writeMeta(meta, h); err != nil {
		return head{}, fmt.Errorf("write head: %w", err)
	}
	return h, nil
}
