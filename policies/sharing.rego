# METADATA
# title: Information sharing between the partners of a Children's Trust
# description: >-
#   Turns one request (who asks, from whom, about which child, for what
#   purpose, for which categories) plus the in-force protocols, the partner
#   registry and the child's consent state into one decision. Default deny.
#   Data: data.trustgate.protocols (signature-verified protocols; dates are
#   checked here, at decision time), data.trustgate.partners,
#   data.trustgate.settings. Input: see docs/architecture.md.
package trustgate.sharing

import rego.v1

# ---------------------------------------------------------------------------
# The decision. Exactly one object; `allow` is true only when at least one
# asked category is granted by one rule of one in-force protocol.

default decision := {
	"allow": false,
	"categories": [],
	"reasons": ["no decision could be made"],
	"protocol": null,
	"lawful_basis": "",
	"basis": "",
	"override": false,
	"consents": [],
	"obligations": [],
}

decision := allow_decision if best

decision := deny_decision if not best

allow_decision := {
	"allow": true,
	"categories": best.categories,
	"reasons": array.concat([allow_reason], withheld_reasons),
	"protocol": {"id": best.protocol, "version": best.version, "rule": best.rule, "title": best.title},
	"lawful_basis": best.lawful_basis,
	"basis": best.basis,
	"override": best.basis == "override",
	"consents": best.consents,
	"obligations": obligations,
	"fields": best.fields,
	"refusals_on_record": refusals_shown,
}

deny_decision := {
	"allow": false,
	"categories": [],
	"reasons": deny_reasons,
	"protocol": null,
	"lawful_basis": "",
	"basis": "",
	"override": false,
	"consents": [],
	"obligations": [],
}

# ---------------------------------------------------------------------------
# Protocols in force now, and which of them bind both parties.

in_force contains p if {
	some p in data.trustgate.protocols
	p.effective_from_ns <= input.time_ns
	input.time_ns < p.expires_ns
}

# A protocol binds, and benefits, only its signatories.
binding contains p if {
	some p in in_force
	input.requester.partner in p.signatories
	input.provider.partner in p.signatories
}

# A rule names its providers by partner id or by type. A type reaches only
# the signatories of that type (binding already requires the provider to be
# a signatory). A sensitive service is reached only by a rule that names it
# by id: it is never swept in by its type.
provider_matches(r) if input.provider.partner in r.providers.partners

provider_matches(r) if {
	not input.provider.sensitive
	input.provider.type in r.providers.types
}

requester_party(r) if input.requester.partner in r.requesters.partners

requester_party(r) if input.requester.type in r.requesters.types

role_ok(r) if count(r.requesters.roles) == 0

role_ok(r) if input.requester.role in r.requesters.roles

# Rules of binding protocols whose parties, role and purpose match.
applicable contains [p, r] if {
	some p in binding
	some r in p.rules
	provider_matches(r)
	requester_party(r)
	role_ok(r)
	input.purpose in r.purposes
}

asked := {c | some c in input.categories}

# ---------------------------------------------------------------------------
# Consent. input.consents holds the records that bear on this child (the
# gateway passes active, expired, withdrawn and refused records alike; the
# status is derived here from the dates and the withdrawal).

consent_status(c) := "withdrawn" if c.withdrawn_ns > 0

consent_status(c) := "refused" if {
	not c.withdrawn_ns > 0
	c.outcome == "refused"
}

consent_status(c) := "expired" if {
	not c.withdrawn_ns > 0
	c.outcome == "given"
	c.valid_until_ns > 0
	input.time_ns >= c.valid_until_ns
}

consent_status(c) := "not_yet_valid" if {
	not c.withdrawn_ns > 0
	c.outcome == "given"
	input.time_ns < c.valid_from_ns
}

consent_status(c) := "active" if {
	not c.withdrawn_ns > 0
	c.outcome == "given"
	input.time_ns >= c.valid_from_ns
	not expired_at(c)
}

expired_at(c) if {
	c.valid_until_ns > 0
	input.time_ns >= c.valid_until_ns
}

# The child is recorded as competent (Gillick) when any of the child's own
# records, not withdrawn, says they were assessed competent.
child_competent if {
	some c in input.consents
	c.given_by == "self"
	c.competent == true
	not c.withdrawn_ns > 0
}

# Whose decision counts: the child's own when recorded competent; otherwise
# a person with parental responsibility (or the child's own, which is never
# set aside by a parent).
decider_ok(c) if c.given_by == "self"

decider_ok(c) if {
	c.given_by != "self"
	not child_competent
}

