# METADATA
# title: Who may record, withdraw and read a child's consent
# description: >-
#   Decides whether a practitioner may record a consent or a refusal, record
#   a withdrawal, or read a child's consent history. Default deny. The
#   gateway validates the record itself; this policy decides only who may
#   act. Data: data.trustgate.protocols, data.trustgate.partners. Input:
#   {"action": "record" | "withdraw" | "read", "time_ns", "requester":
#   {"partner", "type", "practitioner", "role"}, "recorded_by": [partner
#   ids that recorded a consent or refusal for this child]}.
package trustgate.consent

import rego.v1

default permission := {"allow": false, "reasons": ["no consent permission could be established: refused"]}

permission := {"allow": true, "reasons": sort([m | some m in allow_reasons])} if count(allow_reasons) > 0

permission := {"allow": false, "reasons": refusal_reasons} if count(allow_reasons) == 0

refusal_reasons := sort([m | some m in deny_reasons]) if count(deny_reasons) > 0

refusal_reasons := ["no consent permission could be established: refused"] if count(deny_reasons) == 0

actions := {"record", "withdraw", "read"}

# Practitioners who work with families and may record their consent or
# refusal (and a withdrawal). Not police, probation, housing or Jobcentre
# roles, and not the oversight roles.
recording_roles := {
	"social_worker", "team_manager", "early_help_worker",
	"health_visitor", "school_nurse", "paediatrician", "gp",
	"camhs_clinician", "sexual_health_nurse",
	"designated_safeguarding_lead", "education_welfare_officer",
	"yot_officer", "connexions_adviser", "support_worker",
}

# Oversight roles read every child's consent history; an IG lead may also
# record a withdrawal the family made to them.
oversight_roles := {"ig_lead", "auditor"}

withdrawing_roles := recording_roles | {"ig_lead"}

# ---------------------------------------------------------------------------
# The partner's place in the Trust's consent-based sharing.

in_force contains p if {
	some p in data.trustgate.protocols
	p.effective_from_ns <= input.time_ns
	input.time_ns < p.expires_ns
}

sensitive if data.trustgate.partners[input.requester.partner].sensitive == true

# The requester is named by a rule as a party, on either side. A sensitive
# service is a provider only under a rule that names it by id.
party(r) if input.requester.partner in r.requesters.partners

party(r) if input.requester.type in r.requesters.types

party(r) if input.requester.partner in r.providers.partners

party(r) if {
	not sensitive
	input.requester.type in r.providers.types
}

# Rules that depend on consent, of in-force protocols the requester signed,
# to which the requester is a party.
consent_rules contains sprintf("%s rule %s", [p.id, r.id]) if {
	some p in in_force
	input.requester.partner in p.signatories
	some r in p.rules
	r.consent in {"required", "overridable"}
	party(r)
}

first_rule := sort([x | some x in consent_rules])[0]

# ---------------------------------------------------------------------------
# Allowed.

allow_reasons contains sprintf("%s (%s) may record consent: %s is a party to %s", [
	input.requester.partner, input.requester.role, input.requester.partner, first_rule,
]) if {
	input.action == "record"
	input.requester.role in recording_roles
	count(consent_rules) > 0
}

allow_reasons contains sprintf("%s (%s) may record a withdrawal", [input.requester.partner, input.requester.role]) if {
	input.action == "withdraw"
	input.requester.role in withdrawing_roles
}

allow_reasons contains sprintf("role %s may read every child's consent history", [input.requester.role]) if {
	input.action == "read"
	input.requester.role in oversight_roles
}

allow_reasons contains sprintf("%s (%s) may read this child's consent history: it has recorded consent for the child", [input.requester.partner, input.requester.role]) if {
	input.action == "read"
	input.requester.role in recording_roles
	input.requester.partner in input.recorded_by
}

allow_reasons contains sprintf("%s (%s) may read this child's consent history: it is a party to %s", [
	input.requester.partner, input.requester.role, first_rule,
]) if {
	input.action == "read"
	input.requester.role in recording_roles
	count(consent_rules) > 0
}

# ---------------------------------------------------------------------------
# Refused: every reason that applies.

deny_reasons contains sprintf("action %s is not one of %s", [input.action, concat(", ", sort(actions))]) if {
	not input.action in actions
}

deny_reasons contains sprintf("role %s may not record consent (roles that may: %s)", [input.requester.role, concat(", ", sort(recording_roles))]) if {
	input.action == "record"
	not input.requester.role in recording_roles
}

deny_reasons contains sprintf("%s is not a party to any rule that depends on consent in an in-force protocol it has signed", [input.requester.partner]) if {
	input.action in {"record", "read"}
	count(consent_rules) == 0
}

deny_reasons contains sprintf("role %s may not record a withdrawal (roles that may: %s)", [input.requester.role, concat(", ", sort(withdrawing_roles))]) if {
	input.action == "withdraw"
	not input.requester.role in withdrawing_roles
}

deny_reasons contains sprintf("role %s may not read consent histories (roles that may: %s, %s)", [
	input.requester.role,
	concat(", ", sort(oversight_roles)), "or a practitioner role of a partner party to a consent-based rule",
]) if {
	input.action == "read"
	not input.requester.role in recording_roles
	not input.requester.role in oversight_roles
}
