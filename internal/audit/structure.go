package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
)

// This file checks the structure of a log file before bbolt is allowed
// near it. bbolt trusts its file: it memory-maps it and follows page ids,
// element offsets and lengths without bounds checks, so a truncated file
// faults (SIGBUS) and a flipped byte in a page header can send its cursor
// to any address (SIGSEGV) — a crash, not an error. checkStructure reads
// every page the newest valid meta page reaches with ordinary reads
// (ReadAt into its own buffers, never the map), and checks everything
// bbolt relies on, so that once it passes, bbolt reads only well-formed
// pages inside the file:
//
//   - the meta pages: magic, version, checksum (FNV-64a, as bbolt), page
//     size, and that the file holds every page below the high-water mark;
//     both meta pages must be valid (a damaged one is reported, although
//     bbolt would fall back to the other, because that fallback silently
//     drops the last commit);
//   - every page of the tree, from the root bucket down: inside the file
//     and below the high-water mark, its stored id the id it was reached
//     by, a branch or leaf flag, its element array and every key and value
//     inside the page, no page (or overflow page) reached twice, a bounded
//     depth;
//   - the order of keys: strictly increasing within a page, and every key
//     of a branch element's subtree within [its key, the next element's
//     key) — what a key lookup (bbolt's binary search through the branch
//     pages) relies on, so that Get and Seek find exactly what a cursor
//     walk finds;
//   - the log's layout: the root bucket holds only buckets, each with its
//     own root page (or inline), and those buckets hold no nested buckets;
//   - the freelist: a freelist page inside the file, its ids unique, below
//     the high-water mark and not in use, and every page below the
//     high-water mark either in use or free.
//
// Damage is reported as a *StructureError naming the page and, where the
// page holds entries whose seqs are known, the first entry it holds.

// StructureError reports damage to the file's structure: a page that
// bbolt cannot safely read. It unwraps to ErrTampered (the stored file is
// not the file that was written), so the command line exits 1 on it as on
// any other damage.
type StructureError struct {
	// Page is the damaged page (0 or 1 for a meta page). For a file too
	// short to hold its pages, the first page missing.
	Page uint64
	// Bucket is the bucket the page belongs to, if known.
	Bucket string
	// Seq, when not zero, is the first entry of the damaged page (or of
	// the subtree below it), where the bucket is "entries".
	Seq uint64
	// Reason says what is wrong, in words.
	Reason string
}

func (e *StructureError) Error() string {
	where := fmt.Sprintf("page %d", e.Page)
	if e.Bucket != "" {
		where += fmt.Sprintf(" (bucket %q)", e.Bucket)
	}
	if e.Seq != 0 {
		where = fmt.Sprintf("entries from %d, %s", e.Seq, where)
	}
	return fmt.Sprintf("audit log damaged: %s: %s", where, e.Reason)
}

// Unwrap makes errors.Is(err, ErrTampered) true.
func (e *StructureError) Unwrap() error { return ErrTampered }

// bbolt's on-disk format (go.etcd.io/bbolt/internal/common, v1.4):
// native-endian structs, read here as little-endian (bbolt files are not
// portable between byte orders; every platform trustgate is built for is
// little-endian).
const (
	pageHeaderSize    = 16 // id u64, flags u16, count u16, overflow u32
	branchElementSize = 16 // pos u32, ksize u32, pgid u64
	leafElementSize   = 16 // flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderSize  = 16 // root pgid u64, sequence u64

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10
	flagBucket   = 0x01 // leaf element flag: the value is a bucket

	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	noFreelist     = ^uint64(0)
	metaOffset     = pageHeaderSize
	metaChecksumAt = metaOffset + 56 // the checksum covers the meta before it
	minPageSize    = 1024
	maxPageSize    = 1 << 24
	maxTreeDepth   = 64
)

// boltMeta is a meta page's contents.
type boltMeta struct {
	pageSize           uint32
	root, freelist, hw uint64
	txid               uint64
}

func parseMeta(b []byte) (boltMeta, error) {
	if len(b) < metaChecksumAt+8 {
		return boltMeta{}, errors.New("shorter than a meta page")
	}
	le := binary.LittleEndian
	m := b[metaOffset:]
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("bad magic number (not a bbolt meta page)")
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(b[metaChecksumAt:]) {
		return boltMeta{}, errors.New("checksum does not match its contents")
	}
	return boltMeta{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		hw:       le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}, nil
}

// checkStructure checks the file at path as described above. A file that
// cannot be read is an error of its own (not a *StructureError).
func checkStructure(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return checkStructureOf(f, fi.Size())
}

