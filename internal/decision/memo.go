package decision

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/childrens-trust/trustgate/internal/policy"
)

// Memo decides the live requests of one revision, exactly as evaluating
// the policy would (policy.Revision.Decide), with two memos, on the
// reading of the policy that lets a what-if replay memoise (Analyze): when
// the policy reads the decision's time only by comparing it with the
// protocols' dates (and literals), and reads nothing nondeterministic,
//
//   - the Trust-level part of a decision (policy.TrustQuery: the rules
//     that apply, and why none does) is a function of the requester's
//     partner, type and role, the provider, the purpose and where the time
//     falls among those dates. It is computed once per such key and handed
//     to every later evaluation alike in them (policy.DecideWithTrust), so
//     that an evaluation walks only the rules that apply;
//   - a whole decision is a function of the input without its time (and
//     without the practitioner, if the policy never reads it), where the
//     time falls among those dates, and the child's consent records as
//     they stand to the time — their ids exactly, since ids appear in the
//     answer's words. Two requests alike in all of that get the same
//     decision, to the word, so the second is not evaluated.
//
// A tripwire: one answer in checkEvery (remembered or evaluated with a
// remembered Trust-level part) is also evaluated plainly, and a
// difference (which the analysis says cannot happen) turns both memos off
// for good — that request is answered with the plain evaluation — and is
// reported by Off. A memo belongs to one revision; a new revision gets a
// new one.
type Memo struct {
	rev        *policy.Revision
	a          Analysis
	breaks     []int64
	checkEvery uint64
	decisions  *Cache[string, *policy.Decision] // nil: no decision memo
	trusts     *Cache[string, policy.Trust]     // nil: the policy has no Trust-level part
	parts      *Cache[string, policy.Trust]     // each distinct part once, by its text (share)

	hits, misses, n atomic.Uint64
	off             atomic.Pointer[string] // why the memos were turned off
	prefill         atomic.Int32           // 0 none, 1 running, 2 done (Prefill)
}

// trustEntries bounds the Trust-level parts a memo holds.
const trustEntries = 1 << 16

// DefaultMemoCheckEvery is the tripwire's rate: one answer in this many
// is also evaluated plainly.
const DefaultMemoCheckEvery = 256

// NewMemo returns the memo for rev, compiled from src, holding at most
// about entries decisions (Cache; entries ≤ 0: no decision memo, only the
// Trust-level one). If the analysis does not allow memoising this policy,
// the memo is off from the start (Off says why) and Decide always
// evaluates plainly.
func NewMemo(rev *policy.Revision, src policy.Sources, entries int) *Memo {
	a := Analyze(src)
	// Live answers carry consent ids in their words: key them exactly.
	a.OpaqueIDs = false
	m := &Memo{rev: rev, a: a, checkEvery: DefaultMemoCheckEvery}
	if !a.Memo {
		reason := "the policy cannot be memoised: " + a.Reason
		m.off.Store(&reason)
		return m
	}
	m.breaks = Breakpoints(rev, &a)
	if entries > 0 {
		m.decisions = NewCache[string, *policy.Decision](entries)
	}
	probe := &policy.Input{TimeNS: 0, Purpose: "probe"}
	if t, err := rev.TrustPart(context.Background(), probe); err == nil && t.Defined() {
		// As many as there can be keys in a Trust of this size, bounded.
		m.trusts = NewCache[string, policy.Trust](trustEntries)
		m.parts = NewCache[string, policy.Trust](trustEntries)
	}
	return m
}

// Off says whether the memo is off, and why.
func (m *Memo) Off() (bool, string) {
	if r := m.off.Load(); r != nil {
		return true, *r
	}
	return false, ""
}

// Stats are the decision memo's hits and misses (evaluations it stored)
// so far.
func (m *Memo) Stats() (hits, misses uint64) { return m.hits.Load(), m.misses.Load() }

// TrustParts is how many Trust-level parts m holds (computed ahead by
// Prefill or by requests), and where its Prefill is: "" (none started),
// "running" or "done".
func (m *Memo) TrustParts() (n int, prefill string) {
	if m.trusts != nil {
		n = m.trusts.Len()
	}
	return n, [...]string{"", "running", "done"}[m.prefill.Load()]
}

