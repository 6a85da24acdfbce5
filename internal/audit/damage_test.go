package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// The damage battery: a real log on small (4 KiB) pages, so that every
// bucket has branch pages, damaged the way disks and careless copies
// damage files — truncated at every page boundary, bytes flipped at
// random, in branch pages and in leaf element headers. For every damaged
// copy: nothing crashes (a fault in bbolt's memory map would kill the
// test binary); VerifyFile either fails with an error wrapping
// ErrTampered, or passes — and then every reader (scan, get, export,
// queries, access reports, proofs, figures) gives exactly the answers it
// gives on the undamaged log. Opening the copy as the gateway does
// (read-write) never crashes either. FuzzDamagedLog runs the same
// property over truncations and flips chosen by the fuzzer (make fuzz).

const (
	damageN     = 400
	damageEvery = 50
	damagePage  = 4096
)

type damageFixture struct {
	file   []byte  // the pristine file, trimmed to its high-water mark
	keys   jwk.Set // the gateway's public keys
	answer string  // digest of every reader's answers on the pristine log
	pages  int
}

var (
	damageOnce sync.Once
	damageFix  damageFixture
	damageErr  error
)

func pristineDamage(t testing.TB) *damageFixture {
	t.Helper()
	damageOnce.Do(func() { damageErr = buildDamage(t, &damageFix) })
	if damageErr != nil {
		t.Fatal(damageErr)
	}
	return &damageFix
}

func buildDamage(t testing.TB, fix *damageFixture) error {
	dir, err := os.MkdirTemp("", "audit-damage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.db")
	l, err := audit.Open(path, audit.Options{PageSize: damagePage})
	if err != nil {
		return err
	}
	k, set := gatewayKeys(t)
	fix.keys = set
	c, err := audit.NewCheckpointer(t.Context(), l, k, audit.CheckpointOptions{LogID: "trustgate", Now: func() time.Time { return cpNow }})
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(15, 15))
	for i := range damageN {
		e := genEntry(r, i)
		if _, _, err := l.Append(t.Context(), &e); err != nil {
			return err
		}
		if (i+1)%damageEvery == 0 {
			if _, err := c.Checkpoint(t.Context()); err != nil {
				return err
			}
		}
	}
	if err := l.Close(); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// bbolt grows a file in 16 MiB steps; the pages past the high-water
	// mark hold nothing. Trim them so that each damaged copy is small.
	hw := binary.LittleEndian.Uint64(b[16+40:])
	if tx1 := binary.LittleEndian.Uint64(b[damagePage+16+48:]); tx1 > binary.LittleEndian.Uint64(b[16+48:]) {
		hw = binary.LittleEndian.Uint64(b[damagePage+16+40:])
	}
	fix.file = b[:hw*damagePage]
	fix.pages = int(hw)
	p := writeTemp(t, dir, fix.file)
	if _, err := audit.VerifyFile(t.Context(), p, audit.VerifyOptions{Keys: set}); err != nil {
		return fmt.Errorf("the pristine damage fixture does not verify: %w", err)
	}
	fix.answer, err = readerAnswers(t, p)
	return err
}

