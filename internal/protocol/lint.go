package protocol

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/childrens-trust/trustgate/internal/registry"
)

// Severity grades a Problem.
type Severity string

// The severities. An error keeps the protocol out of force; a warning does
// not.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Problem is one finding of Lint, located by field path.
type Problem struct {
	Field    string   `json:"field"`
	Message  string   `json:"message"`
	Severity Severity `json:"severity"`
}

func (p Problem) String() string {
	return fmt.Sprintf("%s: %s: %s", p.Severity, p.Field, p.Message)
}

// HasErrors reports whether any problem has error severity.
func HasErrors(problems []Problem) bool {
	for _, p := range problems {
		if p.Severity == SeverityError {
			return true
		}
	}
	return false
}

// OverrideGrounds is the closed vocabulary of safeguarding override grounds
// the API accepts (docs/api.md); a rule naming any other ground can never
// be overridden on it.
var OverrideGrounds = []string{"risk_of_significant_harm", "section_47_enquiry", "emergency_medical"}

// Lint checks a parsed protocol against the registry, as of now. Errors:
// unknown signatories, partners, partner types, purposes, categories and
// roles (override roles included); a partner named in a rule who is not a
// signatory; a rule whose providers or requesters match no signatory; a
// role (requesters' or override) that none of the rule's requesters may
// hold (the registry's held_by). An override ground outside
// OverrideGrounds is an error. Warnings: a signatory with no registered
// keys (it cannot sign), a partner type in a rule that no signatory has, a
// review date that has passed, a sensitive signatory that a rule's
// provider types would take in but that the rule does not name (the
// policy never discloses a sensitive service's data under a type-only
// rule).
// Problems come in document order.
func Lint(p *Protocol, reg *registry.Registry, now time.Time) []Problem {
	l := linter{}
	signatories := set(p.Signatories)
	for i, s := range p.Signatories {
		f := fmt.Sprintf("signatories[%d]", i)
		partner, ok := reg.Partner(s)
		switch {
		case !ok:
			l.err(f, "unknown partner %q", s)
		case partner.Keys() == nil || partner.Keys().Len() == 0:
			l.warn(f, "partner %q has no registered signing keys and cannot sign", s)
		}
	}
	if !now.Before(p.ReviewBy.Time()) {
		l.warn("review_by", "review overdue since %s", p.ReviewBy)
	}
	for i, pu := range p.Purposes {
		if !reg.HasPurpose(pu) {
			l.err(fmt.Sprintf("purposes[%d]", i), "unknown purpose %q", pu)
		}
	}
	for i, r := range p.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		l.parties(f+".providers", r.Providers, p, reg, signatories)
		l.parties(f+".requesters", r.Requesters, p, reg, signatories)
		if len(matchSignatories(p, reg, r.Providers)) == 0 {
			l.err(f+".providers", "no signatory can act as a provider under this rule")
		}
		if len(matchSignatories(p, reg, r.Requesters)) == 0 {
			l.err(f+".requesters", "no signatory can act as a requester under this rule")
		}
		for j, c := range r.Categories {
			if !reg.HasCategory(c) {
				l.err(fmt.Sprintf("%s.categories[%d]", f, j), "unknown category %q", c)
			}
		}
		for j, role := range r.OverrideRoles {
			if !reg.HasRole(role) {
				l.err(fmt.Sprintf("%s.override_roles[%d]", f, j), "unknown role %q", role)
			}
		}
		// A role that none of the rule's requesters may hold (the
		// registry's held_by) makes the rule, or that part of it, dead.
		requesters := matchSignatories(p, reg, r.Requesters)
		for _, side := range []struct {
			field string
			roles []string
		}{{f + ".requesters.roles", r.Requesters.Roles}, {f + ".override_roles", r.OverrideRoles}} {
			for j, role := range side.roles {
				if !reg.HasRole(role) || len(requesters) == 0 {
					continue
				}
				held := false
				for _, id := range requesters {
					held = held || reg.MayHold(id, role)
				}
				if !held {
					l.err(fmt.Sprintf("%s[%d]", side.field, j), "no signatory that may receive under this rule may hold role %q (the registry's held_by)", role)
				}
			}
		}
		for j, g := range r.OverrideGrounds {
			if !slices.Contains(OverrideGrounds, g) {
				l.err(fmt.Sprintf("%s.override_grounds[%d]", f, j), "%q is not an override ground the gateway accepts (%s): this rule can never be overridden on it", g, strings.Join(OverrideGrounds, ", "))
			}
		}
		named := set(r.Providers.Partners)
		for _, s := range matchSignatories(p, reg, Parties{Types: r.Providers.Types}) {
			if partner, ok := reg.Partner(s); ok && partner.Sensitive && !named[s] {
				l.warn(f+".providers", "signatory %q is a sensitive service: this rule's provider types take it in, but the policy discloses a sensitive service's data only under a rule that names it in providers.partners; name it, or expect every such request to be refused", s)
			}
		}
	}
	return l.problems
}

type linter struct{ problems []Problem }

func (l *linter) err(field, format string, args ...any) {
	l.problems = append(l.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...), Severity: SeverityError})
}

func (l *linter) warn(field, format string, args ...any) {
	l.problems = append(l.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...), Severity: SeverityWarning})
}

func (l *linter) parties(field string, side Parties, p *Protocol, reg *registry.Registry, signatories map[string]bool) {
	for j, id := range side.Partners {
		f := fmt.Sprintf("%s.partners[%d]", field, j)
		if _, ok := reg.Partner(id); !ok {
			l.err(f, "unknown partner %q", id)
			continue
		}
		if !signatories[id] {
			l.err(f, "partner %q is not a signatory", id)
		}
	}
	for j, t := range side.Types {
		f := fmt.Sprintf("%s.types[%d]", field, j)
		if !registry.ValidType(t) {
			l.err(f, "unknown partner type %q", t)
			continue
		}
		if len(matchSignatories(p, reg, Parties{Types: []string{t}})) == 0 {
			l.warn(f, "no signatory is of type %q", t)
		}
	}
	for j, role := range side.Roles {
		if !reg.HasRole(role) {
			l.err(fmt.Sprintf("%s.roles[%d]", field, j), "unknown role %q", role)
		}
	}
}
