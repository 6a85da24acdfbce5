package audit_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/procfs"
)

// The journal (journal.go, apply.go, docs/audit-journal.md): a batch is
// answered once its journal record is durable; bbolt is brought up to
// date behind it. These tests take the log down in the ways it can go
// down and check that nothing answered is lost, nothing unanswered or
// stale comes back, and damage is refused.

// childEnv makes the test binary a child that appends and is killed
// (journalChild, called from TestMain).
const childEnv = "AUDIT_JOURNAL_CHILD"

// journalChild opens the log named by $AUDIT_JOURNAL_CHILD, never
// applying on its own, appends $AUDIT_JOURNAL_N typical entries, prints
// each acknowledged seq and hash, then "ready", and waits to be killed.
func journalChild() {
	defer audit.SetApplyTiming(1<<62, time.Hour)()
	n, _ := strconv.Atoi(os.Getenv("AUDIT_JOURNAL_N"))
	l, err := audit.Open(os.Getenv(childEnv), audit.Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	for i := range n {
		e := audit.TypicalEntry(i)
		seq, hash, err := l.Append(context.Background(), &e)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println(seq, hash)
	}
	fmt.Println("ready", l.Unapplied())
	select {}
}

// killedAfter runs journalChild on path for n appends, kills it with
// SIGKILL once they are acknowledged and returns the hashes it was
// given and how many were still unapplied.
func killedAfter(t *testing.T, path string, n int) (hashes []string, unapplied int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path, "AUDIT_JOURNAL_N="+strconv.Itoa(n))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "ready" {
			unapplied, _ = strconv.Atoi(f[1])
			break
		}
		if len(f) != 2 || f[0] == "error" {
			t.Fatalf("child: %s", sc.Text())
		}
		hashes = append(hashes, f[1])
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(hashes) != n {
		t.Fatalf("child acknowledged %d of %d appends", len(hashes), n)
	}
	return hashes, unapplied
}

// reference builds, in a fresh log that never went down, the first n
// typical entries, and returns its tree head.
func reference(t *testing.T, n int) audit.TreeHead {
	t.Helper()
	l := openLog(t, filepath.Join(t.TempDir(), "ref.db"), audit.Options{})
	appendN(t, l, 0, n)
	return l.TreeHead()
}

func TestJournalReplayAfterKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	// Killed twice: once with 30 entries only in the journal, then again
	// after the restart that applied them (nothing left to replay).
	first, _ := killedAfter(t, path, 30)
	if hashes, unapplied := killedAfter(t, path, 0); len(hashes) != 0 || unapplied != 0 {
		t.Fatalf("second run: %d appends, %d unapplied; want none", len(hashes), unapplied)
	}
	if l, err := audit.Open(path, audit.Options{ReadOnly: true}); err != nil {
		t.Fatalf("read-only open after replay: %v", err)
	} else {
		l.Close()
	}

	path2 := filepath.Join(t.TempDir(), "audit.db")
	hashes, unapplied := killedAfter(t, path2, 40)
	if unapplied != 40 {
		t.Fatalf("the child applied %d of its 40 entries; the test needs them in the journal only", 40-unapplied)
	}
	// Readers of the file alone refuse it, naming the journal.
	if _, err := audit.Verify(t.Context(), path2, audit.Options{}); !errors.Is(err, audit.ErrUnapplied) || !strings.Contains(err.Error(), audit.JournalPath(path2)) {
		t.Fatalf("Verify with an unapplied journal: err = %v, want ErrUnapplied naming the journal", err)
	}
	if _, err := audit.Open(path2, audit.Options{ReadOnly: true}); !errors.Is(err, audit.ErrUnapplied) || !strings.Contains(err.Error(), "entries 1 to 40") {
		t.Fatalf("read-only open with an unapplied journal: err = %v, want ErrUnapplied for entries 1 to 40", err)
	}
	// Opening for writing applies them: the log is the one that never went down.
	l := openLog(t, path2, audit.Options{})
	if got, want := l.TreeHead(), reference(t, 40); got != want {
		t.Fatalf("after replay: %+v, a log that never went down: %+v", got, want)
	}
	if _, h := l.Head(); h != hashes[39] {
		t.Fatalf("head hash %s, the child was given %s", h, hashes[39])
	}
	appendN(t, l, 40, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path2); rep.Entries != 45 {
		t.Fatalf("Verify: %d entries, want 45", rep.Entries)
	}
	if len(first) != 30 || mustVerify(t, path).Entries != 30 {
		t.Fatalf("the first log: %d acknowledged, want 30 entries after replay", len(first))
	}
}

