package trustgate.sharing_test

import rego.v1

import data.trustgate.sharing

# ---------------------------------------------------------------------------
# Fixture: a small Trust. Times are nanoseconds; "now" is 1000.

now := 1000

fixture := {
	"settings": {"override_review_days": 5},
	"partners": {
		"csc": {"type": "local_authority", "sensitive": false},
		"edu": {"type": "local_authority", "sensitive": false},
		"gp1": {"type": "gp", "sensitive": false},
		"police": {"type": "police", "sensitive": false},
		"school1": {"type": "school", "sensitive": false},
		"school2": {"type": "school", "sensitive": false},
		"camhs": {"type": "health", "sensitive": true},
	},
	"protocols": [
		{
			"id": "isp-a", "version": "1", "title": "A", "digest": "x",
			"signatories": ["csc", "gp1", "police", "school1", "camhs"],
			"effective_from_ns": 0, "expires_ns": 2000, "purposes": ["safeguarding", "child_protection"],
			"effective_from": "1970-01-01", "ends": {"code": "protocol_expired", "words": "expired on 1970-01-02"},
			"rules": [
				rule("health-to-csc", ["gp1"], ["health", "gp"], [], ["local_authority"], ["social_worker", "team_manager"], ["safeguarding"], ["identity", "health_summary"], "overridable", ["social_worker"], ["risk_of_significant_harm"]),
				rule("police-to-csc", [], ["police"], [], ["local_authority"], ["social_worker"], ["safeguarding", "child_protection"], ["police_concerns", "household"], "not_required", [], []),
				rule("police-to-csc-id", [], ["police"], [], ["local_authority"], ["social_worker"], ["safeguarding"], ["police_concerns"], "not_required", [], []),
				rule("school-to-csc", [], ["school"], [], ["local_authority"], [], ["safeguarding"], ["school_attendance"], "required", [], []),
				rule("camhs-by-type", [], ["health"], [], ["local_authority"], ["social_worker"], ["child_protection"], ["mental_health"], "not_required", [], []),
				rule("camhs-by-id", ["camhs"], [], [], ["local_authority"], ["team_manager"], ["child_protection"], ["mental_health"], "overridable", ["team_manager"], ["section_47_enquiry"]),
			],
		},
		{
			"id": "isp-expired", "version": "1", "title": "Old", "digest": "y",
			"signatories": ["edu", "school2"],
			"effective_from_ns": 0, "expires_ns": 500, "purposes": ["education_welfare"],
			"effective_from": "1970-01-01", "ends": {"code": "protocol_expired", "words": "expired on 1970-01-01"},
			"rules": [rule("s2-to-edu", [], ["school"], [], ["local_authority"], [], ["education_welfare"], ["school_attendance"], "not_required", [], [])],
		},
		{
			"id": "isp-yj", "version": "2", "title": "Youth justice", "digest": "z",
			"signatories": ["csc", "police"],
			"effective_from_ns": 0, "expires_ns": 900, "purposes": ["youth_justice"],
			"effective_from": "1970-01-01", "ends": {"code": "protocol_withdrawn", "words": "withdrawn by police from 1970-01-01"},
			"rules": [rule("police-to-csc-yj", [], ["police"], [], ["local_authority"], [], ["youth_justice"], ["offending"], "not_required", [], [])],
		},
		{
			"id": "isp-future", "version": "1", "title": "Future", "digest": "f",
			"signatories": ["csc", "police"],
			"effective_from_ns": 1500, "expires_ns": 3000, "purposes": ["education_welfare"],
			"effective_from": "1970-01-03", "ends": {"code": "protocol_expired", "words": "expired on 1970-01-04"},
			"rules": [rule("police-to-csc-ew", [], ["police"], [], ["local_authority"], [], ["education_welfare"], ["offending"], "not_required", [], [])],
		},
	],
	"lapsed": [{
		"id": "isp-eh", "version": "1", "title": "Early help", "digest": "u",
		"signatories": ["csc", "school1"],
		"effective_from_ns": 0, "expires_ns": 2000, "purposes": ["early_help"],
		"cause": {"code": "signature_missing", "words": "signature of school1 missing"},
		"rules": [rule("school-to-csc-eh", [], ["school"], [], ["local_authority"], [], ["early_help"], ["school_attendance"], "required", [], [])],
	}],
}

