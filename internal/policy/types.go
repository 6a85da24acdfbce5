package policy

// Input is what a decision is about. Field names are the policy's contract
// (docs/architecture.md); the subject's NHS number is never part of it.
type Input struct {
	TimeNS     int64     `json:"time_ns"`
	Requester  Requester `json:"requester"`
	Provider   Provider  `json:"provider"`
	Purpose    string    `json:"purpose"`
	Categories []string  `json:"categories"`
	Consents   []Consent `json:"consents"`
	Override   Override  `json:"override"`
}

// Requester is the calling agency and practitioner, from the verified token.
type Requester struct {
	Partner      string `json:"partner"`
	Type         string `json:"type"`
	Practitioner string `json:"practitioner"`
	Role         string `json:"role"`
}

// Provider is the agency whose information is asked for.
type Provider struct {
	Partner   string `json:"partner"`
	Type      string `json:"type"`
	Sensitive bool   `json:"sensitive"`
}

// Override is a safeguarding override named in the request.
type Override struct {
	Ground    string `json:"ground"`
	Justified bool   `json:"justified"`
}

// Consent is one consent record that bears on the subject. The policy
// derives its status (active, expired, withdrawn, refused) from the fields.
type Consent struct {
	ID           string     `json:"id"`
	Outcome      string     `json:"outcome"`  // given | refused
	GivenBy      string     `json:"given_by"` // self | parent | carer | guardian
	Competent    bool       `json:"competent"`
	Purposes     []string   `json:"purposes"`
	Categories   []string   `json:"categories"`
	Recipients   Recipients `json:"recipients"`
	ValidFromNS  int64      `json:"valid_from_ns"`
	ValidUntilNS int64      `json:"valid_until_ns"` // 0: open-ended
	WithdrawnNS  int64      `json:"withdrawn_ns"`   // 0: not withdrawn
}

// Recipients names who a consent covers.
type Recipients struct {
	Partners  []string `json:"partners"`
	Types     []string `json:"types"`
	Protocols []string `json:"protocols"`
}

// Decision is the policy's answer.
type Decision struct {
	Allow            bool                `json:"allow"`
	Categories       []string            `json:"categories"`
	Reasons          []string            `json:"reasons"`
	Protocol         *ProtocolRef        `json:"protocol"`
	LawfulBasis      string              `json:"lawful_basis"`
	Basis            string              `json:"basis"` // no_consent_needed | consent | override
	Override         bool                `json:"override"`
	Consents         []string            `json:"consents"`
	Obligations      []Obligation        `json:"obligations"`
	Fields           map[string][]string `json:"fields,omitempty"`
	RefusalsOnRecord []string            `json:"refusals_on_record,omitempty"`
}

// ProtocolRef names the protocol rule that allowed a share.
type ProtocolRef struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Rule    string `json:"rule"`
	Title   string `json:"title"`
}

// Obligation is something the gateway must do because of the decision.
type Obligation struct {
	Type       string `json:"type"`
	Partner    string `json:"partner,omitempty"`
	WithinDays int    `json:"within_days,omitempty"`
}

// Data is what the policy knows besides the input.
type Data struct {
	Protocols []ProtocolData `json:"protocols"`
	// Lapsed are the protocols that parse but are not in force for a
	// reason of their own (a signature missing or bad, a withdrawal or an
	// end date passed, a failed check), each with its Cause: they never
	// grant anything; the policy names them when they are why a request
	// is denied.
	Lapsed   []ProtocolData         `json:"lapsed"`
	Partners map[string]PartnerData `json:"partners"`
	Settings Settings               `json:"settings"`
}

// ProtocolData is one signature-verified protocol. Dates are checked by the
// policy at decision time, so a protocol stops being in force at the instant
// it expires without a reload.
type ProtocolData struct {
	ID              string     `json:"id"`
	Version         string     `json:"version"`
	Title           string     `json:"title"`
	Digest          string     `json:"digest"`
	Signatories     []string   `json:"signatories"`
	EffectiveFromNS int64      `json:"effective_from_ns"`
	ExpiresNS       int64      `json:"expires_ns"`
	Purposes        []string   `json:"purposes"`
	Rules           []RuleData `json:"rules"`
	// EffectiveFrom is the effective date as the protocol states it (for
	// the words of a reason); Ends says why the protocol stops being in
	// force at ExpiresNS (it expires, or a signatory withdraws).
	EffectiveFrom string `json:"effective_from"`
	Ends          Cause  `json:"ends"`
	// Cause is why a lapsed protocol is not in force (Data.Lapsed only).
	Cause *Cause `json:"cause,omitempty"`
}

// Cause is why a protocol is not (or stops being) in force: a stable code
// (protocol_expired, protocol_withdrawn, protocol_not_yet_in_force,
// signature_missing, signature_invalid, protocol_invalid; docs/api.md)
// and plain words.
type Cause struct {
	Code  string `json:"code"`
	Words string `json:"words"`
}

// RuleData is one rule of a protocol.
type RuleData struct {
	ID              string              `json:"id"`
	Providers       PartiesData         `json:"providers"`
	Requesters      PartiesData         `json:"requesters"`
	Purposes        []string            `json:"purposes"`
	Categories      []string            `json:"categories"`
	Fields          map[string][]string `json:"fields"`
	LawfulBasis     string              `json:"lawful_basis"`
	Consent         string              `json:"consent"`
	OverrideRoles   []string            `json:"override_roles"`
	OverrideGrounds []string            `json:"override_grounds"`
}

// PartiesData names parties by partner id and by type (and, for
// requesters, roles; empty means any role).
type PartiesData struct {
	Partners []string `json:"partners"`
	Types    []string `json:"types"`
	Roles    []string `json:"roles"`
}

// PartnerData is what the policy knows of a partner.
type PartnerData struct {
	Type      string `json:"type"`
	Sensitive bool   `json:"sensitive"`
}

// Settings are the Trust's tunables the policy reads.
type Settings struct {
	OverrideReviewDays int `json:"override_review_days"`
}
