# METADATA
# title: Who else is involved with a child? The involvement index's rules
# description: >-
#   Decides a lookup of the involvement index (who may look, what they see
#   of the shielded services, which involved agencies are told) and, for a
#   match between two agencies concerned about the same child, who is told
#   of whom. Default deny; nothing shielded is shown by default. Data:
#   data.trustgate.protocols, data.trustgate.partners. Input of a lookup:
#   {"time_ns", "purpose" ("" when none), "requester": {"partner", "type",
#   "practitioner", "role"}, "own": {"involvement", "team"}, "consents":
#   [as for a decision], "involved": [{"partner", "type", "shielded"}]}.
#   Input of a match: {"time_ns", "a": party, "b": party}, a party being
#   {"partner", "type", "kind", "shielded", "share_with_matches"}; a is the
#   concern just recorded, b the one already on the index.
#   docs/index.md explains the choices.
package trustgate.index

import rego.v1

import data.trustgate.sharing

# ---------------------------------------------------------------------------
# The lookup decision.

default lookup := {
	"allow": false,
	"reasons": ["no lookup decision could be made: refused"],
	"basis": "",
	"protocol": null,
	"shielded": "hidden",
	"notify": [],
}

# The first of these that applies. The common cases come first and are
# decided from the input's own flags and purpose alone (no protocol,
# consent, time or involved agency is read): a practitioner with an active
# involvement of their own, or in the team around the child of an open
# early help episode, looking for no safeguarding purpose, sees the
# involvements, nothing of the shielded services, and tells no one. Only
# a safeguarding lookup reads who is involved, and only a practitioner who
# is not involved is held to the protocols.
lookup := {
	"allow": true,
	"reasons": [own_involvement, shielded_hidden],
	"basis": "involved",
	"protocol": null,
	"shielded": "hidden",
	"notify": [],
} if {
	input.own.involvement == true
	not input.purpose in safeguarding_purposes
} else := {
	"allow": true,
	"reasons": [own_team, shielded_hidden],
	"basis": "involved",
	"protocol": null,
	"shielded": "hidden",
	"notify": [],
} if {
	input.own.team == true
	not input.purpose in safeguarding_purposes
} else := {
	"allow": true,
	"reasons": [own_reason, shielded_reason],
	"basis": "involved",
	"protocol": null,
	"shielded": shielded_view,
	"notify": sort(shielded_told),
} if {
	involved
} else := {
	"allow": true,
	"reasons": [protocol_reason, shielded_reason],
	"basis": "protocol",
	"protocol": protocol_ref,
	"shielded": shielded_view,
	"notify": sort(shielded_told | others_told),
} if {
	count(receiving) > 0
} else := {
	"allow": false,
	"reasons": refusal_reasons,
	"basis": "",
	"protocol": null,
	"shielded": "hidden",
	"notify": [],
}

# Who may look: a practitioner with an active involvement of their own, or
# in the team around the child of an open early help episode ...
involved if input.own.involvement == true

involved if input.own.team == true

own_involvement := "the practitioner has an active involvement with the child"

own_team := "the practitioner is in the team around the child of the open early help episode"

own_reason := own_involvement if input.own.involvement == true

else := own_team

# ... or a practitioner whose agency an in-force protocol it signed lets
# receive the child's involvement (the category "involvement") for the
# stated purpose: the rule names the agency (or its type) and the role
# among its requesters, and the consent the rule requires is on record.
receiving contains [p.id, r.id, p.version, p.title] if {
	input.purpose != ""
	some p in in_force
	input.requester.partner in p.signatories
	some r in p.rules
	"involvement" in r.categories
	input.purpose in r.purposes
	sharing.requester_party(r)
	sharing.role_ok(r)
	consent_ok(r)
}

# The protocols in force at the lookup's time (the sharing policy names
# them by their index in data.trustgate.protocols).
in_force contains data.trustgate.protocols[i] if some i in sharing.in_force_ix

# A lookup carries no override: a rule that needs consent (or overrides
# it) gives a basis only with an active consent covering the agency and
# the purpose, and no refusal that blocks it.
consent_ok(r) if r.consent == "not_required"