rule(id, ppart, ptype, rpart, rtype, roles, purposes, cats, consent, oroles, ogrounds) := {
	"id": id,
	"providers": {"partners": ppart, "types": ptype, "roles": []},
	"requesters": {"partners": rpart, "types": rtype, "roles": roles},
	"purposes": purposes,
	"categories": cats,
	"fields": {},
	"lawful_basis": "test basis",
	"consent": consent,
	"override_roles": oroles,
	"override_grounds": ogrounds,
}

req(requester, rtype, role, provider, ptype, sensitive, purpose, cats) := {
	"time_ns": now,
	"requester": {"partner": requester, "type": rtype, "practitioner": "p1", "role": role},
	"provider": {"partner": provider, "type": ptype, "sensitive": sensitive},
	"purpose": purpose,
	"categories": cats,
	"consents": [],
	"override": {"ground": "", "justified": false},
}

gp_req := req("csc", "local_authority", "social_worker", "gp1", "gp", false, "safeguarding", ["identity", "health_summary"])

consent(id, by, competent, outcome, purposes, cats, partners) := {
	"id": id, "outcome": outcome, "given_by": by, "competent": competent,
	"purposes": purposes, "categories": cats,
	"recipients": {"partners": partners, "types": [], "protocols": []},
	"valid_from_ns": 0, "valid_until_ns": 0, "withdrawn_ns": 0,
}

parent_ok := consent("c1", "parent", false, "given", ["safeguarding"], ["identity", "health_summary"], ["csc"])

decide(inp) := d if {
	d := sharing.decision with input as inp with data.trustgate.protocols as fixture.protocols with data.trustgate.partners as fixture.partners with data.trustgate.settings as fixture.settings with data.trustgate.lapsed as fixture.lapsed
}

has_reason(d, fragment) if {
	some r in d.reasons
	contains(r, fragment)
}

# ---------------------------------------------------------------------------
# Protocol, parties, roles, purposes.

test_not_required_rule_allows if {
	d := decide(req("csc", "local_authority", "social_worker", "police", "police", false, "safeguarding", ["police_concerns", "household"]))
	d.allow
	d.categories == ["household", "police_concerns"]
	d.protocol == {"id": "isp-a", "version": "1", "rule": "police-to-csc", "title": "A"}
	d.basis == "no_consent_needed"
	d.lawful_basis == "test basis"
	d.obligations == [{"type": "notify_provider", "partner": "police"}]
}

test_best_rule_discloses_most if {
	# Both police rules match; the one covering both categories wins.
	d := decide(req("csc", "local_authority", "social_worker", "police", "police", false, "safeguarding", ["police_concerns", "household"]))
	d.protocol.rule == "police-to-csc"
}

test_partial_categories_withheld_with_reason if {
	d := decide(req("csc", "local_authority", "social_worker", "police", "police", false, "safeguarding", ["police_concerns", "offending"]))
	d.allow
	d.categories == ["police_concerns"]
	has_reason(d, "category offending withheld: rule")
}

test_no_category_covered_denies if {
	d := decide(req("csc", "local_authority", "social_worker", "police", "police", false, "safeguarding", ["offending"]))
	not d.allow
	d.categories == []
	has_reason(d, "does not cover categories offending")
}

test_type_binds_only_signatories if {
	# edu is a local authority but did not sign isp-a.
	d := decide(req("edu", "local_authority", "social_worker", "police", "police", false, "safeguarding", ["police_concerns"]))
	not d.allow
	has_reason(d, "no protocol in force is signed by both edu and police")
}

