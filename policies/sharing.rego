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
	"reasons": ["no_decision: no decision could be made"],
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
# The Trust-level part of a decision: everything that depends only on who
# asks (partner, type, role), of whom (partner, type, sensitivity), for
# which purpose, and where the time falls among the protocols' dates —
# which rules of which in-force protocols apply, which in-force protocols
# the requester signed, and, when no rule applies, why. The gateway may
# compute it once for each such key of a revision (with an input holding
# only those fields) and hand it in as input.trust; without input.trust
# the policy computes it here. Protocols are named by their index in
# data.trustgate.protocols, rules by their index in the protocol.

trust := input.trust if input.trust

trust := trust_part if not input.trust

trust_part := {
	"applicable": sort([x | some x in applicable_ix]),
	"requester_protocols": sort([p.id |
		some i in in_force_ix
		p := data.trustgate.protocols[i]
		input.requester.partner in p.signatories
	]),
	"none": no_rule_reasons,
}

# Protocols in force now (by index), and which of them bind both parties.
in_force_ix contains i if {
	some i, p in data.trustgate.protocols
	p.effective_from_ns <= input.time_ns
	input.time_ns < p.expires_ns
}

# A protocol binds, and benefits, only its signatories.
binding_ix contains i if {
	some i in in_force_ix
	signed_by_both(data.trustgate.protocols[i])
}

