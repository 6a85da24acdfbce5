package audit

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// The journal (docs/audit-journal.md). Beside audit.db, audit.db.journal
// holds each group commit as one record, written with one pwrite and made
// durable with one fdatasync before any request in the group is
// answered; bbolt is brought up to date behind it, many groups to one
// transaction (Log.applyLoop). The file is written in full when it is
// created, so that writing into it allocates nothing and fdatasync has no
// file-system metadata to commit.
//
// Layout: a header block, then the record area, used as a ring. Every
// block is journalBlock bytes (a page: a record's write is whole pages,
// never a read-modify-write of a page the kernel has evicted).
//
//	header (block 0):  "TGJH" | crc32c of bytes 8..20 | version (4) | epoch (8)
//	record (aligned):  "TGJR" | crc32c of bytes 8..32+L | L (4) | epoch (8) |
//	                   first seq (8) | count (4) | count × (uvarint n, n stored bytes)
//
// all integers big-endian, a record padded with zeros to whole blocks.
// The stored bytes are an entry's format-4 bytes (docs/audit-format.md):
// its hash, chain links, index fields and Merkle leaf are derived from
// them, as they are from the copy in bbolt.
//
// The epoch is random, chosen at each open (after the journal has been
// replayed) and again at a clean close (after everything has been
// applied): only records of the header's epoch are live, so a cleanly
// closed log is audit.db alone, and records from an earlier run can never
// be replayed over a later one.

const (
	journalBlock   = 4096
	journalVersion = 1
	// DefaultJournalSize is the size of a new journal file.
	DefaultJournalSize = 16 << 20
	minJournalSize     = 16 * journalBlock
	recordHeader       = 32
)