test_unsigned_provider_not_bound if {
	# school2 is a school but did not sign isp-a.
	d := decide(req("csc", "local_authority", "social_worker", "school2", "school", false, "safeguarding", ["school_attendance"]))
	not d.allow
	has_reason(d, "no protocol in force is signed by both csc and school2")
}

test_expired_protocol_plays_no_part if {
	d := decide(req("edu", "local_authority", "education_welfare_officer", "school2", "school", false, "education_welfare", ["school_attendance"]))
	not d.allow
	has_reason(d, "protocol_expired: isp-expired v1")
}

test_not_yet_effective_protocol_plays_no_part if {
	inp := object.union(req("csc", "local_authority", "social_worker", "police", "police", false, "safeguarding", ["police_concerns"]), {"time_ns": -1})
	d := decide(inp)
	not d.allow
	has_reason(d, "protocol_not_yet_in_force: isp-a v1 is not yet in force: effective from 1970-01-01")
}

test_expires_at_the_instant if {
	inp := object.union(req("csc", "local_authority", "social_worker", "police", "police", false, "safeguarding", ["police_concerns"]), {"time_ns": 2000})
	not decide(inp).allow
	decide(inp).reasons == ["protocol_expired: isp-a v1 is no longer in force: expired on 1970-01-02"]
	inp2 := object.union(inp, {"time_ns": 1999})
	decide(inp2).allow
}

test_wrong_role_denies if {
	d := decide(req("csc", "local_authority", "teacher", "police", "police", false, "safeguarding", ["police_concerns"]))
	not d.allow
	has_reason(d, "no rule of isp-a lets a local_authority (teacher) receive data from police for purpose safeguarding")
}

test_wrong_purpose_denies if {
	d := decide(req("csc", "local_authority", "social_worker", "police", "police", false, "early_help", ["police_concerns"]))
	not d.allow
	has_reason(d, "for purpose early_help")
}

test_role_free_rule_allows_any_role if {
	inp := object.union(req("csc", "local_authority", "anyone", "school1", "school", false, "safeguarding", ["school_attendance"]), {"consents": [consent("c9", "parent", false, "given", ["safeguarding"], ["school_attendance"], ["csc"])]})
	d := decide(inp)
	d.allow
	d.protocol.rule == "school-to-csc"
}

# ---------------------------------------------------------------------------
# Sensitive services.

test_sensitive_service_not_reached_by_type if {
	d := decide(req("csc", "local_authority", "social_worker", "camhs", "health", true, "child_protection", ["mental_health"]))
	not d.allow
	has_reason(d, "camhs is a sensitive service")
}

test_sensitive_service_by_id_with_override if {
	inp := object.union(
		req("csc", "local_authority", "team_manager", "camhs", "health", true, "child_protection", ["mental_health"]),
		{"override": {"ground": "section_47_enquiry", "justified": true}},
	)
	d := decide(inp)
	d.allow
	d.protocol.rule == "camhs-by-id"
	d.basis == "override"
}

# ---------------------------------------------------------------------------
# Consent.

test_consent_absent_denies if {
	d := decide(gp_req)
	not d.allow
	has_reason(d, "isp-a rule health-to-csc requires consent: no consent is recorded for this child")
}

test_consent_present_allows if {
	d := decide(object.union(gp_req, {"consents": [parent_ok]}))
	d.allow
	d.basis == "consent"
	d.consents == ["c1"]
	d.categories == ["health_summary", "identity"]
}

test_consent_expired_denies if {
	c := object.union(parent_ok, {"valid_until_ns": 900})
	d := decide(object.union(gp_req, {"consents": [c]}))
	not d.allow
	has_reason(d, "consent c1 has expired")
}

test_consent_not_yet_valid_denies if {
	c := object.union(parent_ok, {"valid_from_ns": 1500})
	d := decide(object.union(gp_req, {"consents": [c]}))
	not d.allow
	has_reason(d, "consent c1 is not yet valid")
}

