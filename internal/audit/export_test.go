package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Hooks exposes the committer's test hooks to the external tests.
type Hooks struct {
	Enqueued     func()            // called after an append is queued
	BeforeCommit func(n int) error // called before a batch of n entries is made durable; an error aborts it
	BeforeApply  func(n int) error // called inside the bbolt transaction applying n journalled entries, before they are written; an error aborts it
	AfterJournal func() error      // called after a batch's journal record is written and synced; an error fails the batch as a failed sync would
	AfterApply   func() error      // called after an apply's bbolt transaction committed; an error fails the apply as a commit whose last sync failed would
}

// OpenWithHooks is Open with test hooks installed.
func OpenWithHooks(path string, opts Options, h Hooks) (*Log, error) {
	return open(path, opts, hooks{enqueued: h.Enqueued, beforeCommit: h.BeforeCommit, beforeApply: h.BeforeApply, afterJournal: h.AfterJournal, afterApply: h.AfterApply})
}

// SetHeadsDumpEvery changes the spacing of the chain heads dumps for the
// rest of the test and restores it after.
func SetHeadsDumpEvery(t testing.TB, n uint64) {
	old := headsDumpEvery
	headsDumpEvery = n
	t.Cleanup(func() { headsDumpEvery = old })
}

// SetApplyTiming changes when the journal's applier applies (entries
// waiting, delay after the oldest) until the returned function is
// called.
func SetApplyTiming(batch uint64, delay time.Duration) (restore func()) {
	ob, od := applyBatch, applyDelay
	applyBatch, applyDelay = batch, delay
	return func() { applyBatch, applyDelay = ob, od }
}

// SetReleaseEvery changes how often the applier releases the log file's
// mapped pages, for logs opened during the rest of the test.
func SetReleaseEvery(t testing.TB, d time.Duration) {
	old := releaseEvery
	releaseEvery = d
	t.Cleanup(func() { releaseEvery = old })
}

// NeverApply makes the applier apply only when it must (a reader, a full
// journal, Close) for the rest of the test.
func NeverApply(t testing.TB) {
	t.Cleanup(SetApplyTiming(1<<62, time.Hour))
}

// Unapplied returns the number of entries journalled but not yet in bbolt.
func (l *Log) Unapplied() uint64 {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	if l.jr == nil {
		return 0
	}
	return l.head.seq - l.ap.applied.seq
}

// ResealRecord recomputes the checksum of the journal record at the
// start of b (a forger's step).
func ResealRecord(b []byte) {
	n := int(binary.BigEndian.Uint32(b[8:12]))
	binary.BigEndian.PutUint32(b[4:8], crc32.Checksum(b[8:recordHeader+n], castagnoli))
}

// ForgeRecord rebuilds the journal record at the start of b with each
// stored entry passed through edit, resealed (a forger's step), and
// returns it padded to whole blocks.
func ForgeRecord(b []byte, edit func(val []byte) []byte) []byte {
	r, _, ok := parseRecord(b, binary.BigEndian.Uint64(b[12:20]))
	if !ok {
		panic("ForgeRecord: not a valid record")
	}
	recs := make([]record, len(r.vals))
	for i, v := range r.vals {
		recs[i].val = edit(v)
	}
	j := &journal{epoch: binary.BigEndian.Uint64(b[12:20])}
	return j.encode(r.first, recs)
}

// MinJournalSize is the smallest journal file.
const MinJournalSize = minJournalSize

// Commits returns the number of append transactions committed so far.
func (l *Log) Commits() uint64 { return l.commits.Load() }

// DB returns the underlying bbolt handle.
func (l *Log) DB() *bolt.DB { return l.db }

// TypicalChildren is the number of distinct children TypicalEntry
// cycles through: the children known to several agencies of one Trust
// over the life of a log (docs/performance.md).
const TypicalChildren = 20_000

