package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// queryLog is a log of n generated entries, appended by concurrent
// writers (so several commits, entries out of time order), closed and
// reopened so the chain heads come from a dump plus a replay. It returns
// the log and every entry, in log order.
func queryLog(t *testing.T, n int) (*audit.Log, []*audit.Entry) {
	t.Helper()
	audit.SetHeadsDumpEvery(t, 500)
	path := tempPath(t)
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const writers = 32
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for i := w; i < n; i += writers {
				e := genEntry(r, i)
				if _, _, err := l.Append(context.Background(), &e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, path, audit.Options{})
	var all []*audit.Entry
	if err := l.Scan(t.Context(), 1, func(e *audit.Entry) error {
		all = append(all, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("%d entries, want %d", len(all), n)
	}
	return l, all
}

// matches is the reference predicate, written from the Filter's
// documentation rather than shared with the implementation.
func matches(e *audit.Entry, f audit.Filter) bool {
	for _, c := range [][2]string{
		{f.Subject, e.Subject}, {f.Requester, e.Requester}, {f.Practitioner, e.Practitioner},
		{f.Provider, e.Provider}, {f.Purpose, e.Purpose}, {f.Protocol, e.Protocol},
	} {
		if c[0] != "" && c[0] != c[1] {
			return false
		}
	}
	switch f.Kind {
	case "":
	case "allow", "deny":
		if e.Kind != audit.KindDecision || e.Decision != f.Kind {
			return false
		}
	case "override":
		if !e.Override && e.OverrideGround == "" {
			return false
		}
	default:
		if string(e.Kind) != f.Kind {
			return false
		}
	}
	if !f.From.IsZero() && e.Time.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && !e.Time.Before(f.To) {
		return false
	}
	return true
}

// expect returns the seqs of all entries matching f, newest first.
func expect(all []*audit.Entry, f audit.Filter) []uint64 {
	var out []uint64
	for i := len(all) - 1; i >= 0; i-- {
		if matches(all[i], f) {
			out = append(out, all[i].Seq)
		}
	}
	return out
}

// queryAll pages through q's results with page size limit.
func queryAll(t *testing.T, l *audit.Log, f audit.Filter, limit int) []uint64 {
	t.Helper()
	var out []uint64
	var before uint64
	for pages := 0; ; pages++ {
		if pages > 10_000 {
			t.Fatal("paging does not end")
		}
		p, err := l.Query(t.Context(), audit.Query{Filter: f, Before: before, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) > limit {
			t.Fatalf("page of %d with limit %d", len(p.Entries), limit)
		}
		for _, e := range p.Entries {
			out = append(out, e.Seq)
		}
		if p.Next == 0 {
			return out
		}
		if len(p.Entries) != limit || p.Next != p.Entries[len(p.Entries)-1].Seq {
			t.Fatalf("next cursor %d after a page of %d", p.Next, len(p.Entries))
		}
		before = p.Next
	}
}

func randomFilter(r *rand.Rand, all []*audit.Entry) audit.Filter {
	var f audit.Filter
	pick := func() *audit.Entry { return all[r.IntN(len(all))] }
	for _, set := range []func(){
		func() { f.Subject = pick().Subject },
		func() { f.Requester = pick().Requester },
		func() { f.Practitioner = pick().Practitioner },
		func() { f.Provider = pick().Provider },
		func() { f.Purpose = pick().Purpose },
		func() { f.Protocol = pick().Protocol },
		func() { f.Kind = audit.FilterKinds[r.IntN(len(audit.FilterKinds))] },
		func() { f.From = pick().Time.Add(time.Duration(r.IntN(3)-1) * time.Second) },
		func() { f.To = pick().Time.Add(time.Duration(r.IntN(3)-1) * time.Second) },
	} {
		if r.IntN(4) == 0 {
			set()
		}
	}
	return f
}

func TestQueriesMatchFilters(t *testing.T) {
	l, all := queryLog(t, 3000)
	r := rand.New(rand.NewPCG(5, 6))
	nonEmpty := 0
	for i := range 200 {
		f := randomFilter(r, all)
		if i < 9 { // each single field alone, at least once
			f = audit.Filter{}
			e := all[r.IntN(len(all))]
			switch i {
			case 0:
				f.Subject = genChild(3)
			case 1:
				f.Requester = e.Requester
			case 2:
				f.Practitioner = "prac-2"
			case 3:
				f.Provider = "exley-police"
			case 4:
				f.Purpose = "early_help"
			case 5:
				f.Protocol = "isp-safeguarding"
			case 6:
				f.Kind = "override"
			case 7:
				f.From, f.To = e.Time.Add(-time.Hour), e.Time.Add(time.Hour)
			case 8:
				f.Kind = "deny"
			}
		}
		want := expect(all, f)
		got := queryAll(t, l, f, 5+r.IntN(100))
		if !slices.Equal(got, want) {
			t.Fatalf("filter %+v: got %d entries %v…, want %d %v…", f, len(got), head(got), len(want), head(want))
		}
		if len(want) > 0 {
			nonEmpty++
		}
	}
	t.Logf("200 filters, %d with results", nonEmpty)
	if nonEmpty < 80 {
		t.Fatalf("only %d filters had results: the generator is too sparse to test much", nonEmpty)
	}
}

func head(s []uint64) []uint64 { return s[:min(len(s), 8)] }

// TestSubjectQueryIsolation: a query for one child returns exactly that
// child's entries, and never another child's.
func TestSubjectQueryIsolation(t *testing.T) {
	l, all := queryLog(t, 2000)
	total := 0
	for c := range 13 { // child 12 has no entries
		f := audit.Filter{Subject: genChild(c)}
		p, err := l.Query(t.Context(), audit.Query{Filter: f, Limit: audit.MaxPage})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Entries {
			if e.Subject != genChild(c) {
				t.Fatalf("query for child %d returned entry %d about %s", c, e.Seq, e.Subject)
			}
		}
		want := expect(all, f)
		var got []uint64
		for _, e := range p.Entries {
			got = append(got, e.Seq)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("child %d: %d entries, want %d", c, len(got), len(want))
		}
		total += len(got)
		if c == 12 && len(got) != 0 {
			t.Fatal("a child with no entries has results")
		}
	}
	if total == 0 {
		t.Fatal("no subject entries at all")
	}
	// A pseudonym that differs in one character finds nothing.
	other := []byte(genChild(0))
	other[10] ^= 1
	if p, err := l.Query(t.Context(), audit.Query{Filter: audit.Filter{Subject: string(other)}}); err != nil || len(p.Entries) != 0 {
		t.Fatalf("a near-miss pseudonym: %v %v", p, err)
	}
}

func TestAccessReport(t *testing.T) {
	l, all := queryLog(t, 1500)
	k, set := gatewayKeys(t)
	c := newCheckpointer(t, l, k, audit.CheckpointOptions{})
	cp, err := c.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, withhold := range []bool{false, true} {
		rep, err := l.AccessReport(t.Context(), genChild(4), cp, withhold)
		if err != nil {
			t.Fatal(err)
		}
		want := expect(all, audit.Filter{Subject: genChild(4)})
		if len(rep.Entries) != len(want) || len(want) == 0 {
			t.Fatalf("report has %d entries, want %d", len(rep.Entries), len(want))
		}
		if !rep.Chain.Linked || rep.Chain.Newest != want[0] {
			t.Fatalf("chain statement %+v", rep.Chain)
		}
		pc, err := audit.ParseCheckpoint([]byte(rep.Checkpoint), set)
		if err != nil || pc.Size != rep.Size || pc.Root != rep.Root {
			t.Fatalf("report checkpoint: %v %v", pc, err)
		}
		for i, re := range rep.Entries {
			if re.Entry.Seq != want[i] || re.Entry.Subject != genChild(4) {
				t.Fatalf("entry %d is %d", i, re.Entry.Seq)
			}
			if withhold {
				if re.Entry.Practitioner != "" || re.Stored != nil {
					t.Fatalf("entry %d: practitioner %q or stored bytes left in the family's copy", re.Entry.Seq, re.Entry.Practitioner)
				}
				if re.Entry.Requester != all[re.Entry.Seq-1].Requester || re.Entry.Purpose != all[re.Entry.Seq-1].Purpose {
					t.Fatalf("entry %d: recipient or purpose removed", re.Entry.Seq)
				}
			}
			if err := audit.VerifyInclusion(re.Proof, re.Stored, rep.Root); err != nil {
				t.Fatalf("entry %d: %v", re.Entry.Seq, err)
			}
		}
	}
}

func TestStats(t *testing.T) {
	l, all := queryLog(t, 1200)
	from, to := all[100].Time, all[1000].Time
	now := genBase.Add(30 * 24 * time.Hour)
	reviewed := map[string]bool{}
	for _, e := range all {
		if e.Kind == audit.KindReview {
			reviewed[e.ReviewID] = true
		}
	}
	for _, by := range audit.StatsGroupings {
		st, err := l.Stats(t.Context(), audit.StatsQuery{From: from, To: to, By: by, Now: now, ReviewWithin: 5 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]*audit.StatsRow{}
		var total audit.StatsRow
		for _, e := range all {
			if e.Time.Before(from) || !e.Time.Before(to) {
				continue
			}
			var k string
			switch by {
			case "partner":
				k = e.Requester
			case "purpose":
				k = e.Purpose
			case "decision":
				k = string(e.Kind)
				if e.Kind == audit.KindDecision {
					k = e.Decision
				}
			case "protocol":
				k = e.Protocol
			case "day":
				k = e.Time.UTC().Format(time.DateOnly)
			}
			if k == "" {
				k = "-"
			}
			r := want[k]
			if r == nil {
				r = &audit.StatsRow{Key: k}
				want[k] = r
			}
			for _, row := range []*audit.StatsRow{r, &total} {
				row.Entries++
				switch {
				case e.Kind == audit.KindDecision && e.Decision == "allow":
					row.Shares++
				case e.Kind == audit.KindDecision && e.Decision == "deny":
					row.Denials++
				case e.Kind == audit.KindDisclosure:
					row.Disclosures++
				case e.Kind == audit.KindConsent:
					row.Consents++
				case e.Kind == audit.KindRejected:
					row.Rejected++
				case e.Kind == audit.KindAuthFailure:
					row.AuthFailures++
				case e.Kind == audit.KindUnavailable:
					row.Unavailable++
				}
				if e.Override || e.OverrideGround != "" {
					row.Overrides++
				}
				if e.Override && e.Decision == "allow" && !reviewed[e.ReviewID] && now.Sub(e.Time) > 5*24*time.Hour {
					row.OverdueReviews++
				}
			}
		}
		if len(st.Rows) != len(want) {
			t.Fatalf("by %s: %d rows, want %d", by, len(st.Rows), len(want))
		}
		for _, row := range st.Rows {
			if w := want[row.Key]; w == nil || *w != row {
				t.Fatalf("by %s: row %+v, want %+v", by, row, w)
			}
		}
		total.Key = "total"
		if st.Total != total || total.OverdueReviews == 0 || total.Shares == 0 {
			t.Fatalf("by %s: total %+v, want %+v (with some overdue reviews and shares)", by, st.Total, total)
		}
	}
}

func TestExport(t *testing.T) {
	l, all := queryLog(t, 800)
	from, to := all[200].Time, all[600].Time
	var want []*audit.Entry
	for _, e := range all {
		if !e.Time.Before(from) && e.Time.Before(to) {
			want = append(want, e)
		}
	}
	var buf bytes.Buffer
	n, err := l.Export(t.Context(), &buf, from, to, audit.FormatJSONL)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("exported %d, want %d", n, len(want))
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	i := 0
	for ; sc.Scan(); i++ {
		var e audit.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Seq != want[i].Seq || e.Hash != want[i].Hash || e.RequestID != want[i].RequestID {
			t.Fatalf("line %d: entry %d, want %d", i, e.Seq, want[i].Seq)
		}
	}
	if i != len(want) {
		t.Fatalf("%d lines, want %d", i, len(want))
	}

	buf.Reset()
	if _, err := l.Export(t.Context(), &buf, time.Time{}, time.Time{}, audit.FormatCSV); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(all)+1 || rows[0][0] != "seq" || rows[1][0] != "1" || rows[len(rows)-1][0] != fmt.Sprint(len(all)) {
		t.Fatalf("csv: %d rows, header %v", len(rows), rows[0])
	}
	col := slices.Index(rows[0], "hash")
	if col < 0 || rows[5][col] != all[4].Hash {
		t.Fatalf("csv hash column")
	}
	if _, err := l.Export(t.Context(), &buf, time.Time{}, time.Time{}, "xml"); err == nil {
		t.Fatal("format xml accepted")
	}
}