test_consent_withdrawn_denies if {
	c := object.union(parent_ok, {"withdrawn_ns": 999})
	d := decide(object.union(gp_req, {"consents": [c]}))
	not d.allow
	has_reason(d, "consent c1 was withdrawn")
}

test_consent_wrong_purpose_denies if {
	c := object.union(parent_ok, {"purposes": ["early_help"]})
	d := decide(object.union(gp_req, {"consents": [c]}))
	not d.allow
	has_reason(d, "consent c1 does not cover purpose safeguarding")
}

test_consent_wrong_category_narrows if {
	c := object.union(parent_ok, {"categories": ["identity"]})
	d := decide(object.union(gp_req, {"consents": [c]}))
	d.allow
	d.categories == ["identity"]
	has_reason(d, "category health_summary withheld: no active consent covers it")
}

test_consent_no_asked_category_denies if {
	c := object.union(parent_ok, {"categories": ["immunisations"]})
	d := decide(object.union(gp_req, {"consents": [c]}))
	not d.allow
	has_reason(d, "consent c1 does not cover category health_summary")
	has_reason(d, "consent c1 does not cover category identity")
}

test_consent_wrong_recipient_denies if {
	c := object.union(parent_ok, {"recipients": {"partners": ["edu"], "types": [], "protocols": []}})
	d := decide(object.union(gp_req, {"consents": [c]}))
	not d.allow
	has_reason(d, "consent c1 does not name csc as a recipient")
}

test_consent_recipient_by_type if {
	c := object.union(parent_ok, {"recipients": {"partners": [], "types": ["local_authority"], "protocols": []}})
	decide(object.union(gp_req, {"consents": [c]})).allow
}

test_consent_recipient_by_protocol_signatories if {
	c := object.union(parent_ok, {"recipients": {"partners": [], "types": [], "protocols": ["isp-a"]}})
	decide(object.union(gp_req, {"consents": [c]})).allow
	c2 := object.union(parent_ok, {"recipients": {"partners": [], "types": [], "protocols": ["isp-expired"]}})
	not decide(object.union(gp_req, {"consents": [c2]})).allow
}

test_competent_child_refusal_prevails_over_parent if {
	refusal := consent("c2", "self", true, "refused", ["safeguarding"], ["identity", "health_summary"], ["csc"])
	d := decide(object.union(gp_req, {"consents": [parent_ok, refusal]}))
	not d.allow
	has_reason(d, "the child, assessed as competent, refused consent (c2)")
}

test_parent_cannot_consent_for_competent_child if {
	own := consent("c3", "self", true, "given", ["early_help"], ["identity"], ["csc"])
	d := decide(object.union(gp_req, {"consents": [parent_ok, own]}))
	not d.allow
	has_reason(d, "consent c1 was given by a parent, but the child is recorded as competent")
}

test_competent_child_own_consent_counts if {
	own := consent("c4", "self", true, "given", ["safeguarding"], ["identity", "health_summary"], ["csc"])
	d := decide(object.union(gp_req, {"consents": [own]}))
	d.allow
	d.consents == ["c4"]
}

test_parent_refusal_blocks_consent_sharing if {
	refusal := consent("c5", "parent", false, "refused", ["safeguarding"], ["identity"], ["csc"])
	d := decide(object.union(gp_req, {"consents": [parent_ok, refusal]}))
	not d.allow
	has_reason(d, "consent was refused (c5)")
}

# ---------------------------------------------------------------------------
# Safeguarding override.

override(ground, justified) := {"override": {"ground": ground, "justified": justified}}

test_override_permitted if {
	d := decide(object.union(gp_req, override("risk_of_significant_harm", true)))
	d.allow
	d.override
	d.basis == "override"
	d.categories == ["health_summary", "identity"]
	{"type": "ig_review", "within_days": 5} in d.obligations
	{"type": "notify_lead_professional"} in d.obligations
}

