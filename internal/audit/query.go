package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Filter selects entries. Every field set must match (AND); empty fields
// match everything. Matching is exact on the entry's own fields.
type Filter struct {
	// Subject is the child's pseudonym (never the NHS number: the caller
	// pseudonymises it with the gateway's key).
	Subject      string
	Requester    string // the requesting partner
	Practitioner string // the requesting practitioner (token subject)
	Provider     string // the partner holding the record
	Purpose      string
	Protocol     string
	// Kind is an entry kind (decision, rejected, auth_failure,
	// unavailable, access, consent, review, ...) or one of the outcome
	// names "allow" and "deny" (decisions with that outcome) and
	// "override" (every request that invoked a safeguarding override,
	// allowed or not).
	Kind string
	// From and To bound the entry's time: From <= Time < To. A zero
	// bound is open.
	From, To time.Time
}

// FilterKinds are the values Filter.Kind accepts.
var FilterKinds = []string{
	"allow", "deny", "override",
	string(KindDecision), string(KindRejected), string(KindAuthFailure), string(KindUnavailable),
	string(KindAccess), string(KindConsent), string(KindReview),
	string(KindDisclosure), string(KindLead), string(KindLookup), string(KindInvolvement), string(KindErasure),
}

// Query is a Filter with a page position.
type Query struct {
	Filter
	// Before is the cursor: only entries with seq < Before; 0 means from
	// the newest entry.
	Before uint64
	// Limit is the page size: 0 means 100; at most MaxPage.
	Limit int
}

// MaxPage is the largest page Query returns.
const MaxPage = 1000

// Page is one page of results, newest first.
type Page struct {
	Entries []*Entry
	// Next is the cursor for the next page (pass it as Query.Before); 0
	// means there are no more entries.
	Next uint64
	// Size is the log's size when the page was read: the entries are all
	// at or below it.
	Size uint64
}

