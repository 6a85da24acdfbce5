package trustgate.consent_test

import rego.v1

import data.trustgate.consent

# Fixture: a small Trust; "now" is 1000.
fixture := {
	"partners": {
		"csc": {"type": "local_authority", "sensitive": false},
		"edu": {"type": "local_authority", "sensitive": false},
		"gp1": {"type": "gp", "sensitive": false},
		"police": {"type": "police", "sensitive": false},
		"camhs": {"type": "health", "sensitive": true},
		"hosp": {"type": "health", "sensitive": false},
	},
	"protocols": [
		{
			"id": "isp-a", "version": "1", "title": "A", "digest": "x",
			"signatories": ["csc", "gp1", "police", "camhs", "hosp"],
			"effective_from_ns": 0, "expires_ns": 2000, "purposes": ["safeguarding"],
			"rules": [
				rule("health-to-csc", [], ["health", "gp"], [], ["local_authority"], "overridable"),
				rule("police-to-csc", [], ["police"], [], ["local_authority"], "not_required"),
			],
		},
		{
			"id": "isp-old", "version": "1", "title": "Old", "digest": "y",
			"signatories": ["edu", "gp1"],
			"effective_from_ns": 0, "expires_ns": 500, "purposes": ["early_help"],
			"rules": [rule("gp-to-edu", [], ["gp"], [], ["local_authority"], "required")],
		},
	],
}

rule(id, ppart, ptype, rpart, rtype, consent) := {
	"id": id,
	"providers": {"partners": ppart, "types": ptype, "roles": []},
	"requesters": {"partners": rpart, "types": rtype, "roles": []},
	"purposes": ["safeguarding"], "categories": ["identity"], "fields": {},
	"lawful_basis": "test", "consent": consent, "override_roles": [], "override_grounds": [],
}

ask(action, partner, ptype, role) := {
	"action": action, "time_ns": 1000,
	"requester": {"partner": partner, "type": ptype, "practitioner": "p1", "role": role},
	"recorded_by": [],
}

permit(inp) := p if {
	p := consent.permission with input as inp with data.trustgate.protocols as fixture.protocols with data.trustgate.partners as fixture.partners
}

has_reason(p, fragment) if {
	some r in p.reasons
	contains(r, fragment)
}

# ---------------------------------------------------------------------------
# Recording.

test_practitioner_of_a_consent_party_may_record if {
	p := permit(ask("record", "csc", "local_authority", "social_worker"))
	p.allow
	has_reason(p, "csc is a party to isp-a rule health-to-csc")
}

test_provider_side_party_may_record if {
	p := permit(ask("record", "gp1", "gp", "gp"))
	p.allow
}

test_role_that_may_not_record if {
	p := permit(ask("record", "csc", "local_authority", "auditor"))
	not p.allow
	has_reason(p, "role auditor may not record consent")
}

test_police_officer_may_not_record if {
	p := permit(ask("record", "police", "police", "police_officer"))
	not p.allow
	has_reason(p, "role police_officer may not record consent")

	# police-to-csc needs no consent: police is no party to a consent rule.
	has_reason(p, "police is not a party to any rule that depends on consent")
}

test_partner_only_in_expired_protocol_may_not_record if {
	p := permit(ask("record", "edu", "local_authority", "early_help_worker"))
	not p.allow
	has_reason(p, "edu is not a party to any rule that depends on consent")
}

test_sensitive_service_not_a_party_by_type if {
	p := permit(ask("record", "camhs", "health", "camhs_clinician"))
	not p.allow
}

test_protocol_not_yet_in_force_gives_no_standing if {
	inp := object.union(ask("record", "csc", "local_authority", "social_worker"), {"time_ns": -5})
	not permit(inp).allow
}

# ---------------------------------------------------------------------------
# Withdrawing.

test_any_practitioner_role_may_record_a_withdrawal if {
	permit(ask("withdraw", "edu", "local_authority", "early_help_worker")).allow
	permit(ask("withdraw", "csc", "local_authority", "ig_lead")).allow
}

test_withdrawal_refused_to_other_roles if {
	p := permit(ask("withdraw", "police", "police", "police_officer"))
	not p.allow
	has_reason(p, "role police_officer may not record a withdrawal")
}

# ---------------------------------------------------------------------------
# Reading.

test_oversight_roles_read_every_history if {
	permit(ask("read", "edu", "local_authority", "ig_lead")).allow
	p := permit(ask("read", "police", "police", "auditor"))
	p.allow
	has_reason(p, "role auditor may read every child's consent history")
}

test_party_to_consent_rule_reads if {
	p := permit(ask("read", "hosp", "health", "paediatrician"))
	p.allow
	has_reason(p, "it is a party to isp-a rule health-to-csc")
}

test_recording_partner_reads_what_it_recorded if {
	inp := object.union(ask("read", "edu", "local_authority", "early_help_worker"), {"recorded_by": ["edu"]})
	p := permit(inp)
	p.allow
	has_reason(p, "it has recorded consent for the child")
}

test_non_party_may_not_read if {
	p := permit(ask("read", "edu", "local_authority", "early_help_worker"))
	not p.allow
	has_reason(p, "edu is not a party to any rule that depends on consent")
}

test_other_roles_may_not_read if {
	p := permit(ask("read", "police", "police", "police_officer"))
	not p.allow
	has_reason(p, "role police_officer may not read consent histories")
}

# ---------------------------------------------------------------------------
# Shape.

test_unknown_action_refused if {
	p := permit(ask("erase", "csc", "local_authority", "social_worker"))
	not p.allow
	has_reason(p, "action erase is not one of read, record, withdraw")
}

test_permission_always_defined if {
	p := consent.permission with input as {} with data.trustgate.protocols as fixture.protocols with data.trustgate.partners as fixture.partners
	p.allow == false
	count(p.reasons) > 0
}
