package whatif

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/childrens-trust/trustgate/internal/policy"
)

// DecisionMemo memoises the live decisions of one revision, on the same
// reading of the policy that lets a what-if replay memoise (analyze): when
// the policy reads the decision's time only by comparing it with the
// protocols' dates (and literals), and reads nothing nondeterministic, a
// decision is a function of the input without its time (and without the
// practitioner, if the policy never reads it) and of where the time falls
// among those dates. Two requests alike in all of that get the same
// decision, to the word, so the second need not be evaluated.
//
// It answers from the memo only for a request with no consent record on
// file: consent ids appear in a decision's reasons and lists, and the
// replay's memo keys them by rank, which is exact for an outcome but not
// for the words of the answer. Such requests are always evaluated.
//
// A tripwire: one hit in checkEvery is also evaluated directly, and a
// difference (which the analysis says cannot happen) turns the memo off
// for good — that request is answered with the evaluated decision — and
// is reported by Off. A memo belongs to one revision; a new revision gets
// a new one.
type DecisionMemo struct {
	rev        *policy.Revision
	a          analysis
	breaks     []int64
	checkEvery uint64
	memo       *memo[string, *policy.Decision]

	hits, misses, n atomic.Uint64
	off             atomic.Pointer[string] // why the memo was turned off
}

// DefaultMemoCheckEvery is the tripwire's rate: one hit in this many is
// also evaluated.
const DefaultMemoCheckEvery = 256

// NewDecisionMemo returns the memo for rev, compiled from src, holding at
// most about entries decisions (see memo). If the analysis does
// not allow memoising this policy, the memo is off from the start (Off
// says why) and Decide always evaluates.
func NewDecisionMemo(rev *policy.Revision, src policy.Sources, entries int) *DecisionMemo {
	m := &DecisionMemo{rev: rev, a: analyze(src), checkEvery: DefaultMemoCheckEvery, memo: newMemo[string, *policy.Decision](entries)}
	if !m.a.memo {
		reason := "the policy cannot be memoised: " + m.a.reason
		m.off.Store(&reason)
		return m
	}
	m.breaks = breakpoints(rev, m.a)
	return m
}

// Off says whether the memo is off, and why.
func (m *DecisionMemo) Off() (bool, string) {
	if r := m.off.Load(); r != nil {
		return true, *r
	}
	return false, ""
}

// Stats are the memo's hits and misses (evaluations it stored) so far.
func (m *DecisionMemo) Stats() (hits, misses uint64) { return m.hits.Load(), m.misses.Load() }

// Decide answers in as m's revision would: from the memo when it can,
// otherwise by evaluating (and remembering the answer). The decision
// returned is the caller's own copy. tripped is true when this call found
// the memo unsound and turned it off.
func (m *DecisionMemo) Decide(ctx context.Context, in *policy.Input) (d *policy.Decision, tripped bool, err error) {
	if off, _ := m.Off(); off || len(in.Consents) > 0 {
		d, err := m.rev.Decide(ctx, in)
		return d, false, err
	}
	key := memoKey(&m.a, m.breaks, in)
	cached, ok := m.memo.get(key)
	if !ok {
		d, err := m.rev.Decide(ctx, in)
		if err != nil {
			return d, false, err
		}
		m.misses.Add(1)
		m.memo.put(key, cloneDecision(d))
		return d, false, nil
	}
	if m.n.Add(1)%m.checkEvery == 0 {
		d, err := m.rev.Decide(ctx, in)
		if err != nil {
			return d, false, err
		}
		if !reflect.DeepEqual(d, cached) {
			reason := fmt.Sprintf("a remembered decision differed from the policy's own (allow %t, rule %v; evaluated: allow %t, rule %v)",
				cached.Allow, cached.Protocol, d.Allow, d.Protocol)
			m.off.Store(&reason)
			return d, true, nil
		}
	}
	m.hits.Add(1)
	return cloneDecision(cached), false, nil
}

// cloneDecision is a deep copy of d, so that no caller can change what
// the memo holds.
func cloneDecision(d *policy.Decision) *policy.Decision {
	c := *d
	c.Categories = slices.Clone(d.Categories)
	c.Reasons = slices.Clone(d.Reasons)
	c.Consents = slices.Clone(d.Consents)
	c.Obligations = slices.Clone(d.Obligations)
	c.RefusalsOnRecord = slices.Clone(d.RefusalsOnRecord)
	if d.Protocol != nil {
		p := *d.Protocol
		c.Protocol = &p
	}
	if d.Fields != nil {
		c.Fields = maps.Clone(d.Fields)
		for k, v := range c.Fields {
			c.Fields[k] = slices.Clone(v)
		}
	}
	return &c
}