consent_ok(r) if {
	r.consent in {"required", "overridable"}
	count(sharing.blocking_refusals) == 0
	not sharing.competent_refusal
	some c in input.consents
	sharing.covering(c)
}

# Rules that would give a basis but for the consent (named in a refusal).
wanting_consent contains [p.id, r.id] if {
	input.purpose != ""
	some p in in_force
	input.requester.partner in p.signatories
	some r in p.rules
	"involvement" in r.categories
	input.purpose in r.purposes
	sharing.requester_party(r)
	sharing.role_ok(r)
	not consent_ok(r)
}

chosen := sort(receiving)[0]

protocol_ref := {"id": chosen[0], "rule": chosen[1], "version": chosen[2], "title": chosen[3]}

protocol_reason := sprintf("protocol %s rule %s lets %s receive the child's involvement for %s", [chosen[0], chosen[1], input.requester.partner, input.purpose])

# ---------------------------------------------------------------------------
# Shielded services. An ordinary lookup shows nothing of them: not their
# names, not that one is involved. A lookup for safeguarding or child
# protection acknowledges that a shielded service is involved, without
# naming it, and tells each shielded service of the enquiry (who asked,
# for what), so that it can decide to make contact.

safeguarding_purposes := {"safeguarding", "child_protection"}

# An ordinary lookup stops at the purpose: the shielded services are not
# looked at.
default shielded_view := "hidden"

shielded_view := "acknowledged" if {
	input.purpose in safeguarding_purposes
	count(shielded_others) > 0
}

shielded_others contains v.partner if {
	some v in input.involved
	v.shielded == true
	v.partner != input.requester.partner
}

shielded_hidden := "shielded services are not shown in this lookup"

shielded_reason := "a shielded service is involved: it is acknowledged without its name and told of this enquiry" if {
	shielded_view == "acknowledged"
} else := shielded_hidden

# Who is told of the lookup: the shielded services acknowledged, and, when
# the requester looked on a protocol's basis (from outside the team), the
# other agencies involved. A practitioner who is involved looking at their
# own team tells no one.
shielded_told := shielded_others if {
	shielded_view == "acknowledged"
} else := set()

others_told contains v.partner if {
	some v in input.involved
	not v.shielded == true
	v.partner != input.requester.partner
}

# ---------------------------------------------------------------------------
# Refusals, each reason in plain words.

refusal_reasons := array.concat(
	["the practitioner has no active involvement with the child and is not in the team around the child of an open early help episode"],
	protocol_refusals,
)

protocol_refusals := ["no purpose was stated, so no protocol can give a basis (add ?purpose=...)"] if input.purpose == ""

protocol_refusals := r if {
	input.purpose != ""
	count(wanting_consent) > 0
	r := [sprintf("protocol %s rule %s needs the family's consent to %s covering %s, and none is on record (or a refusal blocks it)", [w[0], w[1], input.purpose, input.requester.partner]) | some w in sort(wanting_consent)]
}

protocol_refusals := [sprintf("no in-force protocol signed by %s lets a %s of a %s receive the child's involvement for %s", [input.requester.partner, input.requester.role, input.requester.type, input.purpose])] if {
	input.purpose != ""
	count(wanting_consent) == 0
}

# ---------------------------------------------------------------------------
# Matches. Each practitioner of a match is told of the other, except that
# no one is told of a shielded service unless its involvement was recorded
# as shareable with matches; a shielded service is always told of the
# others.

default tell(_, _) := false

tell(_, other) if not other.shielded == true

tell(_, other) if {
	other.shielded == true
	other.share_with_matches == true
}

match := {
	"tell_a": tell(input.a, input.b),
	"tell_b": tell(input.b, input.a),
	"reasons": sort([m | some m in match_reasons]),
}

match_reasons contains sprintf("%s is told of %s", [input.a.partner, input.b.partner]) if tell(input.a, input.b)

match_reasons contains sprintf("%s is told of %s", [input.b.partner, input.a.partner]) if tell(input.b, input.a)

match_reasons contains sprintf("%s is a shielded service: %s is not told of it", [input.b.partner, input.a.partner]) if not tell(input.a, input.b)

match_reasons contains sprintf("%s is a shielded service: %s is not told of it", [input.a.partner, input.b.partner]) if not tell(input.b, input.a)
