package authz

import (
	"slices"
	"time"

	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// ReceivesUnderProtocols reports whether partner has a lawful basis to
// know about a child under the protocols in force at at: some in-force
// protocol has a rule under which it receives (it is one of the rule's
// resolved requesters) for some purpose. It is the answer the gateway can
// give from the Trust's rules alone, about any child; an involvement index
// that knows which agencies work with which child answers more precisely.
func ReceivesUnderProtocols(statuses []protocol.Status, reg *registry.Registry, partner string, at time.Time) bool {
	for _, rp := range protocol.ResolveInForce(statuses, reg) {
		if at.Before(rp.EffectiveFrom.Time()) || !at.Before(rp.Expires.Time()) {
			continue
		}
		for _, r := range rp.Rules {
			if slices.Contains(r.RequesterPartners, partner) {
				return true
			}
		}
	}
	return false
}