# A consent names its recipients by partner id, by type, or as the
# signatories of an in-force protocol.
recipient_named(c) if input.requester.partner in c.recipients.partners

recipient_named(c) if input.requester.type in c.recipients.types

recipient_named(c) if {
	some pid in c.recipients.protocols
	some p in in_force
	p.id == pid
	input.requester.partner in p.signatories
}

# An active refusal by whoever's decision counts, covering the purpose and
# the recipient, blocks consent-based sharing.
blocking_refusals contains c.id if {
	some c in input.consents
	consent_status(c) == "refused"
	decider_ok(c)
	input.purpose in c.purposes
	recipient_named(c)
}

# A competent child's own refusal prevails over a parent's consent.
competent_refusal if {
	some c in input.consents
	consent_status(c) == "refused"
	c.given_by == "self"
	input.purpose in c.purposes
}

covering(c) if {
	consent_status(c) == "active"
	decider_ok(c)
	input.purpose in c.purposes
	recipient_named(c)
}

# Categories that active, covering consents grant, and which consents.
consented_categories := {cat |
	count(blocking_refusals) == 0
	not competent_refusal
	some c in input.consents
	covering(c)
	some cat in c.categories
	cat in asked
}

consent_ids_for(cats) := sort({c.id |
	some c in input.consents
	covering(c)
	some cat in c.categories
	cat in cats
})

refusals_shown := sort([c.id | some c in input.consents; consent_status(c) == "refused"])

# ---------------------------------------------------------------------------
# Safeguarding override: only where the rule permits it, only by a role the
# rule names, only on a ground the rule lists, only for the rule's own
# categories. The gateway has already rejected an override without a
# justification of substance (400); the policy checks it again.

override_requested if input.override.ground != ""

override_ok(r) if {
	override_requested
	r.consent == "overridable"
	input.override.ground in r.override_grounds
	input.requester.role in r.override_roles
	input.override.justified == true
}

# ---------------------------------------------------------------------------
# Candidate grants: one per applicable rule.

grant_base(p, r) := {
	"protocol": p.id,
	"version": p.version,
	"title": p.title,
	"rule": r.id,
	"rule_categories": r.categories,
	"lawful_basis": r.lawful_basis,
}

rule_asked(r) := sort([c | some c in asked; c in r.categories])

grant(p, r) := object.union(grant_base(p, r), {
	"basis": "no_consent_needed",
	"categories": rule_asked(r),
	"fields": object.filter(r.fields, asked),
	"consents": [],
}) if r.consent == "not_required"

grant(p, r) := object.union(grant_base(p, r), {
	"basis": "override",
	"categories": rule_asked(r),
	"fields": object.filter(r.fields, asked),
	"consents": [],
}) if {
	needs_consent(r)
	override_ok(r)
}

grant(p, r) := object.union(grant_base(p, r), {
	"basis": "consent",
	"categories": cats,
	"fields": object.filter(r.fields, cats),
	"consents": consent_ids_for({c | some c in cats}),
}) if {
	needs_consent(r)
	not override_ok(r)
	cats := sort([c | some c in asked; c in r.categories; c in consented_categories])
}

candidates contains g if {
	some [p, r] in applicable
	g := grant(p, r)
	count(g.categories) > 0
}

# The grant that discloses the most of what was asked; ties go to the
# protocol id, then the rule id, so the choice is deterministic.
rank_key(g) := sprintf("%04d|%s|%s", [1000 - count(g.categories), g.protocol, g.rule])

best_key := min({rank_key(g) | some g in candidates})

best := g if {
	some g in candidates
	rank_key(g) == best_key
}

# ---------------------------------------------------------------------------
# Obligations attached to an allow.

obligations := array.concat(
	[{"type": "notify_provider", "partner": input.provider.partner}],
	override_obligations,
)

override_obligations := [
	{"type": "ig_review", "within_days": data.trustgate.settings.override_review_days},
	{"type": "notify_lead_professional"},
] if best.basis == "override"

override_obligations := [] if best.basis != "override"

# ---------------------------------------------------------------------------
# Reasons, in plain words, for the allow and for every denial.

allow_reason := sprintf("allowed by %s v%s rule %s (%s)", [best.protocol, best.version, best.rule, basis_words[best.basis]])

basis_words := {
	"no_consent_needed": "consent not required by the rule",
	"consent": "covered by the consent on record",
	"override": sprintf("safeguarding override: %s", [input.override.ground]),
}

withheld_reasons := [sprintf("category %s withheld: %s", [c, withheld_why(c)]) |
	some c in sort(asked)
	not c in best.categories
]