// damageDir is a directory for damaged copies: in memory (/dev/shm)
// where there is one, so that the fsyncs of the gateway's open cost
// nothing and a loaded disk cannot stretch one fuzz input past the
// fuzzing engine's 10 s limit per input; else a temporary directory.
//
// A fuzzing process stopped in the middle of an input never runs its
// cleanup, so directories left by earlier runs (untouched for an hour:
// a running one writes to its own every input) are removed first.
func damageDir(t testing.TB) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		stale, _ := filepath.Glob("/dev/shm/trustgate-damage-*")
		for _, d := range stale {
			if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > time.Hour {
				os.RemoveAll(d)
			}
		}
		if d, err := os.MkdirTemp("/dev/shm", "trustgate-damage-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func writeTemp(t testing.TB, dir string, b []byte) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "damaged-*.db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// readerAnswers opens the log read-only and digests the answers of every
// reader over it; any reader's error is returned.
func readerAnswers(t testing.TB, path string) (string, error) {
	ctx := t.Context()
	l, err := audit.Open(path, audit.Options{ReadOnly: true})
	if err != nil {
		return "", err
	}
	defer l.Close()
	h := sha256.New()
	enc := json.NewEncoder(h)
	size, _ := l.Head()
	fmt.Fprintln(h, "head", size, l.TreeHead())
	n := uint64(0)
	if err := l.Scan(ctx, 1, func(e *audit.Entry) error { n++; return enc.Encode(e) }); err != nil {
		return "", fmt.Errorf("scan: %w", err)
	}
	if n != size {
		return "", fmt.Errorf("scan gave %d entries, the head is %d", n, size)
	}
	var subjects, practitioners []string
	for seq := uint64(1); seq <= size; seq++ {
		e, err := l.Get(ctx, seq)
		if err != nil {
			return "", fmt.Errorf("get: %w", err)
		}
		if e.Subject != "" && !slices.Contains(subjects, e.Subject) {
			subjects = append(subjects, e.Subject)
		}
		if e.Practitioner != "" && !slices.Contains(practitioners, e.Practitioner) {
			practitioners = append(practitioners, e.Practitioner)
		}
		if err := enc.Encode(e); err != nil {
			return "", err
		}
	}
	if _, err := l.Export(ctx, h, time.Time{}, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), "jsonl"); err != nil {
		return "", fmt.Errorf("export: %w", err)
	}
	var filters []audit.Filter
	for _, p := range []string{"exley-csc", "exley-police", "riverside-gp", "exley-academy", "exley-yos"} {
		filters = append(filters, audit.Filter{Requester: p}, audit.Filter{Provider: p})
	}
	for _, p := range []string{"safeguarding", "child_protection", "early_help", "education_welfare"} {
		filters = append(filters, audit.Filter{Purpose: p})
	}
	for _, k := range []string{"decision", "rejected", "auth_failure", "access", "consent", "review", "disclosure", "unavailable", "allow", "deny", "override"} {
		filters = append(filters, audit.Filter{Kind: k})
	}
	for _, s := range subjects {
		filters = append(filters, audit.Filter{Subject: s})
	}
	for _, p := range practitioners {
		filters = append(filters, audit.Filter{Practitioner: p})
	}
	filters = append(filters, audit.Filter{Protocol: "isp-safeguarding"}, audit.Filter{From: genBase.Add(time.Hour), To: genBase.Add(3 * time.Hour)})
	for _, f := range filters {
		q := audit.Query{Filter: f, Limit: 150}
		for pages := 0; ; pages++ {
			if pages > damageN {
				return "", fmt.Errorf("query %+v: more pages than entries (a paging loop)", f)
			}
			page, err := l.Query(ctx, q)
			if err != nil {
				return "", fmt.Errorf("query %+v: %w", f, err)
			}
			if err := enc.Encode(page); err != nil {
				return "", err
			}
			if page.Next == 0 {
				break
			}
			q.Before = page.Next
		}
	}
	cp, err := l.LatestCheckpoint(ctx)
	if err != nil {
		return "", fmt.Errorf("latest checkpoint: %w", err)
	}
	for _, s := range subjects {
		rep, err := l.AccessReport(ctx, s, cp, false)
		if err != nil {
			return "", fmt.Errorf("access report: %w", err)
		}
		if err := enc.Encode(rep); err != nil {
			return "", err
		}
	}
	for seq := uint64(1); seq <= cp.Size; seq += 7 {
		p, err := l.InclusionProof(ctx, seq, cp.Size)
		if err != nil {
			return "", fmt.Errorf("inclusion proof: %w", err)
		}
		if err := enc.Encode(p); err != nil {
			return "", err
		}
	}
	for from := uint64(1); from < size; from += 53 {
		p, err := l.ConsistencyProof(ctx, from, size)
		if err != nil {
			return "", fmt.Errorf("consistency proof: %w", err)
		}
		if err := enc.Encode(p); err != nil {
			return "", err
		}
	}
	for _, by := range []string{"partner", "purpose", "decision", "protocol", "day"} {
		st, err := l.Stats(ctx, audit.StatsQuery{By: by, Now: cpNow, ReviewWithin: 72 * time.Hour})
		if err != nil {
			return "", fmt.Errorf("stats: %w", err)
		}
		if err := enc.Encode(st); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// checkDamaged runs the property on one damaged copy of the fixture and
// returns whether verify passed.
func checkDamaged(t testing.TB, fix *damageFixture, damaged []byte, what string) (passed bool) {
	t.Helper()
	dir := damageDir(t)
	p := writeTemp(t, dir, damaged)
	_, err := audit.VerifyFile(t.Context(), p, audit.VerifyOptions{Keys: fix.keys})
	switch {
	case err == nil:
		got, rerr := readerAnswers(t, p)
		if rerr != nil {
			t.Fatalf("%s: verify passed but a reader fails: %v", what, rerr)
		}
		if got != fix.answer {
			t.Fatalf("%s: verify passed but the readers' answers differ from the undamaged log's", what)
		}
	case errors.Is(err, audit.ErrTampered), errors.Is(err, audit.ErrUnsupportedVersion):
	default:
		t.Fatalf("%s: verify failed with %v, which is not reported as damage (exit 1)", what, err)
	}
	// The gateway's open (read-write) must not crash either, and must
	// refuse what verify refuses at the level of structure.
	l, oerr := audit.Open(writeTemp(t, dir, damaged), audit.Options{})
	if oerr == nil {
		_ = l.Close()
	}
	var se *audit.StructureError
	if errors.As(err, &se) && oerr == nil {
		t.Fatalf("%s: verify reports %v, but the gateway's open accepts the file", what, err)
	}
	return err == nil
}

func TestDamageTruncatedAtEveryPage(t *testing.T) {
	fix := pristineDamage(t)
	for k := 0; k < fix.pages; k++ {
		b := fix.file[:k*damagePage]
		if checkDamaged(t, fix, b, fmt.Sprintf("truncated to %d pages", k)) {
			t.Fatalf("truncated to %d of %d pages: verify passed", k, fix.pages)
		}
	}
	// And within pages: a short meta page, a torn last page.
	for _, n := range []int{1, 100, damagePage + 17, len(fix.file) - 1} {
		if checkDamaged(t, fix, fix.file[:n], fmt.Sprintf("truncated to %d bytes", n)) {
			t.Fatalf("truncated to %d bytes: verify passed", n)
		}
	}
}

func TestDamageStructureErrorsSayWhere(t *testing.T) {
	fix := pristineDamage(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "audit log damaged: page 0: the file is empty"},
		{"half", fix.file[:len(fix.file)/2/damagePage*damagePage], "the file is truncated"},
		{"one meta page", fix.file[:damagePage], "shorter than its two meta pages"},
	} {
		_, err := audit.VerifyFile(t.Context(), writeTemp(t, dir, c.b), audit.VerifyOptions{})
		var se *audit.StructureError
		if !errors.As(err, &se) || !errors.Is(err, audit.ErrTampered) || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("%s: err = %v, want a *StructureError saying %q", c.name, err, c.want)
		}
	}
}

