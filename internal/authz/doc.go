// Package authz owns who may act as whom: which roles an agency may assert
// for its practitioners (the registry's held_by), and the appointments
// that alone confer the privileged roles (ig_lead, auditor: roles that see
// across children or change the Trust's rules).
//
// # Appointments
//
// An appointment is a YAML document (Parse) naming an agency, one of its
// practitioners, an appointed role, a scope and a period:
//
//	id: appt-exley-csc-ig-0001
//	version: "1"
//	trust: exley-childrens-trust
//	partner: exley-csc
//	practitioner: ig-0001
//	role: ig_lead
//	scope: trust            # or agency
//	from: 2026-01-01
//	until: 2028-01-01       # exclusive
//
// It is signed like a protocol (internal/protocol's detached multi-party
// JWS, typ trustgate-appointment+jws, id header "appointment"): by the
// partner (its senior officer's key, the agency key of the registry) and,
// for scope trust, also by the Trust itself (the registry's own jwks, a
// key no agency system holds). A signatory withdraws it with a signed
// withdrawal (typ trustgate-appointment-withdrawal+jws) in
// FILE.withdrawals.json. Appointment files live in the appointments/
// directory of the protocols directory and are loaded with every revision
// (LoadDir), so they take effect by the same checked hot reload.
//
// # What it promises
//
//   - Evaluate decides, like protocol.Evaluate, whether an appointment is
//     valid: it parses, Lint finds no error (known partner, a role of the
//     vocabulary that is appointed and that the partner may hold, the
//     Trust's id, from before until), every required signatory has a
//     verifying signature, and no verified withdrawal has taken effect. A
//     Status says exactly why not.
//   - Model.Authorize answers, for a partner, practitioner, role and time:
//     is the role one the agency may hold (CodeRoleNotHeld); for an
//     appointed role, which valid appointment is in force for exactly that
//     practitioner at that time (CodeNotAppointed), and its Scope. A role
//     that is not appointed needs no appointment; its Grant has no scope
//     beyond the caller's own agency.
//   - Nothing is granted by default: no appointment file, no privileged
//     role. Time is passed in; the package never reads the clock, never
//     logs and never exits.
package authz