withheld_why(c) := sprintf("rule %s does not cover it", [best.rule]) if not c in best.rule_categories

withheld_why(c) := "no active consent covers it" if c in best.rule_categories

deny_reasons := [no_binding_reason] if count(binding) == 0

deny_reasons := array.concat(
	[sprintf("no rule of %s lets a %s (%s) receive data from %s for purpose %s", [
		concat(", ", sort([p.id | some p in binding])),
		input.requester.type, input.requester.role, input.provider.partner, input.purpose,
	])],
	sensitive_note,
) if {
	count(binding) > 0
	count(applicable) == 0
}

deny_reasons := sort([m | some m in denials]) if count(applicable) > 0

no_binding_reason := sprintf("no protocol in force is signed by both %s and %s", [input.requester.partner, input.provider.partner]) if {
	count(in_force) > 0
}

no_binding_reason := "no protocol is in force" if count(in_force) == 0

sensitive_note := [sprintf("%s is a sensitive service: only a rule that names it may disclose its data", [input.provider.partner])] if input.provider.sensitive

sensitive_note := [] if not input.provider.sensitive

rule_covers_asked(r) if {
	some c in asked
	c in r.categories
}

needs_consent(r) if r.consent in {"required", "overridable"}

denials contains sprintf("%s rule %s does not cover categories %s", [p.id, r.id, concat(", ", sort(asked))]) if {
	some [p, r] in applicable
	not rule_covers_asked(r)
}

denials contains sprintf("%s rule %s does not permit a safeguarding override", [p.id, r.id]) if {
	override_requested
	some [p, r] in applicable
	rule_covers_asked(r)
	r.consent == "required"
}

denials contains sprintf("%s rule %s does not permit override ground %s", [p.id, r.id, input.override.ground]) if {
	override_requested
	some [p, r] in applicable
	rule_covers_asked(r)
	r.consent == "overridable"
	not input.override.ground in r.override_grounds
}

denials contains sprintf("role %s may not invoke a safeguarding override under %s rule %s", [input.requester.role, p.id, r.id]) if {
	override_requested
	some [p, r] in applicable
	rule_covers_asked(r)
	r.consent == "overridable"
	not input.requester.role in r.override_roles
}

denials contains sprintf("a safeguarding override under %s rule %s needs a justification", [p.id, r.id]) if {
	override_requested
	some [p, r] in applicable
	rule_covers_asked(r)
	r.consent == "overridable"
	not input.override.justified == true
}

denials contains sprintf("%s rule %s requires consent: %s", [p.id, r.id, m]) if {
	some [p, r] in applicable
	rule_covers_asked(r)
	needs_consent(r)
	not override_ok(r)
	some m in consent_problems
}

# Why no consent covers the request; one line per problem, naming the part
# that is missing.
consent_problems contains "no consent is recorded for this child" if count(input.consents) == 0

consent_problems contains sprintf("the child, assessed as competent, refused consent (%s); this prevails over any consent by a parent", [c.id]) if {
	some c in input.consents
	consent_status(c) == "refused"
	c.given_by == "self"
	input.purpose in c.purposes
}

consent_problems contains sprintf("consent was refused (%s)", [c.id]) if {
	some c in input.consents
	c.given_by != "self"
	c.id in blocking_refusals
}

consent_problems contains sprintf("consent %s was withdrawn", [c.id]) if {
	some c in input.consents
	consent_status(c) == "withdrawn"
}

consent_problems contains sprintf("consent %s has expired", [c.id]) if {
	some c in input.consents
	consent_status(c) == "expired"
}

consent_problems contains sprintf("consent %s is not yet valid", [c.id]) if {
	some c in input.consents
	consent_status(c) == "not_yet_valid"
}

consent_problems contains sprintf("consent %s was given by a %s, but the child is recorded as competent: only the child's own consent counts", [c.id, c.given_by]) if {
	some c in input.consents
	consent_status(c) == "active"
	not decider_ok(c)
}

consent_problems contains sprintf("consent %s does not cover purpose %s", [c.id, input.purpose]) if {
	some c in input.consents
	consent_status(c) == "active"
	decider_ok(c)
	not input.purpose in c.purposes
}

consent_problems contains sprintf("consent %s does not name %s as a recipient", [c.id, input.requester.partner]) if {
	some c in input.consents
	consent_status(c) == "active"
	decider_ok(c)
	input.purpose in c.purposes
	not recipient_named(c)
}

consent_problems contains sprintf("consent %s does not cover category %s", [c.id, cat]) if {
	some c in input.consents
	covering(c)
	some cat in asked
	not cat in c.categories
}