// pagesOf lists the fixture's pages by type, with the bucket each tree
// page belongs to.
func pagesOf(t testing.TB, b []byte) (branch, leafEntries []int) {
	t.Helper()
	p := writeTemp(t, t.TempDir(), b)
	db, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		var walk func(id int, bucket string)
		walk = func(id int, bucket string) {
			le := binary.LittleEndian
			off := id * damagePage
			switch le.Uint16(b[off+8:]) {
			case 0x01:
				branch = append(branch, id)
				for i := range int(le.Uint16(b[off+10:])) {
					walk(int(le.Uint64(b[off+16+i*16+8:])), bucket)
				}
			case 0x02:
				if bucket == "entries" {
					leafEntries = append(leafEntries, id)
				}
			}
		}
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			if root := bk.Root(); root != 0 {
				walk(int(root), string(name))
			}
			return nil
		})
	})
	return branch, leafEntries
}

func TestDamageBranchPages(t *testing.T) {
	fix := pristineDamage(t)
	branch, _ := pagesOf(t, fix.file)
	if len(branch) == 0 {
		t.Fatal("the fixture has no branch page")
	}
	r := rand.New(rand.NewPCG(1, 2))
	caught := 0
	for _, id := range branch {
		off := id * damagePage
		count := int(binary.LittleEndian.Uint16(fix.file[off+10:]))
		used := 16 + count*16 + count*8 // headers and (at least) 8-byte keys
		for range 120 {
			b := bytes.Clone(fix.file)
			at := off + r.IntN(used)
			b[at] ^= byte(1 << r.IntN(8))
			if !checkDamaged(t, fix, b, fmt.Sprintf("branch page %d, byte %d flipped", id, at-off)) {
				caught++
			}
		}
	}
	t.Logf("%d branch pages, %d flips, %d caught (the rest changed nothing a reader sees)", len(branch), len(branch)*120, caught)
	if caught == 0 {
		t.Fatal("no branch-page flip was caught")
	}
}

