package whatif

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/childrens-trust/trustgate/internal/decision"

	"github.com/childrens-trust/trustgate/internal/policy"
)

// Record is one recorded decision: its audit sequence number, the
// minimised input it was decided on (no NHS number, no payload) and what
// was decided.
type Record struct {
	Seq uint64
	// In is the input, or, when In is nil, Input is (a policy.Input as
	// JSON). Both nil: the entry predates input recording.
	In    *policy.Input
	Input json.RawMessage
	Was   Outcome
}

// Outcome is what a decision came to, as far as the what-if compares
// them: allowed or not, which categories, under which protocol rule.
type Outcome struct {
	Allow      bool     `json:"allow"`
	Categories []string `json:"categories,omitempty"` // sorted
	Protocol   string   `json:"protocol,omitempty"`
	Version    string   `json:"version,omitempty"`
	Rule       string   `json:"rule,omitempty"`
	// Error: the evaluation failed (the gateway would answer 503).
	Error bool `json:"error,omitempty"`
}

// OutcomeOf is the outcome of a decision.
func OutcomeOf(d *policy.Decision) Outcome {
	o := Outcome{Allow: d.Allow}
	if d.Allow {
		o.Categories = sortedCopy(d.Categories)
		if d.Protocol != nil {
			o.Protocol, o.Version, o.Rule = d.Protocol.ID, d.Protocol.Version, d.Protocol.Rule
		}
	}
	return o
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// The kinds of change.
const (
	AllowToDeny = "allow_to_deny" // allowed then, denied now
	DenyToAllow = "deny_to_allow" // denied then, allowed now
	Widened     = "widened"       // allowed both times, more categories now
	Narrowed    = "narrowed"      // allowed both times, fewer categories now
	Recomposed  = "recomposed"    // allowed both times, some categories gained and some lost
	RuleChanged = "rule_changed"  // allowed both times, the same categories, under another protocol or rule (not a new version of the same)
	Fails       = "fails"         // the proposed policy cannot evaluate it (503, nothing disclosed)
)

// Change classifies was → now; "" when nothing that matters changed. The
// rule is the protocol rule the change is about: the rule that allows now
// (or, for allow → deny and failures, the rule that allowed then).
func Change(was, now Outcome) (kind, rule string) {
	ruleOf := func(o Outcome) string {
		if !o.Allow {
			return "(none)"
		}
		return o.Protocol + " v" + o.Version + " " + o.Rule
	}
	switch {
	case now.Error:
		return Fails, ruleOf(was)
	case was.Allow && !now.Allow:
		return AllowToDeny, ruleOf(was)
	case !was.Allow && now.Allow:
		return DenyToAllow, ruleOf(now)
	case !was.Allow:
		return "", ""
	}
	gained, lost := false, false
	for _, c := range now.Categories {
		if !slices.Contains(was.Categories, c) {
			gained = true
		}
	}
	for _, c := range was.Categories {
		if !slices.Contains(now.Categories, c) {
			lost = true
		}
	}
	switch {
	case gained && lost:
		return Recomposed, ruleOf(now)
	case gained:
		return Widened, ruleOf(now)
	case lost:
		return Narrowed, ruleOf(now)
	case was.Protocol != now.Protocol || was.Rule != now.Rule:
		// A new version of the same protocol's rule is the same rule.
		return RuleChanged, ruleOf(was) + " → " + ruleOf(now)
	}
	return "", ""
}

// Source yields the recorded decisions of [from, to), in any order. It
// returns fn's error, or its own.
type Source func(ctx context.Context, from, to time.Time, fn func(Record) error) error

// Options tune Replay.
type Options struct {
	From, To time.Time
	// Examples is how many audit sequence numbers each group lists (the
	// smallest); default 5.
	Examples int
	// Workers evaluate in parallel; default GOMAXPROCS.
	Workers int
	// NoMemo evaluates every decision (the brute force the memo is
	// checked against).
	NoMemo bool
	// MemoEntries bounds each of the two memos (default 200,000
	// outcomes).
	MemoEntries int
}

// Group is the decisions that change the same way, under the same rule,
// for the same purpose.
type Group struct {
	Change   string   `json:"change"`
	Rule     string   `json:"rule"`
	Purpose  string   `json:"purpose"`
	Count    int      `json:"count"`
	Examples []uint64 `json:"examples"` // audit sequence numbers, smallest first
}

// Report is the outcome of a replay.
type Report struct {
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Proposed string    `json:"proposed_revision"`
	// Decisions replayed; Unrecorded decision entries had no input (they
	// predate input recording) and were not replayed.
	Decisions  int            `json:"decisions"`
	Unrecorded int            `json:"unrecorded"`
	Changed    int            `json:"changed"`
	Unchanged  int            `json:"unchanged"`
	ByChange   map[string]int `json:"by_change"`
	Groups     []Group        `json:"groups"`
	// Evaluations is how many times the policy ran (memo misses, plus the
	// memo's spot checks).
	Evaluations int64         `json:"evaluations"`
	Method      string        `json:"method"`
	Duration    time.Duration `json:"duration_ns"`
}

// errMemoUnsound: a spot check found a memoised outcome that differs from
// a direct evaluation (the replay then runs again without the memo).
var errMemoUnsound = errors.New("memoised outcome differs from a direct evaluation")

// Replay re-evaluates every recorded decision of [o.From, o.To) from src
// against the proposed revision rev and reports the ones whose outcome
// would change, grouped by change, protocol rule and purpose.
//
// Memory is bounded: records stream from src in batches, the memo is
// capped, and only the groups (few) and their examples are kept. Unless
// o.NoMemo, outcomes are memoised when the policy allows it (see analyze):
// on the input without its time and without the fields the policy does
// not read, plus the time's place among the policy's date breakpoints and
// the input's consent dates. One memo hit in 1024 is checked against a
// direct evaluation; a difference makes the replay run again without the
// memo (Report.Method says so).
func Replay(ctx context.Context, rev *policy.Revision, src policy.Sources, source Source, o Options) (*Report, error) {
	start := time.Now()
	a := decision.Analyze(src)
	if o.NoMemo {
		a.Memo, a.Reason = false, "the memo was turned off"
	}
	rep, err := replay(ctx, rev, a, source, o)
	if errors.Is(err, errMemoUnsound) {
		a.Memo, a.Reason = false, err.Error()
		rep, err = replay(ctx, rev, a, source, o)
	}
	if err != nil {
		return nil, err
	}
	rep.Method = a.String()
	rep.Duration = time.Since(start)
	return rep, nil
}

const batchSize = 256

func replay(ctx context.Context, rev *policy.Revision, a decision.Analysis, source Source, o Options) (*Report, error) {
	if o.Examples <= 0 {
		o.Examples = 5
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MemoEntries <= 0 {
		o.MemoEntries = 200_000
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	r := &replayer{rev: rev, a: a, breaks: decision.Breakpoints(rev, &a), examples: o.Examples}
	if a.Memo {
		r.memo = decision.NewCache[string, Outcome](o.MemoEntries)
		r.raw = decision.NewCache[[2]uint64, Outcome](o.MemoEntries)
		r.seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	}
	batches := make(chan []Record, 2*o.Workers)
	aggs := make([]*aggregate, o.Workers)
	var wg sync.WaitGroup
	for i := range aggs {
		aggs[i] = newAggregate()
		agg := aggs[i]
		wg.Go(func() {
			for b := range batches {
				if ctx.Err() != nil {
					continue // drain
				}
				for _, rec := range b {
					if err := r.one(ctx, rec, agg); err != nil {
						cancel(err)
						break
					}
				}
			}
		})
	}
	// Readers: the period is split among as many readers as workers, so
	// that reading and decoding the log runs on every core too.
	ranges := split(o.From, o.To, o.Workers)
	errs := make([]error, len(ranges))
	var rg sync.WaitGroup
	for i, span := range ranges {
		rg.Go(func() {
			batch := make([]Record, 0, batchSize)
			errs[i] = source(ctx, span[0], span[1], func(rec Record) error {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				batch = append(batch, rec)
				if len(batch) == batchSize {
					select {
					case batches <- batch:
					case <-ctx.Done():
						return context.Cause(ctx)
					}
					batch = make([]Record, 0, batchSize)
				}
				return nil
			})
			if errs[i] == nil && len(batch) > 0 {
				select {
				case batches <- batch:
				case <-ctx.Done():
				}
			}
		})
	}
	rg.Wait()
	err := errors.Join(errs...)
	close(batches)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return nil, cause
	}
	if err != nil {
		return nil, fmt.Errorf("what-if: read the recorded decisions: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	total := newAggregate()
	for _, g := range aggs {
		total.merge(g, o.Examples)
	}
	rep := &Report{From: o.From, To: o.To, Proposed: rev.Hash(), ByChange: map[string]int{}, Groups: []Group{},
		Decisions: total.decisions, Unrecorded: total.unrecorded, Changed: total.changed,
		Unchanged: total.decisions - total.changed, Evaluations: r.evals.Load()}
	for k, g := range total.groups {
		g.Change, g.Rule, g.Purpose = k.change, k.rule, k.purpose
		rep.ByChange[k.change] += g.Count
		rep.Groups = append(rep.Groups, *g)
	}
	slices.SortFunc(rep.Groups, func(x, y Group) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Change, y.Change), cmp.Compare(x.Rule, y.Rule), cmp.Compare(x.Purpose, y.Purpose))
	})
	return rep, nil
}

// split divides [from, to) into n contiguous ranges (one when either
// bound is open).
func split(from, to time.Time, n int) [][2]time.Time {
	if from.IsZero() || to.IsZero() || !from.Before(to) || n <= 1 {
		return [][2]time.Time{{from, to}}
	}
	step := to.Sub(from) / time.Duration(n)
	out := make([][2]time.Time, 0, n)
	for i := range n {
		lo, hi := from.Add(time.Duration(i)*step), from.Add(time.Duration(i+1)*step)
		if i == n-1 {
			hi = to
		}
		out = append(out, [2]time.Time{lo, hi})
	}
	return out
}

type replayer struct {
	rev      *policy.Revision
	a        decision.Analysis
	breaks   []int64 // sorted, unique
	memo     *decision.Cache[string, Outcome]
	raw      *decision.Cache[[2]uint64, Outcome] // outcomes by the recorded bytes (rawKey)
	seeds    [2]maphash.Seed
	examples int
	evals    atomic.Int64
}

// spotCheck: one memo hit in spotCheck (by audit sequence number) is also
// evaluated directly.
const spotCheck = 1024

func (r *replayer) one(ctx context.Context, rec Record, agg *aggregate) error {
	if len(rec.Input) == 0 && rec.In == nil {
		agg.unrecorded++
		return nil
	}
	agg.decisions++
	var now Outcome
	in := rec.In
	decode := func() error {
		if in == nil {
			in = new(policy.Input)
			if err := json.Unmarshal(rec.Input, in); err != nil {
				return fmt.Errorf("what-if: audit seq %d: the recorded input does not decode: %w", rec.Seq, err)
			}
		}
		return nil
	}
	hit := false
	if r.memo == nil {
		if err := decode(); err != nil {
			return err
		}
		now = r.eval(ctx, in)
	} else {
		// The raw memo keys the recorded bytes; an input given decoded
		// goes to the memo directly.
		var rk [2]uint64
		var purpose string
		rawOK := false
		if in == nil {
			rk, purpose, rawOK = r.rawKey(rec.Input)
		}
		if rawOK {
			now, hit = r.raw.Get(rk)
		}
		if !hit {
			if err := decode(); err != nil {
				return err
			}
			key := r.key(in)
			if now, hit = r.memo.Get(key); !hit {
				now = r.eval(ctx, in)
				r.memo.Put(key, now)
			}
			if rawOK {
				r.raw.Put(rk, now)
			}
		}
		if hit && rec.Seq%spotCheck == 0 {
			if err := decode(); err != nil {
				return err
			}
			if direct := r.eval(ctx, in); !sameOutcome(direct, now) {
				return fmt.Errorf("%w (audit seq %d)", errMemoUnsound, rec.Seq)
			}
		}
		if in == nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			return r.tally(agg, rec, now, purpose)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.tally(agg, rec, now, in.Purpose)
}

func (r *replayer) tally(agg *aggregate, rec Record, now Outcome, purpose string) error {
	kind, rule := Change(rec.Was, now)
	if kind == "" {
		return nil
	}
	agg.changed++
	agg.add(groupKey{change: kind, rule: rule, purpose: purpose}, rec.Seq, r.examples)
	return nil
}

// rawKey is a 128-bit key of a recorded input's exact bytes, as
// json.Marshal wrote them, without the time and (when the policy does not
// read it) the practitioner, with the time's place among the revision's
// breakpoints and among every other number in the input (the consents'
// instants). Equal raw keys mean equal memo keys (key), so the outcome
// can be found without decoding the input. It also returns the purpose.
// ok is false when the bytes are not in json.Marshal's layout.
func (r *replayer) rawKey(raw []byte) (k [2]uint64, purpose string, ok bool) {
	const timeKey = `{"time_ns":`
	if !bytes.HasPrefix(raw, []byte(timeKey)) {
		return k, "", false
	}
	i := len(timeKey)
	j := i
	if j < len(raw) && raw[j] == '-' {
		j++
	}
	for j < len(raw) && raw[j] >= '0' && raw[j] <= '9' {
		j++
	}
	t, err := strconv.ParseInt(string(raw[i:j]), 10, 64)
	if err != nil || j >= len(raw) || raw[j] != ',' {
		return k, "", false
	}
	rest := raw[j:]
	var cut [2]int // the practitioner's value, to leave out
	if !r.a.Practitioner {
		const pk = `"practitioner":"`
		p := bytes.Index(rest, []byte(pk))
		if p < 0 {
			return k, "", false
		}
		end := stringEnd(rest, p+len(pk))
		if end < 0 {
			return k, "", false
		}
		cut = [2]int{p + len(pk), end}
	}
	const uk = `"purpose":"`
	if p := bytes.Index(rest, []byte(uk)); p >= 0 {
		if end := stringEnd(rest, p+len(uk)); end > 0 && !bytes.ContainsRune(rest[p+len(uk):end], '\\') {
			purpose = string(rest[p+len(uk) : end])
		} else {
			return k, "", false
		}
	} else {
		return k, "", false
	}
	nums, ok := numbers(rest)
	if !ok {
		return k, "", false
	}
	slices.Sort(nums)
	clo, ceq := decision.Place(slices.Compact(nums), t)
	rlo, req := decision.Place(r.breaks, t)
	var suffix [32]byte
	binary.LittleEndian.PutUint64(suffix[0:], uint64(rlo))
	binary.LittleEndian.PutUint64(suffix[8:], uint64(req))
	binary.LittleEndian.PutUint64(suffix[16:], uint64(clo))
	binary.LittleEndian.PutUint64(suffix[24:], uint64(ceq))
	for n, seed := range r.seeds {
		var h maphash.Hash
		h.SetSeed(seed)
		h.Write(rest[:cut[0]])
		h.Write(rest[cut[1]:])
		h.Write(suffix[:])
		k[n] = h.Sum64()
	}
	return k, purpose, true
}

// stringEnd returns the index of the quote that ends the JSON string whose
// contents start at i, or -1.
func stringEnd(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// numbers returns every number outside strings in b.
func numbers(b []byte) ([]int64, bool) {
	var out []int64
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			end := stringEnd(b, i+1)
			if end < 0 {
				return nil, false
			}
			i = end
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			v, err := strconv.ParseInt(string(b[i:j]), 10, 64)
			if err != nil {
				return nil, false
			}
			out = append(out, v)
			i = j - 1
		}
	}
	return out, true
}

func (r *replayer) eval(ctx context.Context, in *policy.Input) Outcome {
	r.evals.Add(1)
	d, err := r.rev.Decide(ctx, in)
	if err != nil {
		return Outcome{Error: true}
	}
	return OutcomeOf(d)
}

func sameOutcome(a, b Outcome) bool {
	return a.Allow == b.Allow && a.Error == b.Error && a.Protocol == b.Protocol && a.Version == b.Version &&
		a.Rule == b.Rule && slices.Equal(a.Categories, b.Categories)
}

// key is the memo key of in (decision.Key).
func (r *replayer) key(in *policy.Input) string { return decision.Key(&r.a, r.breaks, in) }

type groupKey struct{ change, rule, purpose string }

// aggregate is one worker's tally.
type aggregate struct {
	decisions, unrecorded, changed int
	groups                         map[groupKey]*Group
}

func newAggregate() *aggregate { return &aggregate{groups: map[groupKey]*Group{}} }

func (a *aggregate) add(k groupKey, seq uint64, examples int) {
	g := a.groups[k]
	if g == nil {
		g = &Group{}
		a.groups[k] = g
	}
	g.Count++
	g.Examples = keepSmallest(g.Examples, examples, seq)
}

func (a *aggregate) merge(b *aggregate, examples int) {
	a.decisions += b.decisions
	a.unrecorded += b.unrecorded
	a.changed += b.changed
	for k, g := range b.groups {
		mine := a.groups[k]
		if mine == nil {
			mine = &Group{}
			a.groups[k] = mine
		}
		mine.Count += g.Count
		for _, s := range g.Examples {
			mine.Examples = keepSmallest(mine.Examples, examples, s)
		}
	}
}

// keepSmallest inserts seq into the sorted list s, keeping at most n.
func keepSmallest(s []uint64, n int, seq uint64) []uint64 {
	i, found := slices.BinarySearch(s, seq)
	if found || (i >= n) {
		return s
	}
	s = slices.Insert(s, i, seq)
	if len(s) > n {
		s = s[:n]
	}
	return s
}

// Summary is the report in a few lines of text.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d decisions replayed from %s to %s against revision %.12s: %d would change, %d would not",
		r.Decisions, r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339), r.Proposed, r.Changed, r.Unchanged)
	if r.Unrecorded > 0 {
		fmt.Fprintf(&b, " (%d older decisions have no recorded input)", r.Unrecorded)
	}
	kinds := make([]string, 0, len(r.ByChange))
	for k := range r.ByChange {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		b.WriteString("; " + k + " " + strconv.Itoa(r.ByChange[k]))
	}
	return b.String()
}