// Decide answers in as m's revision would: from the memo when it can,
// otherwise by evaluating (with the remembered Trust-level part) and
// remembering the answer. The decision returned is the caller's own copy.
// tripped is true when this call found the memo unsound and turned it off.
func (m *Memo) Decide(ctx context.Context, in *policy.Input) (d *policy.Decision, tripped bool, err error) {
	if off, _ := m.Off(); off {
		d, err := m.rev.Decide(ctx, in)
		return d, false, err
	}
	var key string
	if m.decisions != nil {
		key = Key(&m.a, m.breaks, in)
		if cached, ok := m.decisions.Get(key); ok {
			if m.n.Add(1)%m.checkEvery == 0 {
				if d, tripped, err := m.check(ctx, in, cached, "a remembered decision"); tripped || err != nil {
					return d, tripped, err
				}
			}
			m.hits.Add(1)
			return cloneDecision(cached), false, nil
		}
	}
	d, viaTrust, err := m.evaluate(ctx, in)
	if err != nil {
		return d, false, err
	}
	if viaTrust && m.n.Add(1)%m.checkEvery == 0 {
		if plain, tripped, err := m.check(ctx, in, d, "a decision with a remembered Trust-level part"); tripped || err != nil {
			return plain, tripped, err
		}
	}
	if m.decisions != nil {
		m.misses.Add(1)
		m.decisions.Put(key, cloneDecision(d))
	}
	return d, false, nil
}

// evaluate decides in with the remembered Trust-level part when the
// policy has one (viaTrust), else plainly.
func (m *Memo) evaluate(ctx context.Context, in *policy.Input) (d *policy.Decision, viaTrust bool, err error) {
	if m.trusts == nil {
		d, err := m.rev.Decide(ctx, in)
		return d, false, err
	}
	key := m.trustKey(in)
	t, ok := m.trusts.Get(key)
	if !ok {
		if t, err = m.rev.TrustPart(ctx, in); err != nil {
			return nil, false, err
		}
		t = m.share(t)
		m.trusts.Put(key, t)
	}
	d, err = m.rev.DecideWithTrust(ctx, in, t)
	return d, true, err
}

// share returns the part equal to t that m already holds, if any, so
// that keys with the same part (a part names the partners whose
// protocols it found, so sharing is between keys alike in that) hold
// one copy of it.
func (m *Memo) share(t policy.Trust) policy.Trust {
	text := t.String()
	if held, ok := m.parts.Get(text); ok && held.Equal(t) {
		return held
	}
	m.parts.Put(text, t)
	return t
}

// trustKey is the key of in's Trust-level part: the fields
// policy.TrustInput keeps, with the time as its place among the
// breakpoints.
func (m *Memo) trustKey(in *policy.Input) string {
	var b keyBuilder
	b.buf = make([]byte, 0, 96)
	lo, eq := Place(m.breaks, in.TimeNS)
	b.buf = binary.AppendUvarint(b.buf, uint64(lo))
	b.buf = binary.AppendUvarint(b.buf, uint64(eq))
	b.str(in.Requester.Partner)
	b.str(in.Requester.Type)
	b.str(in.Requester.Role)
	b.str(in.Provider.Partner)
	b.str(in.Provider.Type)
	b.bool(in.Provider.Sensitive)
	b.str(in.Purpose)
	return string(b.buf)
}

// check evaluates in plainly and compares it with got. On a difference it
// turns the memo off and returns the plain decision with tripped.
func (m *Memo) check(ctx context.Context, in *policy.Input, got *policy.Decision, what string) (*policy.Decision, bool, error) {
	d, err := m.rev.Decide(ctx, in)
	if err != nil {
		return d, false, err
	}
	if !reflect.DeepEqual(d, got) {
		reason := fmt.Sprintf("%s differed from the policy's own (allow %t, rule %v; evaluated: allow %t, rule %v)",
			what, got.Allow, got.Protocol, d.Allow, d.Protocol)
		m.off.Store(&reason)
		return d, true, nil
	}
	return nil, false, nil
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