// journalRecords returns the offsets of the journal blocks that begin a
// record.
func journalRecords(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(audit.JournalPath(path))
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := int64(4096); off+4 <= int64(len(b)); off += 4096 {
		if string(b[off:off+4]) == "TGJR" {
			offs = append(offs, off)
		}
	}
	return offs
}

func patchFile(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// failsOnce returns a hook that fails once, with msg, after arm.
func failsOnce(msg string) (arm func(), hook func() error) {
	var armed atomic.Bool
	return func() { armed.Store(true) }, func() error {
		if armed.CompareAndSwap(true, false) {
			return errors.New(msg)
		}
		return nil
	}
}

// awaitRecovery waits (up to 10 s) for a failed log's probe to recover it.
func awaitRecovery(t *testing.T, l *audit.Log) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Health().State != "ok" {
		if time.Now().After(deadline) {
			t.Fatalf("not recovered: %+v", l.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refusedAt checks that opening the log at path is refused with a
// TamperError at entry seq whose message says says; what names the damage.
func refusedAt(t *testing.T, path string, seq uint64, says, what string) {
	t.Helper()
	_, err := audit.Open(path, audit.Options{})
	var te *audit.TamperError
	if !errors.As(err, &te) || te.Seq != seq || !strings.Contains(err.Error(), says) {
		t.Fatalf("open with %s: err = %v, want a TamperError at entry %d (%s)", what, err, seq, says)
	}
}

func TestJournalTornAndTamperedRecords(t *testing.T) {
	// Each append on its own: one record each.
	crashed := func(t *testing.T) (string, []int64) {
		path := filepath.Join(t.TempDir(), "audit.db")
		killedAfter(t, path, 6)
		recs := journalRecords(t, path)
		if len(recs) != 6 {
			t.Fatalf("%d records in the journal, want 6", len(recs))
		}
		return path, recs
	}
	t.Run("torn last record", func(t *testing.T) {
		path, recs := crashed(t)
		patchFile(t, audit.JournalPath(path), recs[5]+100, []byte("torn"))
		l := openLog(t, path, audit.Options{})
		if got, want := l.TreeHead(), reference(t, 5); got != want {
			t.Fatalf("after a torn last record: %+v, want the first 5 entries %+v", got, want)
		}
	})
	t.Run("flipped byte before the last", func(t *testing.T) {
		path, recs := crashed(t)
		patchFile(t, audit.JournalPath(path), recs[2]+200, []byte{0xff})
		refusedAt(t, path, 3, "missing", "record 3 damaged and 4-6 intact")
	})
	t.Run("rewritten with a valid checksum", func(t *testing.T) {
		// The record of entry 4 replaced by entry 4 of another log: it
		// passes its checksum but does not chain to entry 3.
		path, recs := crashed(t)
		other := filepath.Join(t.TempDir(), "other.db")
		l := openLog(t, other, audit.Options{})
		audit.NeverApply(t)
		appendN(t, l, 100, 4)
		b, err := os.ReadFile(audit.JournalPath(other))
		if err != nil {
			t.Fatal(err)
		}
		orecs := journalRecords(t, other)
		// Same epoch as the crashed journal's header, so that only the chain can tell.
		j, err := os.ReadFile(audit.JournalPath(path))
		if err != nil {
			t.Fatal(err)
		}
		forged := append([]byte(nil), b[orecs[3]:orecs[3]+4096]...)
		copy(forged[12:20], j[recs[3]+12:recs[3]+20])
		audit.ResealRecord(forged)
		patchFile(t, audit.JournalPath(path), recs[3], forged)
		refusedAt(t, path, 4, "does not chain", "a forged record")
	})
	t.Run("chain link rewritten", func(t *testing.T) {
		// Entry 4 given a link to entry 2 in its practitioner's chain
		// (it has none), its record rebuilt and resealed: the prev_hash
		// still holds, the link does not.
		path, recs := crashed(t)
		j, err := os.ReadFile(audit.JournalPath(path))
		if err != nil {
			t.Fatal(err)
		}
		forged := audit.ForgeRecord(j[recs[3]:], func(v []byte) []byte {
			return []byte(strings.Replace(string(v), `"prev_hash":`, `"prev_practitioner":2,"prev_hash":`, 1))
		})
		patchFile(t, audit.JournalPath(path), recs[3], forged)
		refusedAt(t, path, 4, "practitioner chain", "a rewritten link")
	})
	t.Run("header of another epoch", func(t *testing.T) {
		// A clean close starts a new epoch: the records before it are
		// dead, so the log file alone is the log. Put back a copy of the
		// file taken at 3 entries: the journal's records of entries 4
		// and 5 are not taken for live ones.
		path := filepath.Join(t.TempDir(), "audit.db")
		l, err := audit.Open(path, audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, l, 0, 3)
		old := filepath.Join(t.TempDir(), "at3.db")
		if err := l.SnapshotFile(t.Context(), old); err != nil {
			t.Fatal(err)
		}
		appendN(t, l, 3, 2)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if n := len(journalRecords(t, path)); n != 5 {
			t.Fatalf("the journal holds %d records; the test needs the 5 dead ones", n)
		}
		copyFile(t, old, path)
		l = openLog(t, path, audit.Options{})
		if seq, _ := l.Head(); seq != 3 || l.Unapplied() != 0 {
			t.Fatalf("head %d, %d unapplied: records from before a clean close were replayed", seq, l.Unapplied())
		}
	})
}

func TestJournalRingWrapsAndFills(t *testing.T) {
	// A journal of 15 record blocks, an applier that never applies on its
	// own: every 15 or so appends the committer must wait for an apply.
	audit.NeverApply(t)
	path := filepath.Join(t.TempDir(), "audit.db")
	var applies atomic.Int64
	l := openLogWithHooks(t, path, audit.Options{JournalSize: audit.MinJournalSize}, audit.Hooks{
		BeforeApply: func(int) error { applies.Add(1); return nil },
	})
	hashes := appendN(t, l, 0, 100)
	if a := applies.Load(); a < 5 {
		t.Fatalf("%d applies for 100 single-entry records in a 15-record ring; the full journal did not hold appends back", a)
	}
	if l.Unapplied() == 0 {
		t.Fatal("nothing left unapplied: the test needs a crash image with live records after a wrap")
	}
	// A crash image: the files as they are now, live records after
	// stale ones of the same epoch.
	img := filepath.Join(t.TempDir(), "audit.db")
	copyFile(t, path, img)
	copyFile(t, audit.JournalPath(path), audit.JournalPath(img))
	c := openLog(t, img, audit.Options{JournalSize: audit.MinJournalSize})
	if got, want := c.TreeHead(), l.TreeHead(); got != want {
		t.Fatalf("crash image after wraps: %+v, the live log %+v", got, want)
	}
	if _, h := c.Head(); h != hashes[99] {
		t.Fatalf("crash image head %s, want %s", h, hashes[99])
	}
}

func TestJournalBigBatchGoesStraightToTheFile(t *testing.T) {
	audit.NeverApply(t)
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openLog(t, path, audit.Options{JournalSize: audit.MinJournalSize})
	appendN(t, l, 0, 3)
	e := audit.TypicalEntry(3)
	e.Reasons = []string{strings.Repeat("a reason longer than the whole journal ", 2000)}
	seq, _, err := l.Append(t.Context(), &e)
	if err != nil || seq != 4 {
		t.Fatalf("Append of an entry larger than the journal: seq %d, err %v", seq, err)
	}
	if l.Unapplied() != 0 {
		t.Fatalf("%d unapplied after a direct commit", l.Unapplied())
	}
	appendN(t, l, 4, 2)
	got, err := l.Get(t.Context(), 4)
	if err != nil || got.Reasons[0] != e.Reasons[0] {
		t.Fatalf("Get(4): err %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path); rep.Entries != 6 {
		t.Fatalf("Verify: %d entries, want 6", rep.Entries)
	}
}

func TestJournalReadersSeeWhatWasAnswered(t *testing.T) {
	audit.NeverApply(t)
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openLog(t, path, audit.Options{})
	hashes := appendN(t, l, 0, 20)
	if l.Unapplied() != 20 {
		t.Fatalf("%d unapplied, want 20", l.Unapplied())
	}
	e, err := l.Get(t.Context(), 20)
	if err != nil || e.Hash != hashes[19] {
		t.Fatalf("Get(20) straight after its append: %v", err)
	}
	appendN(t, l, 20, 1)
	page, err := l.Query(t.Context(), audit.Query{Limit: 5})
	if err != nil || len(page.Entries) != 5 || page.Entries[0].Seq != 21 {
		t.Fatalf("Query straight after an append: %v %+v", err, page)
	}
	appendN(t, l, 21, 4)
	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := l.SnapshotFile(t.Context(), snap); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, snap); rep.Entries != 25 {
		t.Fatalf("snapshot with entries only in the journal: %d entries, want 25", rep.Entries)
	}
}

func TestJournalApplyFailure(t *testing.T) {
	audit.NeverApply(t)
	var broken atomic.Bool
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openLogWithHooks(t, path, audit.Options{ProbeInterval: 20 * time.Millisecond}, audit.Hooks{
		BeforeApply: func(int) error {
			if broken.Load() {
				return errors.New("injected: the log file cannot be written")
			}
			return nil
		},
	})
	hashes := appendN(t, l, 0, 10)
	broken.Store(true)
	// A reader forces an apply, which fails: the log refuses appends
	// (503) and readers get the cause; what was answered stays in the journal.
	if _, err := l.Get(t.Context(), 3); !errors.Is(err, audit.ErrUnavailable) || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Get while the apply fails: err = %v, want ErrUnavailable with the cause", err)
	}
	if h := l.Health(); h.State != "failed" {
		t.Fatalf("health after a failed apply: %+v", h)
	}
	e := audit.TypicalEntry(10)
	if _, _, err := l.Append(t.Context(), &e); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Append after a failed apply: err = %v, want ErrUnavailable", err)
	}
	broken.Store(false)
	awaitRecovery(t, l)
	if l.Unapplied() != 0 {
		t.Fatalf("recovered with %d unapplied", l.Unapplied())
	}
	more := appendN(t, l, 10, 5)
	if got, err := l.Get(t.Context(), 10); err != nil || got.Hash != hashes[9] {
		t.Fatalf("Get(10) after recovery: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path); rep.Entries != 15 || rep.Head != more[4] {
		t.Fatalf("Verify after recovery: %+v", rep)
	}
}

func TestJournalFailedSyncIsNeverReplayed(t *testing.T) {
	// The sync of entry 14's record (the ring's block 13 of 15) fails
	// after its bytes were written: its request is answered 503. After
	// recovery seq 14 goes to another entry, too large for the rest of
	// the ring, so written at block 0. A crash image must hold that one,
	// never the failed one.
	audit.NeverApply(t)
	arm, hook := failsOnce("injected: fdatasync: input/output error")
	path := filepath.Join(t.TempDir(), "audit.db")
	opts := audit.Options{ProbeInterval: 20 * time.Millisecond, JournalSize: audit.MinJournalSize}
	l := openLogWithHooks(t, path, opts, audit.Hooks{AfterJournal: hook})
	appendN(t, l, 0, 13)
	arm()
	e := audit.TypicalEntry(1000)
	if _, _, err := l.Append(t.Context(), &e); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Append whose sync failed: err = %v, want ErrUnavailable", err)
	}
	awaitRecovery(t, l)
	big := audit.TypicalEntry(13)
	big.Reasons = []string{strings.Repeat("x", 9000)}
	if seq, _, err := l.Append(t.Context(), &big); err != nil || seq != 14 {
		t.Fatalf("Append after recovery: seq %d, err %v", seq, err)
	}
	appendN(t, l, 14, 1)
	if l.Unapplied() != 2 {
		t.Fatalf("%d unapplied, want entries 14 and 15", l.Unapplied())
	}
	img := filepath.Join(t.TempDir(), "audit.db")
	copyFile(t, path, img)
	copyFile(t, audit.JournalPath(path), audit.JournalPath(img))
	c := openLog(t, img, opts)
	if got, want := c.TreeHead(), l.TreeHead(); got != want {
		t.Fatalf("crash image: %+v, the live log %+v", got, want)
	}
	if got, err := c.Get(t.Context(), 14); err != nil || len(got.Reasons) != 1 || got.Reasons[0] != big.Reasons[0] {
		t.Fatalf("entry 14 of the crash image is not the one answered (err %v)", err)
	}
}

func TestJournalHeadsDumpWhileBehind(t *testing.T) {
	// A chain heads dump written by an apply that runs behind the head
	// must hold the heads as of the dump, not the committer's newer ones:
	// entries 4 and 5 are committed while the apply of 1 to 3 (whose
	// dump is as of entry 3) waits; the apply of 4 and 5 writes none.
	audit.SetHeadsDumpEvery(t, 3)
	audit.NeverApply(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openLogWithHooks(t, path, audit.Options{}, audit.Hooks{
		BeforeApply: func(int) error {
			if calls.Add(1) == 1 {
				close(entered)
				<-release
			}
			return nil
		},
	})
	appendChildren := func(from, to int) { // entry i is about child i%3
		for i := from; i < to; i++ {
			e := audit.TypicalEntry(i % 3)
			e.Time = e.Time.Add(time.Duration(i) * time.Second)
			if _, _, err := l.Append(t.Context(), &e); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendChildren(0, 3)
	read := make(chan error, 1)
	go func() { _, err := l.Get(t.Context(), 1); read <- err }() // applies 1 to 3
	<-entered
	appendChildren(3, 5)
	close(release)
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, path) // checks the dump against the entries
	l = openLog(t, path, audit.Options{})
	e := audit.TypicalEntry(1)
	seq, _, err := l.Append(t.Context(), &e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Get(t.Context(), seq)
	if err != nil || got.PrevSubject != 5 {
		t.Fatalf("entry %d links to %d for its child, want 5 (err %v)", seq, got.PrevSubject, err)
	}
}

func TestJournalConcurrentReadersAndAppends(t *testing.T) {
	// Appenders and readers at once, with an applier applying every few
	// entries: every reader finds every entry it was told of, by seq and
	// in its child's query, and the log verifies.
	t.Cleanup(audit.SetApplyTiming(16, 2*time.Millisecond))
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openLog(t, path, audit.Options{JournalSize: audit.MinJournalSize})
	const appenders, each = 6, 80
	type acked struct {
		seq     uint64
		subject string
	}
	seen := make(chan acked, appenders*each)
	errs := make(chan error, appenders*each*2)
	done := make(chan struct{})
	readers := make(chan struct{})
	go func() {
		defer close(readers)
		for {
			select {
			case a := <-seen:
				e, err := l.Get(t.Context(), a.seq)
				if err != nil || e.Subject != a.subject {
					errs <- fmt.Errorf("Get(%d) right after its append: %v", a.seq, err)
					continue
				}
				page, err := l.Query(t.Context(), audit.Query{Filter: audit.Filter{Subject: a.subject}, Limit: 1000})
				if err != nil {
					errs <- err
					continue
				}
				found := false
				for _, x := range page.Entries {
					found = found || x.Seq == a.seq
				}
				if !found {
					errs <- fmt.Errorf("entry %d missing from its child's query (%d entries)", a.seq, len(page.Entries))
				}
			case <-done:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range appenders {
		wg.Go(func() {
			for i := range each {
				e := audit.TypicalEntry(w*each + i)
				seq, _, err := l.Append(t.Context(), &e)
				if err != nil {
					errs <- err
					return
				}
				seen <- acked{seq, e.Subject}
			}
		})
	}
	wg.Wait()
	for len(seen) > 0 {
		time.Sleep(time.Millisecond)
	}
	close(done)
	<-readers
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path); rep.Entries != appenders*each {
		t.Fatalf("Verify: %d entries, want %d", rep.Entries, appenders*each)
	}
}

func TestJournalApplyThatReachedTheFileAfterAll(t *testing.T) {
	// An apply's commit reports a failure although its pages and meta
	// are in the file (the last sync failed): the probe must take the
	// file's head, not apply those entries again.
	audit.NeverApply(t)
	arm, hook := failsOnce("injected: fdatasync after the meta page: input/output error")
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openLogWithHooks(t, path, audit.Options{ProbeInterval: 20 * time.Millisecond}, audit.Hooks{AfterApply: hook})
	appendN(t, l, 0, 8)
	arm()
	if _, err := l.Get(t.Context(), 8); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Get while the apply fails: err = %v, want ErrUnavailable", err)
	}
	awaitRecovery(t, l)
	if l.Unapplied() != 0 {
		t.Fatalf("%d unapplied after recovery", l.Unapplied())
	}
	hashes := appendN(t, l, 8, 4)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path); rep.Entries != 12 || rep.Head != hashes[3] {
		t.Fatalf("Verify: %+v, want 12 entries ending %s", rep, hashes[3])
	}
}

// mappedRss is the resident size, in bytes, of this process's mappings of
// the file at path.
func mappedRss(t *testing.T, path string) int64 {
	t.Helper()
	rss, err := procfs.MappedFiles(0)
	if err != nil {
		t.Fatal(err)
	}
	return rss[path]
}

func TestJournalApplierReleasesMappedPages(t *testing.T) {
	// The applier releases the file's pages mapped into the process after
	// an apply: reading the whole log makes them resident; the next apply
	// drops them, and every entry reads back the same.
	t.Cleanup(audit.SetApplyTiming(64, 10*time.Millisecond))
	audit.SetReleaseEvery(t, 0)
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openLog(t, path, audit.Options{})
	const n = 1500
	hashes := appendN(t, l, 0, n)
	readAll := func(when string) {
		for i, h := range hashes {
			e, err := l.Get(t.Context(), uint64(i+1))
			if err != nil || e.Hash != h {
				t.Fatalf("%s: Get(%d): %v", when, i+1, err)
			}
		}
	}
	readAll("before the release")
	if rss := mappedRss(t, path); rss < 1<<20 {
		t.Fatalf("%d bytes of audit.db resident after reading %d entries: the test needs at least 1 MiB", rss, n)
	}
	hashes = append(hashes, appendN(t, l, n, 1)...)
	deadline := time.Now().Add(10 * time.Second)
	for mappedRss(t, path) > 64<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("audit.db still has %d bytes resident 10 s after an apply: the applier did not release them", mappedRss(t, path))
		}
		time.Sleep(5 * time.Millisecond)
	}
	readAll("after the release")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path); rep.Entries != n+1 {
		t.Fatalf("Verify: %d entries, want %d", rep.Entries, n+1)
	}
}