func TestDamageLeafElementHeaders(t *testing.T) {
	fix := pristineDamage(t)
	_, leaves := pagesOf(t, fix.file)
	r := rand.New(rand.NewPCG(3, 4))
	for _, id := range leaves[:min(len(leaves), 60)] {
		off := id * damagePage
		count := int(binary.LittleEndian.Uint16(fix.file[off+10:]))
		for range 4 {
			b := bytes.Clone(fix.file)
			at := off + 16 + r.IntN(count*16)
			b[at] ^= byte(1 + r.IntN(255))
			if checkDamaged(t, fix, b, fmt.Sprintf("leaf page %d, element header byte %d", id, at-off)) {
				t.Fatalf("leaf page %d: element header byte %d altered, verify passed", id, at-off)
			}
		}
	}
}

func TestDamageRandomFlips(t *testing.T) {
	fix := pristineDamage(t)
	r := rand.New(rand.NewPCG(5, 6))
	passed := 0
	const n = 150
	for i := range n {
		b := bytes.Clone(fix.file)
		flips := 1 + r.IntN(3)
		for range flips {
			b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		}
		if checkDamaged(t, fix, b, fmt.Sprintf("flips #%d", i)) {
			passed++
		}
	}
	t.Logf("%d damaged copies: %d caught, %d passed with every reader's answers unchanged", n, n-passed, passed)
}

// FuzzDamagedLog: the fuzzer chooses a truncation and byte flips; the
// property is checkDamaged's. `make test` runs it for 10 s, `make fuzz`
// for longer. The fixture is built before f.Fuzz, once per fuzzing
// process: inside the fuzz function its 400 fsynced appends counted
// against the engine's 10 s limit per input, which a loaded machine
// exceeded (reported as a hung process, then minimised for a minute).
// Each input costs a verify, an open and, when verify passes, every
// reader (about 0.1 s idle, up to 1 s on a loaded machine).
func FuzzDamagedLog(f *testing.F) {
	f.Add(uint32(0), []byte{})
	f.Add(uint32(3*damagePage), []byte{})
	f.Add(uint32(0), []byte{0, 0, 0x10, 0xff})
	f.Add(uint32(0), []byte{0, 0x40, 0x00, 0x01, 0, 0x50, 0x10, 0x80})
	f.Add(uint32(7*damagePage+100), []byte{0, 0x60, 0x0a, 0x02})
	fix := pristineDamage(f) // built before f.Fuzz: outside the fuzzing engine's 10 s limit per input
	f.Fuzz(func(t *testing.T, cut uint32, flips []byte) {
		b := bytes.Clone(fix.file)
		if cut != 0 && int(cut) < len(b) {
			b = b[:cut]
		}
		// Each flip is 4 bytes: a 24-bit offset (big-endian) and a mask.
		for i := 0; i+4 <= len(flips) && i < 64; i += 4 {
			at := int(flips[i])<<16 | int(flips[i+1])<<8 | int(flips[i+2])
			if len(b) > 0 {
				b[at%len(b)] ^= flips[i+3]
			}
		}
		checkDamaged(t, fix, b, fmt.Sprintf("cut %d, flips %x", cut, flips))
	})
}