test_override_by_role_that_may_not if {
	inp := object.union(object.union(gp_req, override("risk_of_significant_harm", true)), {"requester": {"partner": "csc", "type": "local_authority", "practitioner": "p1", "role": "team_manager"}})
	d := decide(inp)
	not d.allow
	has_reason(d, "role team_manager may not invoke a safeguarding override under isp-a rule health-to-csc")
}

test_override_without_justification if {
	d := decide(object.union(gp_req, override("risk_of_significant_harm", false)))
	not d.allow
	has_reason(d, "needs a justification")
}

test_override_ground_not_listed if {
	d := decide(object.union(gp_req, override("emergency_medical", true)))
	not d.allow
	has_reason(d, "does not permit override ground emergency_medical")
}

test_override_on_consent_required_rule if {
	inp := object.union(req("csc", "local_authority", "social_worker", "school1", "school", false, "safeguarding", ["school_attendance"]), override("risk_of_significant_harm", true))
	d := decide(inp)
	not d.allow
	has_reason(d, "isp-a rule school-to-csc does not permit a safeguarding override")
}

test_override_only_for_rule_categories if {
	inp := object.union(object.union(gp_req, override("risk_of_significant_harm", true)), {"categories": ["identity", "mental_health"]})
	d := decide(inp)
	d.allow
	d.categories == ["identity"]
	has_reason(d, "category mental_health withheld")
}

test_refusal_does_not_block_override_but_is_shown if {
	refusal := consent("c6", "parent", false, "refused", ["safeguarding"], ["identity"], ["csc"])
	inp := object.union(object.union(gp_req, override("risk_of_significant_harm", true)), {"consents": [refusal]})
	d := decide(inp)
	d.allow
	d.basis == "override"
	d.refusals_on_record == ["c6"]
}

# ---------------------------------------------------------------------------
# Shape.

test_decision_always_defined if {
	d := sharing.decision with input as {} with data.trustgate.protocols as fixture.protocols with data.trustgate.partners as fixture.partners with data.trustgate.settings as fixture.settings
	d.allow == false
}

# ---------------------------------------------------------------------------
# A protocol that is not in force is named with its cause, even when the
# pair shares another protocol (whose purpose is not the point).

test_withdrawn_protocol_is_the_cause if {
	d := decide(req("csc", "local_authority", "social_worker", "police", "police", false, "youth_justice", ["offending"]))
	not d.allow
	d.reasons == ["protocol_withdrawn: isp-yj v2 is no longer in force: withdrawn by police from 1970-01-01"]
}

test_protocol_not_yet_in_force_is_the_cause if {
	d := decide(req("csc", "local_authority", "social_worker", "police", "police", false, "education_welfare", ["offending"]))
	d.reasons == ["protocol_not_yet_in_force: isp-future v1 is not yet in force: effective from 1970-01-03"]
}

test_expired_protocol_is_the_cause if {
	d := decide(req("edu", "local_authority", "education_welfare_officer", "school2", "school", false, "education_welfare", ["school_attendance"]))
	d.reasons == ["protocol_expired: isp-expired v1 is no longer in force: expired on 1970-01-01"]
}

test_unsigned_protocol_is_the_cause if {
	d := decide(req("csc", "local_authority", "early_help_worker", "school1", "school", false, "early_help", ["school_attendance"]))
	d.reasons == ["signature_missing: isp-eh v1 is not in force: signature of school1 missing"]
}

test_no_shared_protocol_has_a_code if {
	d := decide(req("csc", "local_authority", "social_worker", "school2", "school", false, "safeguarding", ["school_attendance"]))
	d.reasons == ["no_shared_protocol: no protocol in force is signed by both csc and school2"]
}

test_every_reason_has_a_code if {
	inputs := [
		req("csc", "local_authority", "social_worker", "police", "police", false, "safeguarding", ["police_concerns", "offending"]),
		gp_req,
		req("csc", "local_authority", "teacher", "police", "police", false, "safeguarding", ["police_concerns"]),
	]
	every inp in inputs {
		d := decide(inp)
		every r in d.reasons {
			regex.match(`^[a-z_]+: `, r)
		}
	}
}
