package decision

import (
	"context"
	"time"

	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// TrustKeys are the Trust-level inputs a request to the gateway can have
// at the instant now under reg: every partner asking with every role it
// may hold (registry.MayHold), of every other partner, for every purpose
// of the vocabulary — the whole key space of the Trust-level memo at
// now's place among the protocols' dates (the server refuses a request
// with any other role, provider or purpose before it is decided).
func TrustKeys(reg *registry.Registry, now time.Time) []policy.Input {
	var out []policy.Input
	partners := reg.Partners()
	for _, rq := range partners {
		for _, role := range reg.Roles() {
			if !reg.MayHold(rq.ID, role.ID) {
				continue
			}
			for _, pv := range partners {
				if pv.ID == rq.ID {
					continue
				}
				for _, pu := range reg.Purposes() {
					out = append(out, policy.Input{
						TimeNS:    now.UnixNano(),
						Requester: policy.Requester{Partner: rq.ID, Type: string(rq.Type), Role: role.ID},
						Provider:  policy.Provider{Partner: pv.ID, Type: string(pv.Type), Sensitive: pv.Sensitive},
						Purpose:   pu.ID,
					})
				}
			}
		}
	}
	return out
}

// Prefill computes the Trust-level part of each of ins that m does not
// yet remember (the same part a request alike in those fields, at a time
// in the same place among the protocols' dates, would compute when it
// first came: policy.Revision.TrustPart), one after another, resting
// after each for as long as it took, so that it uses at most half of one
// core beside the requests, which go on filling the memo as they come.
// It stops when ctx ends, when m is off or has no Trust-level part,
// after an evaluation error, or when m holds three quarters of the parts
// it can (so that a Trust too large for the memo does not have its parts
// computed only to be forgotten), and returns how many parts it computed.
// The answers are the same with it or without it: it only moves, to
// before the first request of each key, work that request would do.
func (m *Memo) Prefill(ctx context.Context, ins []policy.Input) (int, error) {
	if m.trusts == nil {
		return 0, nil
	}
	m.prefill.CompareAndSwap(0, 1)
	n := 0
	for i := range ins {
		if off, _ := m.Off(); off || ctx.Err() != nil {
			return n, ctx.Err()
		}
		if n%256 == 0 && m.trusts.Len() >= trustEntries*3/4 {
			break
		}
		key := m.trustKey(&ins[i])
		if _, ok := m.trusts.Get(key); ok {
			continue
		}
		t0 := time.Now()
		t, err := m.rev.TrustPart(ctx, &ins[i])
		if err != nil {
			return n, err
		}
		m.trusts.Put(key, m.share(t))
		n++
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(time.Since(t0)):
		}
	}
	m.prefill.Store(2)
	return n, nil
}