// Matches reports whether e satisfies f.
func (f *Filter) Matches(e *Entry) bool {
	eq := func(want, got string) bool { return want == "" || want == got }
	if !eq(f.Subject, e.Subject) || !eq(f.Requester, e.Requester) || !eq(f.Practitioner, e.Practitioner) ||
		!eq(f.Provider, e.Provider) || !eq(f.Purpose, e.Purpose) || !eq(f.Protocol, e.Protocol) {
		return false
	}
	switch f.Kind {
	case "":
	case "allow", "deny":
		if e.Kind != KindDecision || e.Decision != f.Kind {
			return false
		}
	case "override":
		if !invokedOverride(e.Override, len(e.OverrideGround)) {
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

// chainKeys returns the chains that hold every entry f can match.
func (f *Filter) chainKeys() []string {
	var out []string
	if f.Subject != "" {
		out = append(out, chainKey(chainSubject, f.Subject))
	}
	if f.Practitioner != "" {
		out = append(out, chainKey(chainPractitioner, f.Practitioner))
	}
	return out
}

// lists returns the posting lists that hold every entry f can match.
func (f *Filter) lists() []listKey {
	var out []listKey
	add := func(dim byte, v string) {
		if v != "" {
			out = append(out, makeListKey(dim, v))
		}
	}
	// The most selective first: the leapfrog starts with it.
	add(dimProtocol, f.Protocol)
	add(dimRequester, f.Requester)
	add(dimProvider, f.Provider)
	add(dimPurpose, f.Purpose)
	switch f.Kind {
	case "":
	case "allow", "deny":
		add(dimDecision, f.Kind)
	case "override":
		out = append(out, makeListKey(dimOverride, ""))
	default:
		add(dimKind, f.Kind)
	}
	return out
}

// Query returns one page of the entries matching q, newest (highest seq)
// first, read in one read transaction. With at least one field filter it
// walks the posting lists of the filters (intersecting them by leapfrog
// seeks) and reads only candidate entries: a page of k entries costs
// O(k log n) reads when the filters' lists agree, plus one seek per
// disagreement. The time bounds narrow the seqs walked through the time
// blocks. Entries are checked against the whole filter before they are
// returned, so results are exact.
func (l *Log) Query(ctx context.Context, q Query) (*Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxPage)
	page := &Page{}
	err := l.viewAtHead(ctx, q.Filter.chainKeys(), func(tx *bolt.Tx, size uint64, hd heads) error {
		page.Size = size
		var n int
		return queryTx(ctx, tx, size, hd, q.Filter, q.Before, func(e *Entry) (bool, error) {
			if n == limit {
				page.Next = page.Entries[n-1].Seq
				return false, nil
			}
			page.Entries = append(page.Entries, e)
			n++
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("audit: query: %w", err)
	}
	return page, nil
}

// viewAtHead runs fn in a read transaction with the log's size and the
// chain heads of keys as of one commit. The heads and the size are read
// together, before the transaction begins: the committer publishes them
// only after its commit, so the transaction sees every entry up to size
// (and perhaps later ones, which fn ignores). No lock is held while the
// transaction begins, so a reader waiting on bbolt never holds up appends.
func (l *Log) viewAtHead(ctx context.Context, keys []string, fn func(tx *bolt.Tx, size uint64, hd heads) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.headMu.Lock()
	size := l.head.seq
	hd := make(heads, len(keys))
	for _, k := range keys {
		hd[k] = l.heads[k]
	}
	l.headMu.Unlock()
	// With a journal, bring bbolt up to at least size (apply.go): what
	// is queued now includes every entry up to it.
	if err := l.settle(); err != nil {
		return err
	}
	tx, err := l.db.Begin(false)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx, size, hd)
}

// seqIter is a list of seqs walked downwards.
type seqIter interface {
	floor(s uint64) (uint64, error)
}

// queryTx calls fn with each entry matching f below seq before (0: all)
// among the first n, newest first, until fn returns false or an error.
// hd holds the heads of f's chains.
func queryTx(ctx context.Context, tx *bolt.Tx, n uint64, hd heads, f Filter, before uint64, fn func(*Entry) (bool, error)) error {
	lo, hi, err := seqRange(tx, n, f.From, f.To)
	if err != nil {
		return err
	}
	if before != 0 {
		if before <= 1 {
			return nil
		}
		hi = min(hi, before-1)
	}
	entries := tx.Bucket(bucketEntries)
	var steps int
	visit := func(seq uint64) (bool, error) {
		if steps++; steps&0x3ff == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
		v := entries.Get(seqKey(seq))
		if v == nil {
			return false, tampered(seq, "missing (listed by the index)")
		}
		e, err := decodeEntry(seq, v)
		if err != nil {
			return false, err
		}
		if !f.Matches(e) {
			return true, nil
		}
		return fn(e)
	}

	var its []seqIter
	for _, c := range []struct {
		dim   byte
		value string
	}{{chainSubject, f.Subject}, {chainPractitioner, f.Practitioner}} {
		if c.value == "" {
			continue
		}
		it := &chainIter{entries: entries, dim: c.dim, cur: hd[chainKey(c.dim, c.value)]}
		// Resume from the cursor's entry, which matched, if it is in
		// this chain: its link is the next candidate.
		if before > 1 && before-1 < it.cur {
			if v := entries.Get(seqKey(before)); v != nil {
				if sc, err := scanEntry(v); err == nil {
					switch {
					case c.dim == chainSubject && string(sc.fields.subject) == c.value:
						it.cur = sc.prevSubject
					case c.dim == chainPractitioner && string(sc.fields.practitioner) == c.value:
						it.cur = sc.prevPractitioner
					}
				}
			}
		}
		its = append(its, it)
	}
	post := tx.Bucket(bucketPostings)
	for _, lk := range f.lists() {
		its = append(its, &listIter{c: post.Cursor(), key: lk})
	}
	if len(its) == 0 {
		for seq := hi; seq >= lo && seq > 0; seq-- {
			if more, err := visit(seq); err != nil || !more {
				return err
			}
		}
		return nil
	}
	cand := hi
	for cand >= lo && cand > 0 {
		// Leapfrog: lower cand until every list holds it.
		for agreed, i := 0, 0; agreed < len(its); i = (i + 1) % len(its) {
			s, err := its[i].floor(cand)
			if err != nil {
				return err
			}
			if s == 0 || s < lo {
				return nil
			}
			if s < cand {
				cand, agreed = s, 1
			} else {
				agreed++
			}
			if steps++; steps&0x3ff == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		if more, err := visit(cand); err != nil || !more {
			return err
		}
		cand--
	}
	return nil
}

// Select calls fn with every entry matching f, newest first, reading
// in pages of MaxPage entries (one read transaction each), until fn
// returns false or an error. Entries appended meanwhile are not visited.
func (l *Log) Select(ctx context.Context, f Filter, fn func(*Entry) (bool, error)) error {
	var before uint64
	for {
		page, err := l.Query(ctx, Query{Filter: f, Before: before, Limit: MaxPage})
		if err != nil {
			return err
		}
		if before == 0 && page.Size > 0 {
			before = page.Size + 1 // pin later pages below the first page's size
		}
		for _, e := range page.Entries {
			if more, err := fn(e); err != nil || !more {
				return err
			}
		}
		if page.Next == 0 {
			return nil
		}
		before = page.Next
	}
}
