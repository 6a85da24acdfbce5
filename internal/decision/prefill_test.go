package decision

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/decision/decisiontest"
	"github.com/childrens-trust/trustgate/internal/policy"
)

// TestPrefillCoversTheKeySpace: TrustKeys holds the Trust-level key of
// every request the server lets through (a role the requester may hold,
// another partner, a purpose of the vocabulary), and a prefilled memo
// holds, for each, the very part a request would compute, so that its
// answers are the plain evaluation's word for word.
func TestPrefillCoversTheKeySpace(t *testing.T) {
	rev := exactnessTrust(t)
	at := periodFrom.Add(40 * 24 * time.Hour)
	keys := TrustKeys(rev.Registry, at)
	m := NewMemo(rev.Policy, rev.PolicySources(), 0)
	space := map[string]bool{}
	for i := range keys {
		space[m.trustKey(&keys[i])] = true
	}
	if len(space) != len(keys) || len(keys) < 1000 {
		t.Fatalf("%d keys, %d distinct: want one input per key, and the whole Trust", len(keys), len(space))
	}
	ctx := context.Background()
	g := decisiontest.NewGenerator(rev.Registry, 3, 100, periodFrom, periodTo)
	var ins = keys[:0:0]
	for len(ins) < 400 {
		in := g.NextWide()
		in.TimeNS = at.UnixNano()
		if !rev.Registry.MayHold(in.Requester.Partner, in.Requester.Role) || in.Requester.Partner == in.Provider.Partner {
			continue
		}
		if !space[m.trustKey(&in)] {
			t.Fatalf("a request's Trust-level key is not in TrustKeys: %+v", in)
		}
		ins = append(ins, in)
	}
	// Prefill the keys these requests have (the whole space takes seconds),
	// then every request finds its part remembered and equal to its own.
	var sub = keys[:0:0]
	seen := map[string]bool{}
	for i := range ins {
		if k := m.trustKey(&ins[i]); !seen[k] {
			seen[k] = true
			sub = append(sub, *policy.TrustInput(&ins[i]))
		}
	}
	n, err := m.Prefill(ctx, sub)
	if err != nil || n != len(sub) {
		t.Fatalf("Prefill: %d of %d, %v", n, len(sub), err)
	}
	if n, _ := m.Prefill(ctx, sub); n != 0 {
		t.Fatalf("a second Prefill computed %d parts again", n)
	}
	// Keys with equal parts share one copy.
	if d := m.parts.Len(); d == 0 || d >= len(sub) {
		t.Fatalf("%d keys held %d distinct parts: equal parts are not shared", len(sub), d)
	}
	t.Logf("%d keys, %d distinct parts", len(sub), m.parts.Len())
	for i := range ins {
		held, ok := m.trusts.Get(m.trustKey(&ins[i]))
		own, err := rev.Policy.TrustPart(ctx, &ins[i])
		if !ok || err != nil || !held.Equal(own) {
			t.Fatalf("request %d: remembered part %v (held %t), its own %v (%v)", i, held, ok, own, err)
		}
		want, _ := rev.Policy.Decide(ctx, &ins[i])
		got, _, _ := m.Decide(ctx, &ins[i])
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		if string(wj) != string(gj) {
			t.Fatalf("request %d: prefilled memo %s, plain %s", i, gj, wj)
		}
	}
}
