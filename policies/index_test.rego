package trustgate.index_test

import rego.v1

import data.trustgate.index

# ---------------------------------------------------------------------------
# Fixture: a small Trust. "now" is 1000 ns.

now := 1000

protocols := [{
	"id": "isp-x", "version": "2", "title": "X", "digest": "d",
	"signatories": ["csc", "school1", "gp1", "camhs"],
	"effective_from_ns": 0, "expires_ns": 2000, "purposes": ["safeguarding", "early_help", "child_protection"],
	"rules": [
		rule("csc-to-dsl", ["school"], ["designated_safeguarding_lead"], ["safeguarding"], ["cp_status", "involvement"], "not_required"),
		rule("eh-team", ["gp"], ["gp"], ["early_help"], ["early_help_assessment", "involvement"], "required"),
		rule("no-involvement", ["school"], ["teacher"], ["safeguarding"], ["school_attendance"], "not_required"),
	],
}]

partners := {
	"csc": {"type": "local_authority", "sensitive": false},
	"school1": {"type": "school", "sensitive": false},
	"school2": {"type": "school", "sensitive": false},
	"gp1": {"type": "gp", "sensitive": false},
	"camhs": {"type": "health", "sensitive": true},
}

rule(id, rtypes, roles, purposes, cats, consent) := {
	"id": id,
	"providers": {"partners": ["csc"], "types": [], "roles": []},
	"requesters": {"partners": [], "types": rtypes, "roles": roles},
	"purposes": purposes, "categories": cats, "fields": {},
	"lawful_basis": "test", "consent": consent,
	"override_roles": [], "override_grounds": [],
}

involved := [
	{"partner": "csc", "type": "local_authority", "shielded": false},
	{"partner": "gp1", "type": "gp", "shielded": false},
	{"partner": "camhs", "type": "health", "shielded": true},
]

ask(partner, ptype, role, purpose, own) := {
	"time_ns": now, "purpose": purpose,
	"requester": {"partner": partner, "type": ptype, "practitioner": "p1", "role": role},
	"own": own, "consents": [], "involved": involved,
}

not_own := {"involvement": false, "team": false}

look(inp) := d if {
	d := index.lookup with input as inp with data.trustgate.protocols as protocols with data.trustgate.partners as partners
}

has_reason(d, fragment) if {
	some r in d.reasons
	contains(r, fragment)
}

gp_consent := {
	"id": "c1", "outcome": "given", "given_by": "parent", "competent": false,
	"purposes": ["early_help"], "categories": ["involvement"],
	"recipients": {"partners": ["gp1"], "types": [], "protocols": []},
	"valid_from_ns": 0, "valid_until_ns": 0, "withdrawn_ns": 0,
}

# ---------------------------------------------------------------------------
# Who may look.

test_involved_practitioner_looks if {
	d := look(ask("gp1", "gp", "gp", "", {"involvement": true, "team": false}))
	d.allow
	d.basis == "involved"
	d.protocol == null
	d.shielded == "hidden"
	d.notify == []
	has_reason(d, "active involvement")
	has_reason(d, "shielded services are not shown")
}

test_team_member_looks if {
	d := look(ask("school2", "school", "teacher", "", {"involvement": false, "team": true}))
	d.allow
	d.basis == "involved"
	has_reason(d, "team around the child")
}

test_uninvolved_without_purpose_refused if {
	d := look(ask("school2", "school", "teacher", "", not_own))
	not d.allow
	d.basis == ""
	d.shielded == "hidden"
	d.notify == []
	has_reason(d, "no active involvement")
	has_reason(d, "no purpose was stated")
}

test_protocol_basis_looks_and_tells_the_involved if {
	d := look(ask("school1", "school", "designated_safeguarding_lead", "safeguarding", not_own))
	d.allow
	d.basis == "protocol"
	d.protocol == {"id": "isp-x", "rule": "csc-to-dsl", "version": "2", "title": "X"}
	has_reason(d, "protocol isp-x rule csc-to-dsl lets school1 receive")

	# Safeguarding: the shielded service is acknowledged and told; the
	# others are told because the DSL looked from outside the team.
	d.shielded == "acknowledged"
	d.notify == ["camhs", "csc", "gp1"]
}

