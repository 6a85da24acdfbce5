package audit

import (
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Hooks exposes the committer's test hooks to the external tests.
type Hooks struct {
	Enqueued     func()            // called after an append is queued
	BeforeCommit func(n int) error // called inside the write transaction of n entries; an error aborts it
}

// OpenWithHooks is Open with test hooks installed.
func OpenWithHooks(path string, opts Options, h Hooks) (*Log, error) {
	return open(path, opts, hooks{enqueued: h.Enqueued, beforeCommit: h.BeforeCommit})
}

// SetHeadsDumpEvery changes the spacing of the chain heads dumps for the
// rest of the test and restores it after.
func SetHeadsDumpEvery(t testing.TB, n uint64) {
	old := headsDumpEvery
	headsDumpEvery = n
	t.Cleanup(func() { headsDumpEvery = old })
}

// Commits returns the number of append transactions committed so far.
func (l *Log) Commits() uint64 { return l.commits.Load() }

// DB returns the underlying bbolt handle.
func (l *Log) DB() *bolt.DB { return l.db }

// TypicalChildren is the number of distinct children TypicalEntry
// cycles through: the children known to several agencies of one Trust
// over the life of a log (docs/performance.md).
const TypicalChildren = 20_000

// TypicalEntry returns a realistic synthetic decision entry; i varies the
// request-specific fields. No real person's data: NHS numbers never appear
// (Subject is a pseudonym), names are invented.
func TypicalEntry(i int) Entry {
	return Entry{
		Time:              time.Date(2026, 3, 14, 9, 26, 53, 589_793_000, time.UTC).Add(time.Duration(i) * time.Millisecond),
		RequestID:         fmt.Sprintf("req-01HZX3K7Q9%014d", i),
		Kind:              KindDecision,
		Method:            "POST",
		Path:              "/v1/share/decision",
		Status:            200,
		Requester:         "agency:nhs-trust-northfield",
		Practitioner:      fmt.Sprintf("practitioner:hv-%05d", i%5000),
		Role:              "health_visitor",
		TokenID:           fmt.Sprintf("jti-7c1e4b2a-%012d", i),
		Provider:          "agency:la-childrens-social-care",
		Purpose:           "safeguarding",
		Subject:           fmt.Sprintf("%064x", uint64(i%TypicalChildren+1)*0x9e3779b97f4a7c15),
		Categories:        []string{"child_protection_plan", "looked_after_status", "allocated_social_worker"},
		Decision:          "allow",
		AllowedCategories: []string{"child_protection_plan", "allocated_social_worker"},
		Reasons:           []string{"protocol isp-2026-north in force", "purpose safeguarding permitted for health_visitor", "looked_after_status not necessary for purpose"},
		Protocol:          "isp-2026-north",
		ProtocolVersion:   "3",
		Rule:              "health_safeguarding_cp_plan",
		LawfulBasis:       "UK GDPR 6(1)(e); DPA 2018 Sch 1 Pt 2 para 18",
		PolicyRevision:    "rev-2026-03-01-4f9c2d1",
	}
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
			rec, err := lk.encode(TypicalEntry(done), nil, h.seq+1, h.hash)
			if err != nil {
				tb.Fatal(err)
			}
			recs = append(recs, rec)
			h = head{seq: h.seq + 1, hash: rec.hash}
		}
		if err := l.db.Update(func(tx *bolt.Tx) error {
			_, err := appendRecords(tx, from, tr, lk, recs)
			return err
		}); err != nil {
			tb.Fatal(err)
		}
	}
	return h.hash
}
