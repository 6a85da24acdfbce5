package audit

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Export formats.
const (
	FormatJSONL = "jsonl" // one entry per line, encoding/json with the API's field names
	FormatCSV   = "csv"   // a header of the API's field names, one row per entry
)

// Export writes every entry with a time in [from, to) (a zero bound is
// open), in log order, to w in format. It reads scanChunk entries per
// read transaction and writes them out before reading more, so memory
// does not grow with the log. It returns the number of entries written.
func (l *Log) Export(ctx context.Context, w io.Writer, from, to time.Time, format string) (int, error) {
	if format != FormatJSONL && format != FormatCSV {
		return 0, fmt.Errorf("audit: export: format %q is not one of %s, %s", format, FormatJSONL, FormatCSV)
	}
	f := Filter{From: from, To: to}
	var lo, hi uint64
	if err := l.viewAtHead(ctx, nil, func(tx *bolt.Tx, size uint64, _ heads) error {
		var err error
		lo, hi, err = seqRange(tx, size, from, to)
		return err
	}); err != nil {
		return 0, fmt.Errorf("audit: export: %w", err)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var row func(*Entry) error
	switch format {
	case FormatJSONL:
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		row = func(e *Entry) error { return enc.Encode(e) }
	case FormatCSV:
		cw := csv.NewWriter(bw)
		if err := cw.Write(csvHeader()); err != nil {
			return 0, fmt.Errorf("audit: export: %w", err)
		}
		row = func(e *Entry) error {
			cw.Write(csvRow(e))
			cw.Flush()
			return cw.Error()
		}
	}
	n := 0
	for next := lo; next <= hi && hi > 0; {
		chunk, err := l.readChunk(ctx, next, false)
		if err != nil {
			return n, fmt.Errorf("audit: export: %w", err)
		}
		if len(chunk) == 0 {
			break
		}
		for _, e := range chunk {
			if e.Seq > hi {
				break
			}
			if !f.Matches(e) {
				continue
			}
			if err := row(e); err != nil {
				return n, fmt.Errorf("audit: export: %w", err)
			}
			n++
		}
		next = chunk[len(chunk)-1].Seq + 1
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}

// csvHeader is the JSON name of every Entry field, in struct order.
func csvHeader() []string {
	out := make([]string, 0, entryType.NumField())
	for i := range entryType.NumField() {
		name, _, _ := strings.Cut(entryType.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}

// csvRow renders e in csvHeader's order: lists as JSON arrays, times in
// RFC 3339 with nanoseconds, numbers in decimal.
func csvRow(e *Entry) []string {
	v := reflect.ValueOf(e).Elem()
	out := make([]string, 0, v.NumField())
	for i := range v.NumField() {
		f := v.Field(i)
		var s string
		switch x := f.Interface().(type) {
		case time.Time:
			s = x.UTC().Format(time.RFC3339Nano)
		case []string:
			if len(x) > 0 {
				b, _ := json.Marshal(x)
				s = string(b)
			}
		case bool:
			s = strconv.FormatBool(x)
		case Residual:
			s = string(x)
		default:
			switch f.Kind() {
			case reflect.String:
				s = f.String()
			case reflect.Int, reflect.Int64:
				s = strconv.FormatInt(f.Int(), 10)
			case reflect.Uint64:
				s = strconv.FormatUint(f.Uint(), 10)
			default:
				s = fmt.Sprint(x)
			}
		}
		out = append(out, s)
	}
	return out
}

// StatsGroupings are the values StatsQuery.By accepts.
var StatsGroupings = []string{"partner", "purpose", "decision", "protocol", "day"}

// StatsQuery asks for oversight figures over entries with a time in
// [From, To) (a zero bound is open), grouped by By.
type StatsQuery struct {
	From, To time.Time
	// By is "partner" (the requesting partner), "purpose", "decision"
	// (allow or deny for decisions, the kind otherwise), "protocol" or
	// "day" (UTC date).
	By string
	// Now and ReviewWithin decide which overrides are overdue: an entry
	// allowed on a safeguarding override, older than ReviewWithin at Now,
	// with no review entry for its review id anywhere in the log.
	Now          time.Time
	ReviewWithin time.Duration
}

// StatsRow is the figures of one group.
type StatsRow struct {
	Key            string `json:"key"`
	Entries        int    `json:"entries"`         // every entry in the group
	Shares         int    `json:"shares"`          // decisions allowed
	Denials        int    `json:"denials"`         // decisions denied
	Overrides      int    `json:"overrides"`       // requests that invoked a safeguarding override
	OverdueReviews int    `json:"overdue_reviews"` // overrides allowed and not reviewed in time
	Disclosures    int    `json:"disclosures"`     // records disclosed
	Consents       int    `json:"consents"`        // consent records
	Rejected       int    `json:"rejected"`
	AuthFailures   int    `json:"auth_failures"`
	Unavailable    int    `json:"unavailable"`
}

// Stats is the answer to a StatsQuery.
type Stats struct {
	By    string     `json:"by"`
	Size  uint64     `json:"size"` // the log's size when counted
	Rows  []StatsRow `json:"rows"` // sorted by key
	Total StatsRow   `json:"total"`
}

// Stats counts the entries of q's time range by group, reading them with
// the fast scanner in chunks of read transactions.
func (l *Log) Stats(ctx context.Context, q StatsQuery) (*Stats, error) {
	if !slices.Contains(StatsGroupings, q.By) {
		return nil, fmt.Errorf("audit: stats: grouping %q is not one of %s", q.By, strings.Join(StatsGroupings, ", "))
	}
	out := &Stats{By: q.By, Rows: []StatsRow{}}
	rows := map[string]*StatsRow{}
	type pendingReview struct {
		key, id string
		at      time.Time
	}
	var reviews []pendingReview
	var lo, hi uint64
	if err := l.viewAtHead(ctx, nil, func(tx *bolt.Tx, size uint64, _ heads) error {
		out.Size = size
		var err error
		lo, hi, err = seqRange(tx, size, q.From, q.To)
		return err
	}); err != nil {
		return nil, fmt.Errorf("audit: stats: %w", err)
	}
	const chunk = 4096
	for next := lo; next <= hi && hi > 0; next += chunk {
		err := l.view(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEntries).Cursor()
			end := min(hi, next+chunk-1)
			for k, v := c.Seek(seqKey(next)); k != nil; k, v = c.Next() {
				seq, _ := keySeq(k)
				if seq > end {
					break
				}
				sc, err := scanEntry(v)
				if err != nil {
					return tampered(seq, "stored value is not a valid entry: %v", err)
				}
				f := &sc.fields
				if (!q.From.IsZero() && f.at.Before(q.From)) || (!q.To.IsZero() && !f.at.Before(q.To)) {
					continue
				}
				key := statsKey(q.By, f)
				r := rows[key]
				if r == nil {
					r = &StatsRow{Key: key}
					rows[key] = r
				}
				countInto(r, f)
				if f.override && string(f.kind) == string(KindDecision) && string(f.decision) == "allow" {
					reviews = append(reviews, pendingReview{key: key, id: string(f.reviewID), at: f.at})
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("audit: stats: %w", err)
		}
	}
	// Overdue reviews: look each review id up in its posting list.
	for _, p := range reviews {
		if q.Now.Sub(p.at) <= q.ReviewWithin {
			continue
		}
		reviewed := false
		if p.id != "" {
			var err error
			reviewed, err = l.hasReview(ctx, p.id)
			if err != nil {
				return nil, fmt.Errorf("audit: stats: %w", err)
			}
		}
		if !reviewed {
			rows[p.key].OverdueReviews++
		}
	}
	for _, k := range slices.Sorted(maps.Keys(rows)) {
		r := *rows[k]
		out.Rows = append(out.Rows, r)
		addRow(&out.Total, &r)
	}
	out.Total.Key = "total"
	return out, nil
}

// hasReview reports whether a review entry for review id exists.
func (l *Log) hasReview(ctx context.Context, id string) (bool, error) {
	found := false
	err := l.view(ctx, func(tx *bolt.Tx) error {
		it := &listIter{c: tx.Bucket(bucketPostings).Cursor(), key: makeListKey(dimReview, id)}
		entries := tx.Bucket(bucketEntries)
		for s := uint64(1<<64 - 1); ; s-- {
			seq, err := it.floor(s)
			if err != nil || seq == 0 {
				return err
			}
			sc, err := scanEntry(entries.Get(seqKey(seq)))
			if err != nil {
				return tampered(seq, "stored value is not a valid entry: %v", err)
			}
			if string(sc.fields.kind) == string(KindReview) && string(sc.fields.reviewID) == id {
				found = true
				return nil
			}
			s = seq
		}
	})
	return found, err
}

func statsKey(by string, f *indexFields[[]byte]) string {
	var k string
	switch by {
	case "partner":
		k = string(f.requester)
	case "purpose":
		k = string(f.purpose)
	case "decision":
		k = string(f.kind)
		if k == string(KindDecision) && len(f.decision) > 0 {
			k = string(f.decision)
		}
	case "protocol":
		k = string(f.protocol)
	case "day":
		k = f.at.UTC().Format(time.DateOnly)
	}
	if k == "" {
		k = "-"
	}
	return k
}

func countInto(r *StatsRow, f *indexFields[[]byte]) {
	r.Entries++
	switch Kind(f.kind) {
	case KindDecision:
		switch string(f.decision) {
		case "allow":
			r.Shares++
		case "deny":
			r.Denials++
		}
	case KindDisclosure:
		r.Disclosures++
	case KindConsent:
		r.Consents++
	case KindRejected:
		r.Rejected++
	case KindAuthFailure:
		r.AuthFailures++
	case KindUnavailable:
		r.Unavailable++
	}
	if invokedOverride(f.override, len(f.overrideGround)) {
		r.Overrides++
	}
}

func addRow(t, r *StatsRow) {
	t.Entries += r.Entries
	t.Shares += r.Shares
	t.Denials += r.Denials
	t.Overrides += r.Overrides
	t.OverdueReviews += r.OverdueReviews
	t.Disclosures += r.Disclosures
	t.Consents += r.Consents
	t.Rejected += r.Rejected
	t.AuthFailures += r.AuthFailures
	t.Unavailable += r.Unavailable
}
