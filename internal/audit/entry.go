package audit

import "time"

// Kind classifies an audit entry.
type Kind string

// The kinds of entry. Every request that reaches the gateway produces
// exactly one entry of one of these kinds.
const (
	KindDecision    Kind = "decision"     // a decision was evaluated (allow or deny)
	KindRejected    Kind = "rejected"     // bad input: nothing evaluated
	KindAuthFailure Kind = "auth_failure" // the caller could not be authenticated
	KindUnavailable Kind = "unavailable"  // a dependency (policy, keys) failed; nothing disclosed
	KindAccess      Kind = "access"       // an authenticated read of a non-decision endpoint
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

	// Error says, for rejected, auth_failure and unavailable entries, what
	// was wrong (the field and the reason); it never holds a key or a token.
	Error string `json:"error,omitempty"`

	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}
