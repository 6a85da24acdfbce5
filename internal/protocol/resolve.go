package protocol

import (
	"slices"

	"github.com/childrens-trust/trustgate/internal/registry"
)

// ResolvedProtocol is a protocol whose rules name concrete partners: the
// form a policy engine receives. Field names in JSON are snake_case.
type ResolvedProtocol struct {
	ID            string         `json:"id"`
	Version       string         `json:"version"`
	Title         string         `json:"title"`
	Description   string         `json:"description"`
	Signatories   []string       `json:"signatories"`
	EffectiveFrom Date           `json:"effective_from"`
	ReviewBy      Date           `json:"review_by"`
	Expires       Date           `json:"expires"`
	Purposes      []string       `json:"purposes"`
	Rules         []ResolvedRule `json:"rules"`
}

// ResolvedRule is a Rule plus the signatories it actually applies to. The
// Rule's fields are inlined in JSON (providers, requesters, purposes, ...).
type ResolvedRule struct {
	Rule
	// ProviderPartners are the signatories that may disclose under the rule,
	// RequesterPartners those that may receive; sorted, never nil. A
	// requester must also hold one of Requesters.Roles when that is set.
	ProviderPartners  []string `json:"provider_partners"`
	RequesterPartners []string `json:"requester_partners"`
}

// Resolve expands every rule's providers and requesters to the signatories
// they name. A partner id counts only if that partner is a signatory; a
// partner type matches only the signatories of that type. A signatory not
// in the registry has no known type and matches nothing (Lint reports it).
// A protocol never binds or benefits a non-signatory: the expanded lists
// hold only signatories.
//
// Resolve does not decide whether the protocol is in force; give it only
// protocols whose Status.InForce is true (see ResolveInForce).
func Resolve(p *Protocol, reg *registry.Registry) ResolvedProtocol {
	rp := ResolvedProtocol{
		ID:            p.ID,
		Version:       p.Version,
		Title:         p.Title,
		Description:   p.Description,
		Signatories:   nonNil(slices.Clone(p.Signatories)),
		EffectiveFrom: p.EffectiveFrom,
		ReviewBy:      p.ReviewBy,
		Expires:       p.Expires,
		Purposes:      nonNil(slices.Clone(p.Purposes)),
		Rules:         make([]ResolvedRule, 0, len(p.Rules)),
	}
	for _, r := range p.Rules {
		rp.Rules = append(rp.Rules, ResolvedRule{
			Rule:              r,
			ProviderPartners:  matchSignatories(p, reg, r.Providers),
			RequesterPartners: matchSignatories(p, reg, r.Requesters),
		})
	}
	return rp
}

// ResolveInForce resolves the protocols of the statuses that are in force,
// in the order given.
func ResolveInForce(statuses []Status, reg *registry.Registry) []ResolvedProtocol {
	out := []ResolvedProtocol{}
	for _, s := range statuses {
		if s.InForce && s.Protocol != nil {
			out = append(out, Resolve(s.Protocol, reg))
		}
	}
	return out
}

// matchSignatories returns the sorted signatories that a Parties names.
func matchSignatories(p *Protocol, reg *registry.Registry, side Parties) []string {
	ids := set(side.Partners)
	types := set(side.Types)
	out := []string{}
	for _, s := range p.Signatories {
		partner, known := reg.Partner(s)
		if !known {
			continue
		}
		if ids[s] || types[string(partner.Type)] {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