// checkStructureOf checks a file of size bytes read through r.
func checkStructureOf(r io.ReaderAt, size int64) error {
	if size == 0 {
		return &StructureError{Reason: "the file is empty (0 bytes): it holds no meta page; a log file is never empty once created (truncated to nothing?)"}
	}
	c := &structChecker{r: r, size: size}
	return c.run()
}

type structChecker struct {
	r    io.ReaderAt
	size int64
	ps   uint64
	meta boltMeta
	used []bool // pages in use (tree pages with their overflow, the freelist), below the high-water mark
	// bufs[d] holds the page being checked at depth d of the tree: a
	// branch page's buffer is kept while its children are checked in
	// bufs[d+1], and every page at a depth reuses it (no allocation per
	// page: the check reads the whole file at every start).
	bufs [][]byte
}

// read reads n pages from page id into the buffer of depth (a fresh one
// if depth < 0), or reports them outside the file.
func (c *structChecker) read(id, n uint64, bucket string, seq uint64, depth int) ([]byte, error) {
	end := (id + n) * c.ps
	if id+n < id || end/c.ps != id+n || end > uint64(c.size) {
		return nil, &StructureError{Page: id, Bucket: bucket, Seq: seq, Reason: fmt.Sprintf(
			"pages %d to %d lie beyond the end of the file (%d bytes, %d pages): the file is truncated", id, id+n-1, c.size, uint64(c.size)/c.ps)}
	}
	var b []byte
	if depth < 0 {
		b = make([]byte, n*c.ps)
	} else {
		for len(c.bufs) <= depth {
			c.bufs = append(c.bufs, nil)
		}
		if uint64(cap(c.bufs[depth])) < n*c.ps {
			c.bufs[depth] = make([]byte, n*c.ps)
		}
		b = c.bufs[depth][:n*c.ps]
	}
	if _, err := c.r.ReadAt(b, int64(id*c.ps)); err != nil {
		return nil, fmt.Errorf("audit: read page %d: %w", id, err)
	}
	return b, nil
}

func (c *structChecker) run() error {
	// The page size: from meta page 0, or, as bbolt does when page 0 is
	// damaged, from a meta page 1 found at 1 KiB, 2 KiB, ... 16 MiB.
	var m0, m1 boltMeta
	var err0, err1 error
	head := make([]byte, 4096)
	n, _ := c.r.ReadAt(head, 0)
	if m0, err0 = parseMeta(head[:n]); err0 == nil {
		c.ps = uint64(m0.pageSize)
	} else {
		for ps := uint64(minPageSize); ps <= maxPageSize && int64(ps) < c.size; ps <<= 1 {
			k, _ := c.r.ReadAt(head, int64(ps))
			if m, err := parseMeta(head[:k]); err == nil && uint64(m.pageSize) == ps {
				c.ps = ps
				break
			}
		}
		if c.ps == 0 {
			return &StructureError{Page: 0, Reason: fmt.Sprintf("no valid meta page (meta page 0: %v; no meta page 1 found): not a log file, or both meta pages are damaged", err0)}
		}
	}
	if c.ps < minPageSize || c.ps > maxPageSize || c.ps&(c.ps-1) != 0 {
		return &StructureError{Page: 0, Reason: fmt.Sprintf("meta page 0 states a page size of %d bytes", c.ps)}
	}
	if uint64(c.size) < 2*c.ps {
		return &StructureError{Page: 1, Reason: fmt.Sprintf("the file is %d bytes, shorter than its two meta pages of %d bytes: the file is truncated", c.size, c.ps)}
	}
	b1 := make([]byte, c.ps)
	if _, err := c.r.ReadAt(b1, int64(c.ps)); err != nil {
		return fmt.Errorf("audit: read meta page 1: %w", err)
	}
	m1, err1 = parseMeta(b1)
	switch {
	case err0 != nil:
		return &StructureError{Page: 0, Reason: "meta page 0 is damaged: " + err0.Error()}
	case err1 != nil:
		return &StructureError{Page: 1, Reason: "meta page 1 is damaged: " + err1.Error()}
	}
	for i, m := range []boltMeta{m0, m1} {
		if uint64(m.pageSize) != c.ps {
			return &StructureError{Page: uint64(i), Reason: fmt.Sprintf("meta page %d states a page size of %d bytes, meta page 0 %d", i, m.pageSize, c.ps)}
		}
	}
	c.meta = m0
	metaPage := uint64(0)
	if m1.txid > m0.txid {
		c.meta, metaPage = m1, 1
	}
	m := c.meta
	if m.hw < 3 {
		return &StructureError{Page: metaPage, Reason: fmt.Sprintf("meta page %d states a high-water mark of %d pages", metaPage, m.hw)}
	}
	if m.hw > uint64(c.size)/c.ps {
		need := m.hw * c.ps
		return &StructureError{Page: uint64(c.size) / c.ps, Reason: fmt.Sprintf(
			"the file is %d bytes but its meta page records %d pages of %d bytes (%d bytes): the file is truncated", c.size, m.hw, c.ps, need)}
	}
	if m.root < 2 || m.root >= m.hw {
		return &StructureError{Page: metaPage, Reason: fmt.Sprintf("meta page %d names root page %d, outside pages 2 to %d", metaPage, m.root, m.hw-1)}
	}
	c.used = make([]bool, m.hw)
	c.used[0], c.used[1] = true, true
	if err := c.tree(m.root, nil, "", 0, nil, nil, 0); err != nil {
		return err
	}
	return c.freelist(metaPage)
}

