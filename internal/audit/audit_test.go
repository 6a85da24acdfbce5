package audit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gowebpki/jcs"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// --- helpers -------------------------------------------------------------

func tempPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "audit.db")
}

// openLog opens a log at path and closes it when the test ends.
func openLog(t *testing.T, path string, opts audit.Options) *audit.Log {
	t.Helper()
	l, err := audit.Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func openLogWithHooks(t *testing.T, path string, opts audit.Options, h audit.Hooks) *audit.Log {
	t.Helper()
	l, err := audit.OpenWithHooks(path, opts, h)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// appendN appends n typical entries, numbered from first, and returns
// their hashes.
func appendN(t *testing.T, l *audit.Log, first, n int) []string {
	t.Helper()
	var hashes []string
	for i := first; i < first+n; i++ {
		e := audit.TypicalEntry(i)
		_, h, err := l.Append(t.Context(), &e)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		hashes = append(hashes, h)
	}
	return hashes
}

func mustVerify(t *testing.T, path string) *audit.Report {
	t.Helper()
	rep, err := audit.Verify(t.Context(), path, audit.Options{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

// canonical is the format as documented (docs/audit-format.md),
// computed independently of the package's encoder: the entry's JSON as
// the API shows it, hash left out, in RFC 8785 canonical form.
func canonical(t *testing.T, e audit.Entry) []byte {
	t.Helper()
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "hash")
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	out, err := jcs.Transform(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeStored decodes stored bytes leniently (as an attacker would).
func decodeStored(t *testing.T, v []byte) audit.Entry {
	t.Helper()
	var e audit.Entry
	if err := json.Unmarshal(v, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// sha256Hex is the documented entry hash: hex SHA-256(0x00 || E), the
// Merkle leaf hash, computed independently of the package.
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(append([]byte{0}, b...))
	return hex.EncodeToString(sum[:])
}

func key(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

// copyFile copies src to dst sparsely: bbolt grows a file in large
// zeroed steps, and a test copies small logs many times.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(b))); err != nil {
		t.Fatal(err)
	}
	const block = 4096
	zero := make([]byte, block)
	for off := 0; off < len(b); off += block {
		chunk := b[off:min(off+block, len(b))]
		if bytes.Equal(chunk, zero[:len(chunk)]) {
			continue
		}
		if _, err := f.WriteAt(chunk, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
}

// alter opens a closed log file with bbolt directly and runs fn in a write
// transaction: the attacker's view of the file.
func alter(t *testing.T, path string, fn func(entries, meta *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return fn(tx.Bucket([]byte("entries")), tx.Bucket([]byte("meta")))
	}); err != nil {
		t.Fatal(err)
	}
}

// storedEntry decodes the stored value of seq (leniently: the attacker
// does not care about our checks).
func storedEntry(t *testing.T, entries *bolt.Bucket, seq uint64) audit.Entry {
	t.Helper()
	return decodeStored(t, entries.Get(key(seq)))
}

func wantTamper(t *testing.T, err error, seq uint64) {
	t.Helper()
	if !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("err = %v, want ErrTampered", err)
	}
	var te *audit.TamperError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *TamperError", err)
	}
	if te.Seq != seq {
		t.Fatalf("TamperError names entry %d, want %d (%v)", te.Seq, seq, err)
	}
}

// --- appending -----------------------------------------------------------

func TestOpenEmpty(t *testing.T) {
	path := tempPath(t)
	l := openLog(t, path, audit.Options{})
	seq, hash := l.Head()
	if seq != 0 || hash != audit.GenesisHash || hash != strings.Repeat("0", 64) {
		t.Fatalf("Head of a new log = %d %q, want 0 and 64 zeros", seq, hash)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, path)
	if rep.Entries != 0 || rep.Head != audit.GenesisHash {
		t.Fatalf("Verify of a new log = %+v", rep)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Fatalf("file mode = %o, want 600", mode)
	}
}

func TestAppendFormat(t *testing.T) {
	l := openLog(t, tempPath(t), audit.Options{})
	in := audit.TypicalEntry(1)
	in.Time = time.Date(2026, 3, 14, 10, 0, 0, 0, time.FixedZone("BST", 3600))
	in.Seq, in.PrevHash, in.Hash = 99, "caller's", "ignored" // assigned by the log
	inCopy := in
	inCopy.Categories = slices.Clone(in.Categories)

	var hashes []string
	for i := range 3 {
		seq, hash, err := l.Append(t.Context(), &in)
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i+1) {
			t.Fatalf("seq = %d, want %d", seq, i+1)
		}
		hashes = append(hashes, hash)
	}
	if in.Seq != inCopy.Seq || in.Hash != inCopy.Hash || !slices.Equal(in.Categories, inCopy.Categories) {
		t.Fatalf("Append modified the caller's entry: %+v", in)
	}

	for i, want := range hashes {
		seq := uint64(i + 1)
		got, err := l.Get(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		wantPrev := audit.GenesisHash
		if i > 0 {
			wantPrev = hashes[i-1]
		}
		if got.Seq != seq || got.PrevHash != wantPrev || got.Hash != want {
			t.Fatalf("entry %d: seq %d prev %s hash %s, want %d %s %s", seq, got.Seq, got.PrevHash, got.Hash, seq, wantPrev, want)
		}
		// The documented format: hash = hex SHA-256(0x00 || stored bytes).
		if h := sha256Hex(canonical(t, *got)); h != want {
			t.Fatalf("entry %d: hash of the canonical bytes = %s, Append returned %s", seq, h, want)
		}
		if !got.Time.Equal(in.Time) || got.Time.Location() != time.UTC {
			t.Fatalf("entry %d: time %v, want %v in UTC", seq, got.Time, in.Time)
		}
		if got.RequestID != in.RequestID || got.Decision != in.Decision || !slices.Equal(got.Reasons, in.Reasons) {
			t.Fatalf("entry %d: fields not stored: %+v", seq, got)
		}
	}
	if seq, hash := l.Head(); seq != 3 || hash != hashes[2] {
		t.Fatalf("Head = %d %s, want 3 %s", seq, hash, hashes[2])
	}
}

func TestAppendZeroTimeIsFilled(t *testing.T) {
	l := openLog(t, tempPath(t), audit.Options{})
	before := time.Now()
	seq, _, err := l.Append(t.Context(), &audit.Entry{Kind: audit.KindAuthFailure, RequestID: "r1", Error: "no token"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Get(t.Context(), seq)
	if err != nil {
		t.Fatal(err)
	}
	if got.Time.Before(before.Add(-time.Second)) || got.Time.After(time.Now().Add(time.Second)) {
		t.Fatalf("zero time filled with %v, want about %v", got.Time, before)
	}
}

func TestAppendInvalidEntry(t *testing.T) {
	l := openLog(t, tempPath(t), audit.Options{})
	appendN(t, l, 0, 1)
	e := audit.TypicalEntry(1)
	e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	_, _, err := l.Append(t.Context(), &e)
	if !errors.Is(err, audit.ErrInvalidEntry) || errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrInvalidEntry only", err)
	}
	if seq, _ := l.Head(); seq != 1 {
		t.Fatalf("head moved to %d on an invalid entry", seq)
	}
	appendN(t, l, 2, 1) // the log still works
}

func TestAppendConcurrent(t *testing.T) {
	const writers, each = 64, 50
	path := tempPath(t)
	l := openLog(t, path, audit.Options{})

	type result struct {
		seq  uint64
		hash string
	}
	results := make([]result, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				n := w*each + i
				e := audit.TypicalEntry(n)
				seq, hash, err := l.Append(context.Background(), &e)
				if err != nil {
					t.Errorf("Append %d: %v", n, err)
					return
				}
				results[n] = result{seq, hash}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	seen := make(map[uint64]bool)
	for n, r := range results {
		if r.seq < 1 || r.seq > writers*each || seen[r.seq] {
			t.Fatalf("append %d got seq %d: duplicate or out of 1..%d", n, r.seq, writers*each)
		}
		seen[r.seq] = true
		got, err := l.Get(t.Context(), r.seq)
		if err != nil {
			t.Fatal(err)
		}
		if got.Hash != r.hash || got.RequestID != audit.TypicalEntry(n).RequestID {
			t.Fatalf("entry %d: hash %s request %s, Append returned %s for request %s",
				r.seq, got.Hash, got.RequestID, r.hash, audit.TypicalEntry(n).RequestID)
		}
	}

	commits := l.Commits()
	t.Logf("%d entries in %d commits (%.1f per commit)", writers*each, commits, float64(writers*each)/float64(commits))
	if commits >= writers*each {
		t.Errorf("%d commits for %d entries: group commit did not group", commits, writers*each)
	}

	headSeq, headHash := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, path)
	if rep.Entries != writers*each || headSeq != writers*each || rep.Head != headHash {
		t.Fatalf("Verify = %+v, Head = %d %s", rep, headSeq, headHash)
	}
}

// TestGroupCommitGroups holds the first commit open until 63 more appends
// are queued, then checks that they all went into one transaction.
func TestGroupCommitGroups(t *testing.T) {
	const n = 64
	queued := make(chan struct{}, n)
	entered := make(chan struct{})
	release := make(chan struct{})
	var batches []int // written only by the committer, read after it is done
	l := openLogWithHooks(t, tempPath(t), audit.Options{}, audit.Hooks{
		Enqueued: func() { queued <- struct{}{} },
		BeforeCommit: func(size int) error {
			if len(batches) == 0 {
				close(entered)
				<-release
			}
			batches = append(batches, size)
			return nil
		},
	})
	var wg sync.WaitGroup
	appendOne := func(i int) {
		e := audit.TypicalEntry(i)
		if _, _, err := l.Append(context.Background(), &e); err != nil {
			t.Errorf("Append: %v", err)
		}
	}
	wg.Go(func() { appendOne(0) })
	<-entered // the first commit is in progress with one entry
	for i := 1; i < n; i++ {
		wg.Go(func() { appendOne(i) })
	}
	for range n {
		<-queued
	}
	close(release)
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(batches, []int{1, n - 1}) || l.Commits() != 2 {
		t.Fatalf("batches = %v, commits = %d; want [1 %d] in 2 commits", batches, l.Commits(), n-1)
	}
}

// Under load the committer holds a batch open for more appends, but only
// while they keep coming: once every appender is already waiting in the
// batch it commits at once, not after CommitDelay (an hour here).
func TestCommitLingersOnlyWhileAppendsArrive(t *testing.T) {
	queued := make(chan struct{}, 16)
	entered := make(chan struct{})
	release := make(chan struct{})
	var batches []int // written only by the committer, read after it is done
	l := openLogWithHooks(t, tempPath(t), audit.Options{CommitDelay: time.Hour}, audit.Hooks{
		Enqueued: func() { queued <- struct{}{} },
		BeforeCommit: func(size int) error {
			if len(batches) == 0 {
				close(entered)
				<-release
			}
			batches = append(batches, size)
			return nil
		},
	})
	appendAll := func(from, n int) {
		var wg sync.WaitGroup
		for i := from; i < from+n; i++ {
			wg.Go(func() {
				e := audit.TypicalEntry(i)
				if _, _, err := l.Append(context.Background(), &e); err != nil {
					t.Errorf("Append: %v", err)
				}
			})
		}
		wg.Wait()
	}
	// Load: a commit of three (the committer lingers after it).
	var first sync.WaitGroup
	first.Go(func() { appendAll(0, 1) })
	<-entered
	<-queued
	first.Go(func() { appendAll(1, 3) })
	for range 3 {
		<-queued
	}
	close(release)
	first.Wait()

	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := range 5 { // closed loop: three appenders, each waiting on its commit
			appendAll(4+3*round, 3)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the committer waited out CommitDelay with every appender already in the batch")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, b := range batches {
		total += b
	}
	if total != 19 || batches[1] != 3 {
		t.Fatalf("batches %v: want 19 entries, the second commit of 3", batches)
	}
}

func TestAppendMaxBatch(t *testing.T) {
	const n, maxBatch = 40, 4
	path := tempPath(t)
	var mu sync.Mutex
	var batches []int
	l := openLogWithHooks(t, path, audit.Options{MaxBatch: maxBatch}, audit.Hooks{
		BeforeCommit: func(size int) error {
			mu.Lock()
			batches = append(batches, size)
			mu.Unlock()
			return nil
		},
	})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			e := audit.TypicalEntry(i)
			if _, _, err := l.Append(context.Background(), &e); err != nil {
				t.Errorf("Append: %v", err)
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, b := range batches {
		if b < 1 || b > maxBatch {
			t.Fatalf("batch of %d entries with MaxBatch %d (batches %v)", b, maxBatch, batches)
		}
		total += b
	}
	if total != n {
		t.Fatalf("batches %v hold %d entries, want %d", batches, total, n)
	}
	if rep := mustVerify(t, path); rep.Entries != n {
		t.Fatalf("Verify: %d entries, want %d", rep.Entries, n)
	}
}

func TestChainContinuesAcrossReopen(t *testing.T) {
	path := tempPath(t)
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := appendN(t, l, 0, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, path, audit.Options{})
	if seq, hash := l.Head(); seq != 10 || hash != first[9] {
		t.Fatalf("Head after reopen = %d %s, want 10 %s", seq, hash, first[9])
	}
	second := appendN(t, l, 10, 10)
	e11, err := l.Get(t.Context(), 11)
	if err != nil {
		t.Fatal(err)
	}
	if e11.PrevHash != first[9] {
		t.Fatalf("entry 11 prev_hash = %s, want entry 10's hash %s", e11.PrevHash, first[9])
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path); rep.Entries != 20 || rep.Head != second[9] {
		t.Fatalf("Verify = %+v, want 20 entries ending %s", rep, second[9])
	}
}

func TestCommitFailure(t *testing.T) {
	injected := errors.New("injected: disk on fire")
	path := tempPath(t)
	queued := make(chan struct{}, 8)
	entered := make(chan struct{})
	release := make(chan struct{})
	commits := 0
	l, err := audit.OpenWithHooks(path, audit.Options{ProbeInterval: time.Hour}, audit.Hooks{
		Enqueued: func() { queued <- struct{}{} },
		BeforeCommit: func(int) error {
			commits++
			switch commits {
			case 1: // hold the first group so that the next five queue up
				close(entered)
				<-release
				return nil
			default:
				return injected
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	wg.Go(func() {
		e := audit.TypicalEntry(0)
		_, _, errs[0] = l.Append(context.Background(), &e)
	})
	<-entered
	<-queued
	for i := 1; i < 6; i++ {
		wg.Go(func() {
			e := audit.TypicalEntry(i)
			_, _, errs[i] = l.Append(context.Background(), &e)
		})
	}
	for range 5 {
		<-queued
	}
	close(release)
	wg.Wait()

	if errs[0] != nil {
		t.Fatalf("first group: %v", errs[0])
	}
	for i, err := range errs[1:] {
		if !errors.Is(err, audit.ErrUnavailable) || !errors.Is(err, injected) {
			t.Fatalf("append %d in the failed group: err = %v, want ErrUnavailable wrapping the cause", i+1, err)
		}
	}
	if seq, _ := l.Head(); seq != 1 {
		t.Fatalf("head advanced to %d after a failed commit", seq)
	}
	// Fail closed: the log refuses appends until reopened.
	e := audit.TypicalEntry(7)
	if _, _, err := l.Append(t.Context(), &e); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("append after a failed commit: err = %v, want ErrUnavailable", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, path, audit.Options{})
	if seq, _ := l.Head(); seq != 1 {
		t.Fatalf("head after reopen = %d, want 1", seq)
	}
	appendN(t, l, 10, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path); rep.Entries != 3 {
		t.Fatalf("Verify: %d entries, want 3", rep.Entries)
	}
}

func TestAppendContext(t *testing.T) {
	t.Run("ended before the call: nothing queued", func(t *testing.T) {
		l := openLog(t, tempPath(t), audit.Options{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		e := audit.TypicalEntry(0)
		if _, _, err := l.Append(ctx, &e); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if seq, _ := l.Head(); seq != 0 {
			t.Fatalf("head = %d, want 0", seq)
		}
	})
	t.Run("ended while waiting: may still commit", func(t *testing.T) {
		entered := make(chan struct{})
		release := make(chan struct{})
		l := openLogWithHooks(t, tempPath(t), audit.Options{}, audit.Hooks{
			BeforeCommit: func(int) error {
				close(entered)
				<-release
				return nil
			},
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() {
			e := audit.TypicalEntry(0)
			_, _, err := l.Append(ctx, &e)
			done <- err
		}()
		<-entered
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		close(release)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if seq, _ := l.Head(); seq != 1 {
			t.Fatalf("head = %d: the queued entry should have been committed", seq)
		}
	})
}

func TestClose(t *testing.T) {
	l, err := audit.Open(tempPath(t), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	e := audit.TypicalEntry(0)
	_, _, err = l.Append(t.Context(), &e)
	if !errors.Is(err, audit.ErrUnavailable) || !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Append after Close: err = %v, want ErrUnavailable and ErrClosed", err)
	}
	if _, err := l.Get(t.Context(), 1); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Get after Close: err = %v, want ErrClosed", err)
	}
}

// TestCloseDrains checks that appends queued before Close are committed.
func TestCloseDrains(t *testing.T) {
	const n = 20
	path := tempPath(t)
	queued := make(chan struct{}, n)
	l, err := audit.OpenWithHooks(path, audit.Options{}, audit.Hooks{
		Enqueued: func() { queued <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			e := audit.TypicalEntry(i)
			if _, _, err := l.Append(context.Background(), &e); err != nil {
				t.Errorf("Append: %v", err)
			}
		})
	}
	for range n {
		<-queued
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if rep := mustVerify(t, path); rep.Entries != n {
		t.Fatalf("Verify: %d entries, want %d", rep.Entries, n)
	}
}

func TestOpenBusy(t *testing.T) {
	path := tempPath(t)
	openLog(t, path, audit.Options{})

	start := time.Now()
	_, err := audit.Open(path, audit.Options{OpenTimeout: 100 * time.Millisecond})
	elapsed := time.Since(start)
	if !errors.Is(err, audit.ErrBusy) {
		t.Fatalf("second Open: err = %v, want ErrBusy", err)
	}
	if elapsed > time.Second {
		t.Fatalf("second Open took %v with a 100ms timeout", elapsed)
	}
	// The message is for an operator: it names the file and the way out.
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "trustgate audit snapshot") {
		t.Fatalf("message does not name the file and the snapshot command: %q", msg)
	}
	t.Log(err)

	if _, err := audit.Verify(t.Context(), path, audit.Options{OpenTimeout: 100 * time.Millisecond}); !errors.Is(err, audit.ErrBusy) {
		t.Fatalf("Verify of a locked log: err = %v, want ErrBusy", err)
	}
}

// --- reading -------------------------------------------------------------

func TestGetNotFound(t *testing.T) {
	l := openLog(t, tempPath(t), audit.Options{})
	appendN(t, l, 0, 2)
	for _, seq := range []uint64{0, 3, 1 << 40} {
		if _, err := l.Get(t.Context(), seq); !errors.Is(err, audit.ErrNotFound) {
			t.Fatalf("Get(%d): err = %v, want ErrNotFound", seq, err)
		}
	}
}

func TestScan(t *testing.T) {
	const n = 600 // more than two read chunks
	l := openLog(t, tempPath(t), audit.Options{})
	hashes := appendN(t, l, 0, n)

	tests := []struct {
		from      uint64
		wantFirst uint64
		wantCount int
	}{
		{from: 0, wantFirst: 1, wantCount: n},
		{from: 1, wantFirst: 1, wantCount: n},
		{from: 256, wantFirst: 256, wantCount: n - 255},
		{from: n, wantFirst: n, wantCount: 1},
		{from: n + 1, wantCount: 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint("from ", tc.from), func(t *testing.T) {
			var got []*audit.Entry
			if err := l.Scan(t.Context(), tc.from, func(e *audit.Entry) error {
				got = append(got, e)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.wantCount {
				t.Fatalf("visited %d entries, want %d", len(got), tc.wantCount)
			}
			for i, e := range got {
				seq := tc.wantFirst + uint64(i)
				if e.Seq != seq || e.Hash != hashes[seq-1] {
					t.Fatalf("visit %d: entry %d hash %s, want entry %d hash %s", i, e.Seq, e.Hash, seq, hashes[seq-1])
				}
			}
		})
	}

	t.Run("callback error stops the scan", func(t *testing.T) {
		stop := errors.New("stop")
		visited := 0
		err := l.Scan(t.Context(), 1, func(e *audit.Entry) error {
			visited++
			if e.Seq == 300 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || visited != 300 {
			t.Fatalf("err = %v after %d visits, want stop after 300", err, visited)
		}
	})

	t.Run("callback may append", func(t *testing.T) {
		l := openLog(t, tempPath(t), audit.Options{})
		appendN(t, l, 0, 3)
		err := l.Scan(t.Context(), 1, func(e *audit.Entry) error {
			if e.Seq <= 3 {
				_, _, err := l.Append(t.Context(), e)
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if seq, _ := l.Head(); seq != 6 {
			t.Fatalf("head = %d, want 6", seq)
		}
	})

	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		err := l.Scan(ctx, 1, func(e *audit.Entry) error {
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestReverseScan(t *testing.T) {
	const n = 600
	l := openLog(t, tempPath(t), audit.Options{})
	hashes := appendN(t, l, 0, n)

	t.Run("all, newest first", func(t *testing.T) {
		want := uint64(n)
		err := l.ReverseScan(t.Context(), func(e *audit.Entry) (bool, error) {
			if e.Seq != want || e.Hash != hashes[want-1] {
				return false, fmt.Errorf("got entry %d, want %d", e.Seq, want)
			}
			want--
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want != 0 {
			t.Fatalf("stopped above entry %d", want)
		}
	})

	t.Run("stop by time", func(t *testing.T) {
		// The replay cache reseed: walk back until entries are older than a cutoff.
		cutoff := audit.TypicalEntry(n - 10).Time
		var tokens []string
		err := l.ReverseScan(t.Context(), func(e *audit.Entry) (bool, error) {
			if e.Time.Before(cutoff) {
				return false, nil
			}
			tokens = append(tokens, e.TokenID)
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(tokens) != 10 || tokens[0] != audit.TypicalEntry(n-1).TokenID {
			t.Fatalf("tokens = %v, want the 10 newest", tokens)
		}
	})

	t.Run("callback error", func(t *testing.T) {
		stop := errors.New("stop")
		err := l.ReverseScan(t.Context(), func(*audit.Entry) (bool, error) { return true, stop })
		if !errors.Is(err, stop) {
			t.Fatalf("err = %v, want stop", err)
		}
	})

	t.Run("empty log", func(t *testing.T) {
		empty := openLog(t, tempPath(t), audit.Options{})
		err := empty.ReverseScan(t.Context(), func(*audit.Entry) (bool, error) {
			return false, errors.New("visited an entry of an empty log")
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestReadsDetectGaps checks that Scan and ReverseScan do not silently
// skip a deleted entry.
func TestReadsDetectGaps(t *testing.T) {
	for _, deleted := range []uint64{1, 300, 600} {
		t.Run(fmt.Sprint("deleted ", deleted), func(t *testing.T) {
			path := tempPath(t)
			audit.BuildLog(t, path, 601)
			alter(t, path, func(entries, _ *bolt.Bucket) error { return entries.Delete(key(deleted)) })
			l := openLog(t, path, audit.Options{})
			err := l.Scan(t.Context(), 1, func(*audit.Entry) error { return nil })
			wantTamper(t, err, deleted)
			err = l.ReverseScan(t.Context(), func(*audit.Entry) (bool, error) { return true, nil })
			wantTamper(t, err, deleted)
		})
	}
}

func TestSnapshot(t *testing.T) {
	path := tempPath(t)
	l := openLog(t, path, audit.Options{})
	appendN(t, l, 0, 100)

	// Keep appending while the snapshots are taken.
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1000; ctx.Err() == nil; i++ {
			e := audit.TypicalEntry(i)
			if _, _, err := l.Append(ctx, &e); err != nil && ctx.Err() == nil {
				t.Errorf("Append: %v", err)
				return
			}
		}
	})
	defer func() { stop(); wg.Wait() }()

	t.Run("file", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "copy.db")
		if err := l.SnapshotFile(t.Context(), dst); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(dst)
		if err != nil {
			t.Fatal(err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Fatalf("snapshot mode %o, want 600", mode)
		}
		rep := mustVerify(t, dst)
		if rep.Entries < 100 {
			t.Fatalf("snapshot has %d entries, want at least 100", rep.Entries)
		}
		// The copy opens as a log and its chain continues.
		c := openLog(t, dst, audit.Options{})
		if seq, hash := c.Head(); seq != rep.Entries || hash != rep.Head {
			t.Fatalf("copy head %d %s, Verify said %d %s", seq, hash, rep.Entries, rep.Head)
		}
		entries, err := os.ReadDir(filepath.Dir(dst))
		if err != nil {
			t.Fatal(err)
		}
		// The copy and, since it was opened for writing, its journal.
		if len(entries) != 2 || entries[0].Name() != "copy.db" || entries[1].Name() != "copy.db.journal" {
			t.Fatalf("temporary files left behind: %v", entries)
		}
	})

	t.Run("writer", func(t *testing.T) {
		var buf bytes.Buffer
		n, err := l.Snapshot(t.Context(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(buf.Len()) {
			t.Fatalf("Snapshot returned %d, wrote %d bytes", n, buf.Len())
		}
		dst := filepath.Join(t.TempDir(), "copy.db")
		if err := os.WriteFile(dst, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, dst)
	})

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := l.Snapshot(ctx, io.Discard); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})

	t.Run("refuses the live file", func(t *testing.T) {
		if err := l.SnapshotFile(t.Context(), path); err == nil {
			t.Fatal("SnapshotFile over the live log succeeded")
		}
	})
}

// --- verification --------------------------------------------------------

func TestVerifyDetectsTampering(t *testing.T) {
	const n = 20
	pristine := filepath.Join(t.TempDir(), "pristine.db")
	audit.BuildLog(t, pristine, n)
	mustVerify(t, pristine)

	flip := func(seq uint64, pos func(size int) int, xor byte) func(*testing.T, *bolt.Bucket, *bolt.Bucket) error {
		return func(t *testing.T, entries, _ *bolt.Bucket) error {
			v := bytes.Clone(entries.Get(key(seq)))
			v[pos(len(v))] ^= xor
			return entries.Put(key(seq), v)
		}
	}
	rewrite := func(seq uint64, edit func(*audit.Entry)) func(*testing.T, *bolt.Bucket, *bolt.Bucket) error {
		return func(t *testing.T, entries, _ *bolt.Bucket) error {
			e := storedEntry(t, entries, seq)
			edit(&e)
			return entries.Put(key(seq), canonical(t, e))
		}
	}
	toDeny := func(e *audit.Entry) { e.Decision = "deny"; e.AllowedCategories = nil }
	swap := func(a, b uint64) func(*testing.T, *bolt.Bucket, *bolt.Bucket) error {
		return func(t *testing.T, entries, _ *bolt.Bucket) error {
			va, vb := bytes.Clone(entries.Get(key(a))), bytes.Clone(entries.Get(key(b)))
			if err := entries.Put(key(a), vb); err != nil {
				return err
			}
			return entries.Put(key(b), va)
		}
	}
	del := func(seqs ...uint64) func(*testing.T, *bolt.Bucket, *bolt.Bucket) error {
		return func(t *testing.T, entries, _ *bolt.Bucket) error {
			for _, s := range seqs {
				if err := entries.Delete(key(s)); err != nil {
					return err
				}
			}
			return nil
		}
	}

	type tc struct {
		name  string
		alter func(t *testing.T, entries, meta *bolt.Bucket) error
		want  uint64 // the seq the TamperError must name
		// atOpen, if not 0, is the seq Open's head check must name: Open
		// looks only at the last entry and meta, so it catches tail damage.
		atOpen uint64
	}
	tail := func(seq uint64) uint64 { // atOpen for damage to entry seq
		if seq == n {
			return n
		}
		return 0
	}
	var tests []tc

	// (a) one flipped byte, at fixed and random positions, in the first,
	// a middle, the second-to-last and the last entry.
	for _, seq := range []uint64{1, 2, 10, n - 1, n} {
		fixed := map[string]func(int) int{
			"first byte":  func(int) int { return 0 },
			"middle byte": func(size int) int { return size / 2 },
			"last byte":   func(size int) int { return size - 1 },
		}
		for name, pos := range fixed {
			tests = append(tests, tc{fmt.Sprintf("flip %s of entry %d", name, seq), flip(seq, pos, 0x01), seq, tail(seq)})
		}
		for seed := range uint64(6) {
			r := rand.New(rand.NewPCG(seed, seq))
			p, x := r.Float64(), byte(1+r.IntN(255))
			pos := func(size int) int { return int(p * float64(size)) }
			tests = append(tests, tc{fmt.Sprintf("flip random byte of entry %d seed %d", seq, seed), flip(seq, pos, x), seq, tail(seq)})
		}
	}
	tests = append(tests,
		// (b) deleted entries.
		tc{"delete entry 1", del(1), 1, 0},
		tc{"delete middle entry", del(7), 7, 0},
		tc{"delete two middle entries", del(7, 8), 7, 0},
		// (c) swapped values.
		tc{"swap entries 5 and 12", swap(5, 12), 5, 0},
		tc{"swap adjacent entries", swap(9, 10), 9, 0},
		tc{"swap last two entries", swap(n-1, n), n - 1, n},
		// (d) truncated tail.
		tc{"delete last entry", del(n), n, n},
		tc{"delete last two entries", del(n-1, n), n - 1, n - 1},
		// (e) an entry rewritten as valid canonical JSON (its hash is
		// implicitly recomputed), the next entry's prev_hash left alone.
		tc{"rewrite decision of middle entry", rewrite(8, toDeny), 8, 0},
		tc{"rewrite decision of entry 1", rewrite(1, toDeny), 1, 0},
		tc{"rewrite decision of last entry", rewrite(n, toDeny), n, n},
		tc{"rewrite prev_hash of middle entry", rewrite(8, func(e *audit.Entry) { e.PrevHash = strings.Repeat("a", 64) }), 8, 0},
		// An entry rewritten and the next one relinked to it: the chain
		// breaks after the relinked entry, which is the one named.
		tc{"rewrite entry 8 and relink entry 9", func(t *testing.T, entries, meta *bolt.Bucket) error {
			if err := rewrite(8, toDeny)(t, entries, meta); err != nil {
				return err
			}
			return rewrite(9, func(e *audit.Entry) { e.PrevHash = sha256Hex(entries.Get(key(8))) })(t, entries, meta)
		}, 9, 0},
		tc{"unknown field", func(t *testing.T, entries, _ *bolt.Bucket) error {
			v := entries.Get(key(3))
			return entries.Put(key(3), append([]byte(`{"approved_by":"x",`), v[1:]...))
		}, 3, 0},
		tc{"seq field edited", rewrite(6, func(e *audit.Entry) { e.Seq = 60 }), 6, 0},
		tc{"hash field stored", func(t *testing.T, entries, _ *bolt.Bucket) error {
			v := entries.Get(key(6))
			return entries.Put(key(6), append([]byte(`{"hash":"00",`), v[1:]...))
		}, 6, 0},
		tc{"short field name", func(t *testing.T, entries, _ *bolt.Bucket) error {
			v := entries.Get(key(6))
			return entries.Put(key(6), bytes.Replace(v, []byte(`"purpose":`), []byte(`"pu":`), 1))
		}, 6, 0},
		tc{"subject link broken", rewrite(11, func(e *audit.Entry) { e.PrevSubject = 3 }), 11, 0},
		tc{"trailing data", func(t *testing.T, entries, _ *bolt.Bucket) error {
			return entries.Put(key(4), append(bytes.Clone(entries.Get(key(4))), ` {}`...))
		}, 4, 0},
		tc{"extra entry beyond head", func(t *testing.T, entries, _ *bolt.Bucket) error {
			return entries.Put(key(n+1), bytes.Clone(entries.Get(key(n))))
		}, n + 1, n + 1},
		// Edited meta.
		tc{"meta head hash edited", func(t *testing.T, _, meta *bolt.Bucket) error {
			return meta.Put([]byte("head_hash"), []byte(strings.Repeat("f", 64)))
		}, n, n},
		tc{"meta head seq raised", func(t *testing.T, _, meta *bolt.Bucket) error {
			return meta.Put([]byte("head_seq"), key(n+1))
		}, n + 1, n + 1},
		tc{"meta head seq lowered", func(t *testing.T, _, meta *bolt.Bucket) error {
			return meta.Put([]byte("head_seq"), key(n-1))
		}, n, n},
	)

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.db")
			copyFile(t, pristine, path)
			alter(t, path, func(entries, meta *bolt.Bucket) error { return tc.alter(t, entries, meta) })

			rep, err := audit.Verify(t.Context(), path, audit.Options{})
			if err == nil {
				t.Fatalf("Verify passed a damaged log: %+v", rep)
			}
			wantTamper(t, err, tc.want)
			t.Log(err)

			if tc.atOpen != 0 {
				l, err := audit.Open(path, audit.Options{})
				if err == nil {
					_ = l.Close()
				}
				wantTamper(t, err, tc.atOpen)
			}
		})
	}
}

func TestVerifyNotAnAuditLog(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		_, err := audit.Verify(t.Context(), tempPath(t), audit.Options{})
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want ErrNotExist", err)
		}
	})
	t.Run("bbolt file without the buckets", func(t *testing.T) {
		path := tempPath(t)
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		_, err = audit.Verify(t.Context(), path, audit.Options{})
		wantTamper(t, err, 0)
	})
	t.Run("future format version", func(t *testing.T) {
		path := tempPath(t)
		audit.BuildLog(t, path, 1)
		alter(t, path, func(_, meta *bolt.Bucket) error { return meta.Put([]byte("version"), key(5)) })
		if _, err := audit.Verify(t.Context(), path, audit.Options{}); !errors.Is(err, audit.ErrUnsupportedVersion) {
			t.Fatalf("Verify: err = %v, want ErrUnsupportedVersion", err)
		}
		if _, err := audit.Open(path, audit.Options{}); !errors.Is(err, audit.ErrUnsupportedVersion) {
			t.Fatalf("Open: err = %v, want ErrUnsupportedVersion", err)
		}
	})
}

func TestVerifyLargeLog(t *testing.T) {
	const n = 20_000
	path := tempPath(t)
	head := audit.BuildLog(t, path, n)
	start := time.Now()
	rep := mustVerify(t, path)
	t.Logf("verified %d entries in %v", rep.Entries, time.Since(start))
	if rep.Entries != n || rep.Head != head {
		t.Fatalf("Verify = %+v, want %d entries ending %s", rep, n, head)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := audit.Verify(ctx, path, audit.Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify with a cancelled context: err = %v, want context.Canceled", err)
	}
}

// Appends on their way (Coming) hold a batch open, but never for long: the
// committer commits once none is on its way, and an announced append that
// never comes costs at most the gap, not CommitDelay (an hour here).
func TestCommitWaitsOnlyForAppendsOnTheirWay(t *testing.T) {
	var batches []int // written only by the committer, read after Close
	l := openLogWithHooks(t, tempPath(t), audit.Options{CommitDelay: time.Hour}, audit.Hooks{
		BeforeCommit: func(size int) error { batches = append(batches, size); return nil },
	})
	within := func(what string, f func()) {
		done := make(chan struct{})
		go func() { defer close(done); f() }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%s: the committer waited out CommitDelay", what)
		}
	}
	// Eight requests in flight, each announcing its append and then making it.
	within("eight announced appends", func() {
		var wg sync.WaitGroup
		for i := range 8 {
			arrived := l.Coming()
			wg.Go(func() {
				e := audit.TypicalEntry(i)
				arrived()
				if _, _, err := l.Append(context.Background(), &e); err != nil {
					t.Errorf("Append: %v", err)
				}
			})
		}
		wg.Wait()
	})
	// Five announced appends that never come (their requests failed and
	// forgot to say so) hold a lone append back only for the gap.
	stale := make([]func(), 5)
	for i := range stale {
		stale[i] = l.Coming()
	}
	within("a lone append beside stale announcements", func() {
		e := audit.TypicalEntry(100)
		if _, _, err := l.Append(context.Background(), &e); err != nil {
			t.Errorf("Append: %v", err)
		}
	})
	for _, arrived := range stale {
		arrived()
		arrived() // a second call does nothing
	}
	// Nothing on its way: each append is committed alone, at once.
	within("appends one after another", func() {
		for i := range 3 {
			e := audit.TypicalEntry(200 + i)
			if _, _, err := l.Append(context.Background(), &e); err != nil {
				t.Errorf("Append: %v", err)
			}
		}
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, b := range batches {
		total += b
	}
	if total != 12 || !slices.Equal(batches[len(batches)-3:], []int{1, 1, 1}) {
		t.Fatalf("batches %v: want 12 entries, the last three committed one by one", batches)
	}
}
