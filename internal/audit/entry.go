package audit

import (
	"encoding/json"
	"fmt"
	"time"
)

// Kind classifies an audit entry.
type Kind string

// The kinds of entry. Every request that reaches the gateway produces
// exactly one entry of one of these kinds.
const (
	KindDecision    Kind = "decision"          // a decision was evaluated (allow or deny)
	KindRejected    Kind = "rejected"          // bad input: nothing evaluated
	KindAuthFailure Kind = "auth_failure"      // the caller could not be authenticated
	KindUnavailable Kind = "unavailable"       // a dependency (policy, keys) failed; nothing disclosed
	KindAccess      Kind = "access"            // an authenticated read of a non-decision endpoint
	KindConsent     Kind = "consent"           // a consent (or refusal) recorded, or a withdrawal recorded
	KindReview      Kind = "review"            // an IG review outcome recorded for a safeguarding override
	KindDisclosure  Kind = "disclosure"        // a record was fetched from the provider and disclosed (minimised)
	KindLead        Kind = "lead_professional" // a child's lead professional was recorded
	KindMigration   Kind = "migration"         // the log was carried over from an earlier format (Migrate): entry 1 only
	KindLookup      Kind = "lookup"            // the involvement index was looked up about a child (allowed or refused)
	KindInvolvement Kind = "involvement"       // an involvement, caseload, early help episode or its team changed in the index
	KindErasure     Kind = "erasure"           // retention erased index entries about a child (ids only)
)

// ConsentAction says what a KindConsent entry recorded.
const (
	ConsentGiven     = "given"     // a consent was recorded
	ConsentRefused   = "refused"   // a refusal of consent was recorded
	ConsentWithdrawn = "withdrawn" // a consent or refusal was withdrawn
)