test_non_signatory_refused if {
	d := look(ask("school2", "school", "designated_safeguarding_lead", "safeguarding", not_own))
	not d.allow
	has_reason(d, "no in-force protocol signed by school2")
}

test_role_not_named_refused if {
	d := look(ask("school1", "school", "teacher", "safeguarding", not_own))
	not d.allow
	has_reason(d, "lets a teacher of a school receive")
}

test_rule_without_involvement_category_gives_no_basis if {
	not look(ask("school1", "school", "teacher", "safeguarding", not_own)).allow
}

test_expired_protocol_gives_no_basis if {
	inp := object.union(ask("school1", "school", "designated_safeguarding_lead", "safeguarding", not_own), {"time_ns": 3000})
	not look(inp).allow
}

test_consent_required_without_consent_refused if {
	d := look(ask("gp1", "gp", "gp", "early_help", not_own))
	not d.allow
	has_reason(d, "rule eh-team needs the family's consent")
}

test_consent_required_with_consent_looks if {
	inp := object.union(ask("gp1", "gp", "gp", "early_help", not_own), {"consents": [gp_consent]})
	d := look(inp)
	d.allow
	d.basis == "protocol"
	d.protocol.rule == "eh-team"

	# Not a safeguarding lookup: nothing of the shielded service, and it is not told.
	d.shielded == "hidden"
	d.notify == ["csc"]
}

test_withdrawn_consent_gives_no_basis if {
	withdrawn := object.union(gp_consent, {"withdrawn_ns": 500})
	inp := object.union(ask("gp1", "gp", "gp", "early_help", not_own), {"consents": [withdrawn]})
	not look(inp).allow
}

# ---------------------------------------------------------------------------
# Shielded services.

test_ordinary_lookup_hides_shielded if {
	d := look(ask("csc", "local_authority", "social_worker", "early_help", {"involvement": true, "team": false}))
	d.shielded == "hidden"
	not "camhs" in d.notify
}

test_safeguarding_lookup_acknowledges_and_tells_shielded if {
	d := look(ask("csc", "local_authority", "social_worker", "safeguarding", {"involvement": true, "team": false}))
	d.allow
	d.shielded == "acknowledged"
	d.notify == ["camhs"]
	has_reason(d, "acknowledged without its name")
}

test_shielded_service_looking_is_not_told_of_itself if {
	d := look(ask("camhs", "health", "camhs_clinician", "safeguarding", {"involvement": true, "team": false}))
	d.allow
	d.shielded == "hidden"
	d.notify == []
}

test_no_shielded_involved_nothing_to_acknowledge if {
	inp := object.union(ask("csc", "local_authority", "social_worker", "safeguarding", {"involvement": true, "team": false}), {"involved": [involved[0], involved[1]]})
	look(inp).shielded == "hidden"
}

# ---------------------------------------------------------------------------
# Matches.

side(partner, shielded, share) := {"partner": partner, "type": "x", "kind": "health", "shielded": shielded, "share_with_matches": share}

match(a, b) := m if {
	m := index.match with input as {"time_ns": now, "a": a, "b": b}
}

test_match_tells_both if {
	m := match(side("csc", false, false), side("gp1", false, false))
	m.tell_a
	m.tell_b
	"csc is told of gp1" in m.reasons
}

test_match_shielded_hears_of_others_not_the_reverse if {
	m := match(side("csc", false, false), side("camhs", true, false))
	not m.tell_a
	m.tell_b
	"camhs is a shielded service: csc is not told of it" in m.reasons
}

test_match_shielded_shareable_is_named if {
	m := match(side("camhs", true, true), side("csc", false, false))
	m.tell_a
	m.tell_b
}
