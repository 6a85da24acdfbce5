package authz

import (
	"fmt"
	"time"

	"github.com/childrens-trust/trustgate/internal/registry"
)

// The refusal codes of Authorize. They are stable: API error bodies and
// audit entries carry them (as the reason of a 401).
const (
	// CodeRoleNotHeld: the agency may not assert the role at all.
	CodeRoleNotHeld = "role_not_held"
	// CodeNotAppointed: the role is appointed and no valid appointment
	// names this practitioner for it at this time.
	CodeNotAppointed = "not_appointed"
)

// Refusal says why a partner's practitioner may not act in a role.
type Refusal struct {
	Code   string
	Reason string
}

func (r *Refusal) Error() string { return "authz: " + r.Code + ": " + r.Reason }

// Grant is what Authorize allows: the caller acts in Role for Partner,
// under Appointment (its id; "" for a role that is not appointed) with
// Scope (ScopeAgency for an unappointed role: nothing beyond their own
// agency).
type Grant struct {
	Partner      string `json:"partner"`
	Practitioner string `json:"practitioner"`
	Role         string `json:"role"`
	Appointment  string `json:"appointment,omitempty"`
	Scope        Scope  `json:"scope"`
}

// Appointed reports whether the grant rests on an appointment.
func (g Grant) Appointed() bool { return g.Appointment != "" }

// TrustWide reports whether the grant reaches the whole Trust.
func (g Grant) TrustWide() bool { return g.Appointed() && g.Scope == ScopeTrust }

// Covers reports whether the grant reaches partner's affairs: its own
// agency always, every agency with a Trust-wide appointment.
func (g Grant) Covers(partner string) bool { return partner == g.Partner || g.TrustWide() }

// Model is one revision's authorisation: its registry and its valid
// appointments. Immutable; safe for concurrent use.
type Model struct {
	reg   *registry.Registry
	valid map[holder][]*Status
}

type holder struct{ partner, practitioner, role string }

// New builds the model of a registry and appointment statuses (LoadDir).
// Only valid appointments count.
func New(reg *registry.Registry, statuses []Status) *Model {
	m := &Model{reg: reg, valid: map[holder][]*Status{}}
	for i := range statuses {
		st := &statuses[i]
		if !st.Valid || st.Appointment == nil {
			continue
		}
		a := st.Appointment
		k := holder{a.Partner, a.Practitioner, a.Role}
		m.valid[k] = append(m.valid[k], st)
	}
	return m
}

// Authorize says whether partner's practitioner may act in role at time
// at, and with what scope; else a *Refusal. With several appointments in
// force, a Trust-wide one wins, then the one ending last.
func (m *Model) Authorize(partner, practitioner, role string, at time.Time) (Grant, error) {
	r, ok := m.reg.Role(role)
	if !ok {
		return Grant{}, &Refusal{Code: CodeRoleNotHeld, Reason: fmt.Sprintf("role %q is not in the Trust's vocabulary", role)}
	}
	if !m.reg.MayHold(partner, role) {
		return Grant{}, &Refusal{Code: CodeRoleNotHeld, Reason: fmt.Sprintf("role %s is not one that %s may assert", role, partner)}
	}
	g := Grant{Partner: partner, Practitioner: practitioner, Role: role, Scope: ScopeAgency}
	if !r.Appointed {
		return g, nil
	}
	var best *Status
	for _, st := range m.valid[holder{partner, practitioner, role}] {
		if at.Before(st.Appointment.From.Time()) || !at.Before(st.Until) {
			continue
		}
		if best == nil || better(st, best) {
			best = st
		}
	}
	if best == nil {
		return Grant{}, &Refusal{Code: CodeNotAppointed, Reason: fmt.Sprintf("%s is an appointed role and no appointment in force names %s of %s for it", role, practitioner, partner)}
	}
	g.Appointment, g.Scope = best.Appointment.ID, best.Appointment.Scope
	return g, nil
}

func better(a, b *Status) bool {
	if (a.Appointment.Scope == ScopeTrust) != (b.Appointment.Scope == ScopeTrust) {
		return a.Appointment.Scope == ScopeTrust
	}
	return a.Until.After(b.Until)
}

// Appointees lists the valid appointments (in force or not), for status
// pages and tests.
func (m *Model) Appointees() []*Appointment {
	var out []*Appointment
	for _, sts := range m.valid {
		for _, st := range sts {
			out = append(out, st.Appointment)
		}
	}
	return out
}