signed_by_both(p) if {
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

# A rule whose parties, role and purpose match the request.
rule_matches(r) if {
	input.purpose in r.purposes
	provider_matches(r)
	requester_party(r)
	role_ok(r)
}

# Rules of binding protocols that match, as [protocol index, rule index].
applicable_ix contains [i, j] if {
	some i in binding_ix
	some j, r in data.trustgate.protocols[i].rules
	rule_matches(r)
}

# Why no rule applies (empty when one does). A protocol signed by both
# parties with a rule that would apply, but not in force now, is the
# cause, named with why it is not in force; otherwise, when no in-force
# protocol binds both, that is the cause (with the protocols both signed
# that are not in force); otherwise no rule of the binding ones fits.
no_rule_reasons := [] if count(applicable_ix) > 0

no_rule_reasons := sort([m | some m in lapsed_causes]) if {
	count(applicable_ix) == 0
	count(lapsed_causes) > 0
}

no_rule_reasons := array.concat([no_binding_reason], sort([m | some m in pair_lapsed_causes])) if {
	count(applicable_ix) == 0
	count(lapsed_causes) == 0
	count(binding_ix) == 0
}

no_rule_reasons := array.concat(
	[concat("", [
		"no_rule_matches: no rule of ",
		concat(", ", sort([data.trustgate.protocols[i].id | some i in binding_ix])),
		" lets a ", input.requester.type, " (", input.requester.role, ") receive data from ",
		input.provider.partner, " for purpose ", input.purpose,
	])],
	sensitive_note,
) if {
	count(applicable_ix) == 0
	count(lapsed_causes) == 0
	count(binding_ix) > 0
}

no_binding_reason := concat("", ["no_shared_protocol: no protocol in force is signed by both ", input.requester.partner, " and ", input.provider.partner]) if {
	count(in_force_ix) > 0
}

no_binding_reason := "no_protocol_in_force: no protocol is in force" if count(in_force_ix) == 0

sensitive_note := [concat("", ["sensitive_service: ", input.provider.partner, " is a sensitive service: only a rule that names it may disclose its data"])] if input.provider.sensitive

sensitive_note := [] if not input.provider.sensitive

# Protocols both parties signed that are not in force now: those of the
# data outside their period, and those the data lists as lapsed (not in
# force for a reason of their own: a missing or bad signature, a
# withdrawal, an end date passed). Each cause is "code: words".
not_in_force_cause(p) := concat("", ["protocol_not_yet_in_force: ", p.id, " v", p.version, " is not yet in force: effective from ", p.effective_from]) if {
	input.time_ns < p.effective_from_ns
}

not_in_force_cause(p) := concat("", [p.ends.code, ": ", p.id, " v", p.version, " is no longer in force: ", p.ends.words]) if {
	input.time_ns >= p.expires_ns
}

lapsed_cause(p) := concat("", [p.cause.code, ": ", p.id, " v", p.version, " is not in force: ", p.cause.words])

lapsed_causes contains not_in_force_cause(p) if {
	some i, p in data.trustgate.protocols
	not i in in_force_ix
	signed_by_both(p)
	some r in p.rules
	rule_matches(r)
}

lapsed_causes contains lapsed_cause(p) if {
	some p in data.trustgate.lapsed
	signed_by_both(p)
	some r in p.rules
	rule_matches(r)
}

pair_lapsed_causes contains not_in_force_cause(p) if {
	some i, p in data.trustgate.protocols
	not i in in_force_ix
	signed_by_both(p)
}

pair_lapsed_causes contains lapsed_cause(p) if {
	some p in data.trustgate.lapsed
	signed_by_both(p)
}

# ---------------------------------------------------------------------------
# The rest of the decision, about this child and these categories.

# The applicable rules, as [protocol, rule].
applicable contains [p, r] if {
	some [i, j] in trust.applicable
	p := data.trustgate.protocols[i]
	r := p.rules[j]
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
	pid in trust.requester_protocols
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
best_count := max({count(g.categories) | some g in candidates})

best_key := min({[g.protocol, g.rule] | some g in candidates; count(g.categories) == best_count})

best := g if {
	some g in candidates
	count(g.categories) == best_count
	[g.protocol, g.rule] == best_key
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
# Reasons, each a stable code and plain words ("code: words";
# docs/api.md lists the codes), for the allow and for every denial.

allow_reason := concat("", ["allowed: allowed by ", best.protocol, " v", best.version, " rule ", best.rule, " (", basis_words[best.basis], ")"])

basis_words := {
	"no_consent_needed": "consent not required by the rule",
	"consent": "covered by the consent on record",
	"override": concat("", ["safeguarding override: ", input.override.ground]),
}

withheld_reasons := [withheld(c) |
	some c in sort(asked)
	not c in best.categories
]

withheld(c) := concat("", ["category_not_in_rule: category ", c, " withheld: rule ", best.rule, " does not cover it"]) if not c in best.rule_categories

withheld(c) := concat("", ["category_no_consent: category ", c, " withheld: no active consent covers it"]) if c in best.rule_categories

deny_reasons := trust.none if count(applicable) == 0

deny_reasons := sort([m | some m in denials]) if count(applicable) > 0

rule_covers_asked(r) if {
	some c in asked
	c in r.categories
}

needs_consent(r) if r.consent in {"required", "overridable"}

denials contains concat("", ["categories_not_in_rule: ", p.id, " rule ", r.id, " does not cover categories ", concat(", ", sort(asked))]) if {
	some [p, r] in applicable
	not rule_covers_asked(r)
}

denials contains concat("", ["override_not_permitted: ", p.id, " rule ", r.id, " does not permit a safeguarding override"]) if {
	override_requested
	some [p, r] in applicable
	rule_covers_asked(r)
	r.consent == "required"
}

denials contains concat("", ["override_ground_not_permitted: ", p.id, " rule ", r.id, " does not permit override ground ", input.override.ground]) if {
	override_requested
	some [p, r] in applicable
	rule_covers_asked(r)
	r.consent == "overridable"
	not input.override.ground in r.override_grounds
}

denials contains concat("", ["override_role_not_permitted: role ", input.requester.role, " may not invoke a safeguarding override under ", p.id, " rule ", r.id]) if {
	override_requested
	some [p, r] in applicable
	rule_covers_asked(r)
	r.consent == "overridable"
	not input.requester.role in r.override_roles
}

denials contains concat("", ["override_unjustified: a safeguarding override under ", p.id, " rule ", r.id, " needs a justification"]) if {
	override_requested
	some [p, r] in applicable
	rule_covers_asked(r)
	r.consent == "overridable"
	not input.override.justified == true
}

denials contains concat("", [m[0], ": ", p.id, " rule ", r.id, " requires consent: ", m[1]]) if {
	some [p, r] in applicable
	rule_covers_asked(r)
	needs_consent(r)
	not override_ok(r)
	some m in consent_problems
}

# Why no consent covers the request; one [code, words] per problem, naming
# the part that is missing.
consent_problems contains ["consent_missing", "no consent is recorded for this child"] if count(input.consents) == 0

consent_problems contains ["consent_refused_by_child", concat("", ["the child, assessed as competent, refused consent (", c.id, "); this prevails over any consent by a parent"])] if {
	some c in input.consents
	consent_status(c) == "refused"
	c.given_by == "self"
	input.purpose in c.purposes
}

consent_problems contains ["consent_refused", concat("", ["consent was refused (", c.id, ")"])] if {
	some c in input.consents
	c.given_by != "self"
	c.id in blocking_refusals
}

consent_problems contains ["consent_withdrawn", concat("", ["consent ", c.id, " was withdrawn"])] if {
	some c in input.consents
	consent_status(c) == "withdrawn"
}

consent_problems contains ["consent_expired", concat("", ["consent ", c.id, " has expired"])] if {
	some c in input.consents
	consent_status(c) == "expired"
}

consent_problems contains ["consent_not_yet_valid", concat("", ["consent ", c.id, " is not yet valid"])] if {
	some c in input.consents
	consent_status(c) == "not_yet_valid"
}

consent_problems contains ["consent_not_by_competent_child", concat("", ["consent ", c.id, " was given by a ", c.given_by, ", but the child is recorded as competent: only the child's own consent counts"])] if {
	some c in input.consents
	consent_status(c) == "active"
	not decider_ok(c)
}

consent_problems contains ["consent_purpose_not_covered", concat("", ["consent ", c.id, " does not cover purpose ", input.purpose])] if {
	some c in input.consents
	consent_status(c) == "active"
	decider_ok(c)
	not input.purpose in c.purposes
}

consent_problems contains ["consent_recipient_not_named", concat("", ["consent ", c.id, " does not name ", input.requester.partner, " as a recipient"])] if {
	some c in input.consents
	consent_status(c) == "active"
	decider_ok(c)
	input.purpose in c.purposes
	not recipient_named(c)
}

consent_problems contains ["consent_category_not_covered", concat("", ["consent ", c.id, " does not cover category ", cat])] if {
	some c in input.consents
	covering(c)
	some cat in asked
	not cat in c.categories
}