// claim marks pages id..id+n-1 in use, refusing pages beyond the
// high-water mark or already in use.
func (c *structChecker) claim(id, n uint64, bucket string, seq uint64, what string) error {
	if id < 2 || id >= c.meta.hw || n > c.meta.hw-id {
		return &StructureError{Page: id, Bucket: bucket, Seq: seq, Reason: fmt.Sprintf(
			"%s pages %d to %d lie outside pages 2 to %d below the high-water mark", what, id, id+n-1, c.meta.hw-1)}
	}
	for p := id; p < id+n; p++ {
		if c.used[p] {
			return &StructureError{Page: id, Bucket: bucket, Seq: seq, Reason: fmt.Sprintf(
				"%s page %d is reached twice (a page id or overflow count was altered)", what, p)}
		}
		c.used[p] = true
	}
	return nil
}

// tree checks the page id of bucket (nil: the root bucket) and its
// subtree; every key in it must lie in [lo, hi) (nil: unbounded).
// inline, when not nil, is an inline bucket's page (id is then 0).
func (c *structChecker) tree(id uint64, inline []byte, bucket string, depth int, lo, hi []byte, parent uint64) error {
	seq := firstSeq(bucket, lo)
	if depth > maxTreeDepth {
		return &StructureError{Page: id, Bucket: bucket, Seq: seq, Reason: "the tree is deeper than any bbolt writes (a loop of page ids?)"}
	}
	p := inline
	if p == nil {
		hdr, err := c.read(id, 1, bucket, seq, depth)
		if err != nil {
			return err
		}
		overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
		if err := c.claim(id, overflow+1, bucket, seq, "tree"); err != nil {
			return err
		}
		if got := binary.LittleEndian.Uint64(hdr); got != id {
			return &StructureError{Page: id, Bucket: bucket, Seq: seq, Reason: fmt.Sprintf("the page stores id %d (reached from page %d)", got, parent)}
		}
		p = hdr
		if overflow > 0 {
			if p, err = c.read(id, overflow+1, bucket, seq, depth); err != nil {
				return err
			}
		}
	}
	if len(p) < pageHeaderSize {
		return &StructureError{Page: parent, Bucket: bucket, Seq: seq, Reason: "an inline bucket is shorter than a page header"}
	}
	where := func(format string, args ...any) error {
		r := fmt.Sprintf(format, args...)
		if inline != nil {
			return &StructureError{Page: parent, Bucket: bucket, Seq: seq, Reason: "inline bucket: " + r}
		}
		return &StructureError{Page: id, Bucket: bucket, Seq: seq, Reason: r}
	}
	le := binary.LittleEndian
	flags, count := le.Uint16(p[8:]), uint64(le.Uint16(p[10:]))
	var esize uint64
	switch {
	case flags == flagBranch && inline == nil:
		esize = branchElementSize
		if count == 0 {
			return where("a branch page with no elements")
		}
	case flags == flagLeaf:
		esize = leafElementSize
	default:
		return where("page flags %#x where a branch or leaf page of the tree should be", flags)
	}
	if pageHeaderSize+count*esize > uint64(len(p)) {
		return where("%d elements of %d bytes do not fit in the page's %d bytes (element count altered?)", count, esize, len(p))
	}
	var prev []byte
	for i := range count {
		e := pageHeaderSize + i*esize
		var pos, ksize, vsize uint64
		if flags == flagBranch { // pos, ksize, pgid
			pos, ksize = uint64(le.Uint32(p[e:])), uint64(le.Uint32(p[e+4:]))
		} else { // flags, pos, ksize, vsize
			pos, ksize, vsize = uint64(le.Uint32(p[e+4:])), uint64(le.Uint32(p[e+8:])), uint64(le.Uint32(p[e+12:]))
		}
		start := e + pos
		if start+ksize+vsize > uint64(len(p)) {
			return where("element %d (key of %d bytes, value of %d at offset %d) runs past the end of the page (%d bytes)", i, ksize, vsize, pos, len(p))
		}
		key := p[start : start+ksize]
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			return where("keys out of order at element %d (%x after %x): lookups would miss entries", i, key, prev)
		}
		if (lo != nil && bytes.Compare(key, lo) < 0) || (hi != nil && bytes.Compare(key, hi) >= 0) {
			return where("key %x at element %d lies outside the range [%x, %x) its parent branch gives it: lookups by key would miss it", key, i, lo, hi)
		}
		prev = key
		if flags == flagBranch {
			child := le.Uint64(p[e+8:])
			next := hi
			if i+1 < count {
				ne := pageHeaderSize + (i+1)*esize
				np, nk := uint64(le.Uint32(p[ne:])), uint64(le.Uint32(p[ne+4:]))
				if ne+np+nk > uint64(len(p)) {
					return where("element %d runs past the end of the page", i+1)
				}
				next = p[ne+np : ne+np+nk]
			}
			if err := c.tree(child, nil, bucket, depth+1, key, next, id); err != nil {
				return err
			}
			continue
		}
		value := p[start+ksize : start+ksize+vsize]
		eflags := le.Uint32(p[e:])
		switch {
		case bucket == "" && eflags != flagBucket:
			return where("element %d (%q) of the root bucket is not a bucket (flags %#x)", i, key, eflags)
		case bucket != "" && eflags != 0:
			return where("element %d has flags %#x: the log has no nested buckets", i, eflags)
		case bucket == "":
			if vsize < bucketHeaderSize {
				return where("bucket %q has a header of %d bytes", key, vsize)
			}
			name := string(key)
			if root := le.Uint64(value); root != 0 {
				if err := c.tree(root, nil, name, depth+1, nil, nil, id); err != nil {
					return err
				}
			} else if err := c.tree(0, value[bucketHeaderSize:], name, depth+1, nil, nil, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// firstSeq is the seq of an entries key, for messages.
func firstSeq(bucket string, key []byte) uint64 {
	if bucket != string(bucketEntries) || len(key) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(key)
}

// freelist checks the freelist page and that every page is accounted for.
func (c *structChecker) freelist(metaPage uint64) error {
	id := c.meta.freelist
	if id == noFreelist {
		return &StructureError{Page: metaPage, Reason: "the meta page records no freelist (bbolt always writes one for the log)"}
	}
	if id < 2 || id >= c.meta.hw {
		return &StructureError{Page: metaPage, Reason: fmt.Sprintf("the meta page names freelist page %d, outside pages 2 to %d", id, c.meta.hw-1)}
	}
	hdr, err := c.read(id, 1, "", 0, -1)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	overflow := uint64(le.Uint32(hdr[12:]))
	if got := le.Uint64(hdr); got != id {
		return &StructureError{Page: id, Reason: fmt.Sprintf("the freelist page stores id %d", got)}
	}
	if flags := le.Uint16(hdr[8:]); flags != flagFreelist {
		return &StructureError{Page: id, Reason: fmt.Sprintf("page flags %#x where the freelist page should be", flags)}
	}
	if err := c.claim(id, overflow+1, "", 0, "freelist"); err != nil {
		return err
	}
	p := hdr
	if overflow > 0 {
		if p, err = c.read(id, overflow+1, "", 0, -1); err != nil {
			return err
		}
	}
	count, off := uint64(le.Uint16(p[10:])), uint64(pageHeaderSize)
	if count == 0xFFFF { // the count overflows into the first element
		if len(p) < pageHeaderSize+8 {
			return &StructureError{Page: id, Reason: "the freelist page is too short for its count"}
		}
		count, off = le.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if count > (uint64(len(p))-off)/8 {
		return &StructureError{Page: id, Reason: fmt.Sprintf("the freelist claims %d free pages, more than its %d bytes hold", count, len(p))}
	}
	ids := make([]uint64, count)
	for i := range ids {
		ids[i] = le.Uint64(p[off+uint64(i)*8:])
	}
	if !slices.IsSorted(ids) {
		return &StructureError{Page: id, Reason: "the freelist's page ids are not in order"}
	}
	for i, f := range ids {
		switch {
		case i > 0 && ids[i-1] == f:
			return &StructureError{Page: id, Reason: fmt.Sprintf("the freelist names page %d twice", f)}
		case f < 2 || f >= c.meta.hw:
			return &StructureError{Page: id, Reason: fmt.Sprintf("the freelist names page %d, outside pages 2 to %d", f, c.meta.hw-1)}
		case c.used[f]:
			return &StructureError{Page: f, Reason: fmt.Sprintf("page %d is both in use and on the freelist (page %d): a later write would overwrite it", f, id)}
		}
		c.used[f] = true
	}
	for p, u := range c.used {
		if !u {
			return &StructureError{Page: uint64(p), Reason: "the page is neither reachable nor on the freelist (a page id or the freelist was altered)"}
		}
	}
	return nil
}