var (
	journalMagic = [4]byte{'T', 'G', 'J', 'H'}
	recordMagic  = [4]byte{'T', 'G', 'J', 'R'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// JournalPath is the journal file of the log file at path.
func JournalPath(path string) string { return path + ".journal" }

// journal is an open journal file. Only the committer writes records (and
// the recovery probe erases one whose sync failed); open and Close write
// the header.
type journal struct {
	f     *os.File
	path  string
	area  int64 // bytes in the record area (the file less its header block)
	epoch uint64
	buf   []byte // the committer's record buffer, reused
}

// jrecord is a live record found when the journal is read.
type jrecord struct {
	first uint64
	vals  [][]byte
}

func (r jrecord) last() uint64 { return r.first + uint64(len(r.vals)) - 1 }

// openJournal opens (creating, or re-creating at size if it has another
// size) the journal at path for writing and returns it with its live
// records, ordered by seq.
func openJournal(path string, size int64) (*journal, []jrecord, error) {
	size = max(size/journalBlock*journalBlock, minJournalSize)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	j := &journal{f: f, path: path}
	fail := func(err error) (*journal, []jrecord, error) {
		_ = f.Close()
		return nil, nil, fmt.Errorf("journal %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	var live []jrecord
	if st.Size() > 0 {
		if live, err = readJournal(f, st.Size()); err != nil {
			return fail(err)
		}
	}
	if st.Size() != size {
		if len(live) > 0 {
			// Its records are replayed first: the file keeps its size
			// until they are in bbolt, then replay re-creates it.
			size = st.Size()
		} else if err := preallocate(f, size); err != nil {
			return fail(err)
		}
	}
	j.area = size - journalBlock
	return j, live, nil
}

// preallocate truncates f and writes size zero bytes into it, synced with
// its directory.
func preallocate(f *os.File, size int64) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zero)) {
		if _, err := f.WriteAt(zero[:min(int64(len(zero)), size-off)], off); err != nil {
			return fmt.Errorf("preallocate: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("preallocate: sync: %w", err)
	}
	return syncDir(filepath.Dir(f.Name()))
}

// readJournal returns the live records of the journal in f: the valid
// records of the header's epoch, ordered by first seq. A file without a
// valid header has none. It reads a block at a time (and a whole record
// where one begins), so memory is bounded by the largest record.
func readJournal(f io.ReaderAt, size int64) ([]jrecord, error) {
	blk := make([]byte, journalBlock)
	read := func(b []byte, off int64) error {
		if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
	if size < journalBlock {
		return nil, nil
	}
	if err := read(blk, 0); err != nil {
		return nil, err
	}
	epoch, ok := parseJournalHeader(blk)
	if !ok {
		return nil, nil
	}
	var live []jrecord
	for off := int64(journalBlock); off+journalBlock <= size; {
		if err := read(blk, off); err != nil {
			return nil, err
		}
		n := int64(journalBlock)
		if [4]byte(blk[:4]) == recordMagic {
			n = blocks(recordHeader + int64(binary.BigEndian.Uint32(blk[8:12])))
		}
		if n > size-off {
			off += journalBlock // a length no record in this file can have
			continue
		}
		b := blk
		if n > journalBlock {
			b = make([]byte, n)
			if err := read(b, off); err != nil {
				return nil, err
			}
		}
		r, used, ok := parseRecord(b, epoch)
		if !ok {
			off += journalBlock
			continue
		}
		live = append(live, r)
		off += used
	}
	slices.SortFunc(live, func(a, b jrecord) int { return cmp.Compare(a.first, b.first) })
	return live, nil
}

func parseJournalHeader(b []byte) (epoch uint64, ok bool) {
	if len(b) < 20 || [4]byte(b[:4]) != journalMagic ||
		crc32.Checksum(b[8:20], castagnoli) != binary.BigEndian.Uint32(b[4:8]) ||
		binary.BigEndian.Uint32(b[8:12]) != journalVersion {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[12:20]), true
}

// parseRecord reads the record at the start of b if it is valid and of
// epoch, returning it and the bytes it takes (whole blocks).
func parseRecord(b []byte, epoch uint64) (jrecord, int64, bool) {
	if len(b) < recordHeader || [4]byte(b[:4]) != recordMagic {
		return jrecord{}, 0, false
	}
	l := int64(binary.BigEndian.Uint32(b[8:12]))
	if recordHeader+l > int64(len(b)) ||
		crc32.Checksum(b[8:recordHeader+l], castagnoli) != binary.BigEndian.Uint32(b[4:8]) ||
		binary.BigEndian.Uint64(b[12:20]) != epoch {
		return jrecord{}, 0, false
	}
	r := jrecord{first: binary.BigEndian.Uint64(b[20:28])}
	count := binary.BigEndian.Uint32(b[28:32])
	p := b[recordHeader : recordHeader+l]
	for range count {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return jrecord{}, 0, false
		}
		r.vals = append(r.vals, slices.Clone(p[k:k+int(n)]))
		p = p[k+int(n):]
	}
	if len(p) != 0 || count == 0 || r.first == 0 {
		return jrecord{}, 0, false
	}
	return r, blocks(recordHeader + l), true
}

// blocks rounds n up to whole journal blocks.
func blocks(n int64) int64 { return (n + journalBlock - 1) / journalBlock * journalBlock }

// newEpoch writes a header with a new random epoch and syncs it: every
// record written before is dead.
func (j *journal) newEpoch() error {
	var e [8]byte
	if _, err := rand.Read(e[:]); err != nil {
		return err
	}
	hdr := make([]byte, journalBlock)
	copy(hdr, journalMagic[:])
	binary.BigEndian.PutUint32(hdr[8:12], journalVersion)
	copy(hdr[12:20], e[:])
	binary.BigEndian.PutUint32(hdr[4:8], crc32.Checksum(hdr[8:20], castagnoli))
	if _, err := j.f.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("journal %s: write header: %w", j.path, err)
	}
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("journal %s: sync header: %w", j.path, err)
	}
	j.epoch = binary.BigEndian.Uint64(e[:])
	return nil
}

// encode builds the record of recs, the first of them entry first, in
// j.buf, padded to whole blocks, and returns it.
func (j *journal) encode(first uint64, recs []record) []byte {
	b := append(j.buf[:0], make([]byte, recordHeader)...)
	for _, r := range recs {
		b = binary.AppendUvarint(b, uint64(len(r.val)))
		b = append(b, r.val...)
	}
	l := len(b) - recordHeader
	copy(b, recordMagic[:])
	binary.BigEndian.PutUint32(b[8:12], uint32(l))
	binary.BigEndian.PutUint64(b[12:20], j.epoch)
	binary.BigEndian.PutUint64(b[20:28], first)
	binary.BigEndian.PutUint32(b[28:32], uint32(len(recs)))
	binary.BigEndian.PutUint32(b[4:8], crc32.Checksum(b[8:], castagnoli))
	pad := int(blocks(int64(len(b)))) - len(b)
	b = append(b, make([]byte, pad)...)
	j.buf = b
	return b
}

// write writes b at off in the record area and waits until it is durable.
func (j *journal) write(b []byte, off int64) error {
	if _, err := j.f.WriteAt(b, journalBlock+off); err != nil {
		return fmt.Errorf("journal %s: write: %w", j.path, err)
	}
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("journal %s: sync: %w", j.path, err)
	}
	return nil
}

// erase overwrites n bytes at off in the record area with zeros and syncs
// them (a record whose sync failed, so that it can never be replayed).
func (j *journal) erase(off, n int64) error {
	return j.write(make([]byte, n), off)
}

// liveBeyond reports the entries the journal at path holds beyond seq
// (0, 0 for none): for a reader of audit.db alone.
func liveBeyond(path string, seq uint64) (from, to uint64, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	live, err := readJournal(f, st.Size())
	if err != nil {
		return 0, 0, err
	}
	for _, r := range live {
		if r.last() > seq {
			from = max(r.first, seq+1)
			break
		}
	}
	if from != 0 {
		to = live[len(live)-1].last()
	}
	return from, to, nil
}