// Entry is one record of the audit log. Fields that do not apply are empty.
// The subject is never stored in clear: Subject holds the keyed pseudonym.
//
// Seq, PrevHash and Hash are assigned by the log on append; callers leave them zero.
type Entry struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Kind      Kind      `json:"kind"`
	// Method and Path are the HTTP request line (path without query).
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	// Status is the HTTP status the caller received.
	Status int `json:"status,omitempty"`

	// Who asked (from the verified token; empty for auth failures unless
	// the token was readable enough to say who claimed to be asking).
	Requester    string `json:"requester,omitempty"`
	Practitioner string `json:"practitioner,omitempty"`
	Role         string `json:"role,omitempty"`
	TokenID      string `json:"token_id,omitempty"` // the token's jti, for replay detection across restarts

	Provider   string   `json:"provider,omitempty"`
	Purpose    string   `json:"purpose,omitempty"`
	Subject    string   `json:"subject,omitempty"` // pseudonym (HMAC-SHA256, hex), never the NHS number
	Categories []string `json:"categories,omitempty"`

	Decision          string   `json:"decision,omitempty"` // "allow" or "deny" for KindDecision
	AllowedCategories []string `json:"allowed_categories,omitempty"`
	Reasons           []string `json:"reasons,omitempty"`
	Protocol          string   `json:"protocol,omitempty"`
	ProtocolVersion   string   `json:"protocol_version,omitempty"`
	Rule              string   `json:"rule,omitempty"`
	LawfulBasis       string   `json:"lawful_basis,omitempty"`
	OverrideGround    string   `json:"override_ground,omitempty"`
	PolicyRevision    string   `json:"policy_revision,omitempty"`
	// InputResidual is, for a decision, the part of the policy input it
	// was decided on that the entry does not hold in fields of its own:
	// the requester's and provider's partner types, whether the provider is
	// a sensitive service, the consent records that bore on it, whether an
	// override was justified (a compact JSON object, policy.EncodeResidual;
	// never the NHS number or any record content). With the entry's time,
	// requester, practitioner, role, provider, purpose, categories and
	// override ground it rebuilds the exact input (decision.InputOf), so that
	// decisions can be replayed against a proposed revision. It is shown
	// and stored as a JSON string holding that text (Residual).
	InputResidual Residual `json:"input_residual,omitempty"`

	// Override marks a decision allowed on a safeguarding override (so an
	// auditor can filter overrides); ReviewID names the IG review item it
	// opened. The override's justification is kept in the review item, never
	// here: the log holds no free text.
	Override bool   `json:"override,omitempty"`
	ReviewID string `json:"review_id,omitempty"`
	// Consents are the consent ids a decision relied on; RefusalsOnRecord
	// the refusals on record for the child when an override allowed it.
	Consents         []string `json:"consents,omitempty"`
	RefusalsOnRecord []string `json:"refusals_on_record,omitempty"`
	// ConsentID and ConsentAction (given, refused, withdrawn) describe a
	// KindConsent entry; ReceiptID names the receipt issued for it.
	ConsentID     string `json:"consent_id,omitempty"`
	ConsentAction string `json:"consent_action,omitempty"`
	ReceiptID     string `json:"receipt_id,omitempty"`
	// ReviewOutcome (upheld, not_upheld) describes a KindReview entry.
	ReviewOutcome string `json:"review_outcome,omitempty"`

	// DisclosedCategories and DisclosedFields ("category.field") are what
	// a KindDisclosure entry passed on, and DisclosedSHA256 the SHA-256
	// (hex) of the record exactly as sent — never the record itself.
	DisclosedCategories []string `json:"disclosed_categories,omitempty"`
	DisclosedFields     []string `json:"disclosed_fields,omitempty"`
	DisclosedSHA256     string   `json:"disclosed_sha256,omitempty"`
	// ProviderError is why a fetch from the provider failed (a
	// fetch.Reason: timeout, unreachable, bad_status, ...).
	ProviderError string `json:"provider_error,omitempty"`
	// NotificationIDs are the access notifications a disclosure produced.
	NotificationIDs []string `json:"notification_ids,omitempty"`
	// LeadPartner and LeadPractitioner are the lead professional a
	// KindLead entry recorded for Subject.
	LeadPartner      string `json:"lead_partner,omitempty"`
	LeadPractitioner string `json:"lead_practitioner,omitempty"`

	// IndexAction says what a KindInvolvement, KindLookup or KindErasure
	// entry did to the involvement index (record, update, end, sync,
	// episode_open, episode_close, team_join, team_leave, lead, lookup,
	// erase); IndexIDs are the involvements, episodes and matches it
	// touched, erased or — for a lookup — showed (ids only, never
	// content); IndexCounts what a caseload sync or retention sweep did,
	// as "name=count" (created, updated, unchanged, ended, matches;
	// lapsed, children, erased).
	IndexAction string   `json:"index_action,omitempty"`
	IndexIDs    []string `json:"index_ids,omitempty"`
	IndexCounts []string `json:"index_counts,omitempty"`

	// Error says, for rejected, auth_failure and unavailable entries, what
	// was wrong (the field and the reason); it never holds a key or a token.
	Error string `json:"error,omitempty"`

	// Origin fields tie a migrated log to the file it was carried from
	// (Migrate, docs/audit-format.md §5). The KindMigration entry (entry
	// 1) records the old file's format, size, Merkle root, head chain hash
	// and its last signed checkpoint verbatim; every entry carried over
	// records its seq and entry hash (its RFC 9162 leaf hash) in the old
	// file.
	OriginFormat     int    `json:"origin_format,omitempty"`
	OriginSize       uint64 `json:"origin_size,omitempty"`
	OriginRoot       string `json:"origin_root,omitempty"`
	OriginCheckpoint string `json:"origin_checkpoint,omitempty"`
	OriginSeq        uint64 `json:"origin_seq,omitempty"`
	OriginHash       string `json:"origin_hash,omitempty"`

	// PrevSubject and PrevPractitioner are assigned by the log, like Seq
	// (callers leave them zero): the seq of the previous entry with the
	// same Subject (the same Practitioner), 0 for the first. They link each
	// child's entries, and each practitioner's, into lists the Merkle tree
	// commits to, so an access report shows its entries join up without a
	// gap, and queries by subject or practitioner follow them.
	PrevSubject      uint64 `json:"prev_subject,omitempty"`
	PrevPractitioner uint64 `json:"prev_practitioner,omitempty"`

	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Residual is a decision's recorded input residual: the compact JSON text
// policy.EncodeResidual wrote. It is shown and stored as a JSON string
// holding that text, not as a nested JSON value: its numbers (decimal
// seconds with up to nine fractional digits) keep every digit through
// any JSON parser and the canonical form (docs/audit-format.md), which
// would round them to doubles.
type Residual []byte

// MarshalJSON writes r as a JSON string of its text.
func (r Residual) MarshalJSON() ([]byte, error) { return json.Marshal(string(r)) }

// UnmarshalJSON reads a JSON string (null leaves r unchanged).
func (r *Residual) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("input_residual: %w", err)
	}
	*r = Residual(s)
	return nil
}