// TypicalEntry returns a typical decision entry as the gateway writes
// it in the demo Trust (shaped on real entries from the internal/app
// end-to-end harness; TestRecordedInputsRebuildExactly there holds a
// real one near the same size): a social worker at exley-csc asks
// exley-police for police concerns and household about a child, allowed
// by the safeguarding protocol, with the reasons and lawful basis the
// demo policy writes, the policy revision hash, a jti as
// identity.Mint makes it, and the input residual the gateway records —
// partner types and the one consent record on file for the child (an
// early help consent given by a parent, not needed here). The time has
// nanoseconds, as the gateway's clock gives. i varies the
// request-specific fields. No real person's data: NHS numbers never
// appear (Subject is a pseudonym).
func TypicalEntry(i int) Entry {
	child := uint64(i%TypicalChildren + 1)
	at := time.Date(2026, 11, 22, 9, 26, 53, 589_793_238, time.UTC).Add(time.Duration(i) * 1_000_003 * time.Nanosecond)
	consentFrom := at.Add(-time.Duration(child%90+1)*24*time.Hour - time.Duration(child)*7_919_333*time.Nanosecond)
	consentUntil := consentFrom.Truncate(time.Second).AddDate(1, 0, 0)
	return Entry{
		Time:              at,
		RequestID:         fmt.Sprintf("%024x", sha256.Sum256([]byte(fmt.Sprint("request ", i))))[:24],
		Kind:              KindDecision,
		Method:            "POST",
		Path:              "/v1/decisions",
		Status:            200,
		Requester:         "exley-csc",
		Practitioner:      fmt.Sprintf("csc-sw-%05d", i%5000),
		Role:              "social_worker",
		TokenID:           typicalJTI(i),
		Provider:          "exley-police",
		Purpose:           "safeguarding",
		Subject:           fmt.Sprintf("%064x", sha256.Sum256([]byte(fmt.Sprint("child ", child)))),
		Categories:        []string{"police_concerns", "household"},
		Decision:          "allow",
		AllowedCategories: []string{"household", "police_concerns"},
		Reasons:           []string{"allowed by isp-safeguarding v3 rule police-to-social-care (consent not required by the rule)"},
		Protocol:          "isp-safeguarding",
		ProtocolVersion:   "3",
		Rule:              "police-to-social-care",
		LawfulBasis:       "DPA 2018 Part 3 s35; Sch 8 para 4 (safeguarding of children)",
		PolicyRevision:    "85f4b3abe78f6363a54fc3c684b846bbf747bd2ff1ad35df2fbd8539b2b6d7ec",
		InputResidual: Residual(fmt.Sprintf(`["local_authority","police",[["cns-%04x%016x","given","parent",0,["early_help"],["identity","immunisations"],["exley-csc"],[],[],%s,%d]]]`,
			child*0x2545&0xffff, child*0x2545f4914f6cdd1d, seconds(consentFrom), consentUntil.Unix())),
	}
}

// seconds is t as an instant of an input residual (decimal seconds).
func seconds(t time.Time) string {
	if t.Nanosecond() == 0 {
		return fmt.Sprint(t.Unix())
	}
	return fmt.Sprintf("%d.%s", t.Unix(), strings.TrimRight(fmt.Sprintf("%09d", t.Nanosecond()), "0"))
}

// typicalJTI is a token id as identity.Mint makes one (rand.Text: 26
// characters of base32), derived from i.
func typicalJTI(i int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b := make([]byte, 26)
	x := uint64(i)*0x9e3779b97f4a7c15 ^ 0x2545f4914f6cdd1d
	for j := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[j] = alphabet[x%32]
	}
	return string(b)
}

// BuildLog creates a log of n TypicalEntry entries at path quickly: it
// writes through the same encoder and append path as Append, but in
// large transactions without the committer. It returns the head hash.
func BuildLog(tb testing.TB, path string, n int) string {
	tb.Helper()
	return BuildLogPageSize(tb, path, n, 0)
}

// BuildLogPageSize is BuildLog for a new file with the given page size
// (0: the default).
func BuildLogPageSize(tb testing.TB, path string, n, pageSize int) string {
	tb.Helper()
	l, err := Open(path, Options{PageSize: pageSize})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			tb.Fatal(err)
		}
	}()
	const perTx = 20_000
	h, tr, lk := l.head, l.tree, newLinker(l.heads)
	recs := make([]record, 0, perTx)
	for done := 0; done < n; {
		recs = recs[:0]
		from := h
		for ; len(recs) < perTx && done < n; done++ {
			e := TypicalEntry(done)
			rec, err := lk.encode(&e, nil, h.seq+1, h.hash)
			if err != nil {
				tb.Fatal(err)
			}
			recs = append(recs, rec)
			h = head{seq: h.seq + 1, hash: rec.hash}
		}
		if _, err := appendTx(l.db, from, tr, func(uint64) heads { return lk.merged() }, recs, nil); err != nil {
			tb.Fatal(err)
		}
	}
	return h.hash
}
