package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// NotificationType is the typ of a signed notification.
const NotificationType = "trustgate-notification+jwt"

// MaxNotificationBytes bounds a signed notification.
const MaxNotificationBytes = 64 << 10

// Whom a notification is addressed to, in its As field.
const (
	AsProvider         = "provider"          // the agency whose record was disclosed
	AsLeadProfessional = "lead_professional" // the child's lead professional's agency
	AsMatched          = "matched"           // a practitioner of the agency is in a match
	AsInvolved         = "involved"          // the agency is involved with the child (an index lookup)
)

// The events a notification tells of.
const (
	EventDisclosed   = "record_disclosed"          // a record was disclosed
	EventLeadChanged = "lead_professional_changed" // the child's lead professional changed (to the previous lead; no categories or fields)
	EventMatch       = "involvement_match"         // another agency is concerned about the same child (Match)
	EventLookup      = "index_lookup"              // someone looked up who is involved with the child (Lookup)
)

// MatchNotice is what a match notification says: the recipient's own
// involvement (and practitioner), and the other agency's practitioner and
// how to reach them.
type MatchNotice struct {
	ID           string       `json:"id"`
	Involvement  string       `json:"involvement"`
	Practitioner string       `json:"practitioner"`
	Other        MatchedParty `json:"other"`
}

// MatchedParty is the other side of a match.
type MatchedParty struct {
	Partner      string `json:"partner"`
	Practitioner string `json:"practitioner"`
	Phone        string `json:"phone,omitempty"`
	Email        string `json:"email,omitempty"`
	Kind         string `json:"kind"`
}

// LookupNotice is what a lookup notification says beyond the requester
// and purpose: whether the lookup acknowledged a shielded service (told
// to the shielded service itself).
type LookupNotice struct {
	Shielded bool `json:"shielded"`
}

// Notification tells an agency that a child's record was disclosed through
// the gateway: who asked, for which purpose, under which protocol rule,
// which categories and fields left, and when. It carries no record value.
type Notification struct {
	// ID is stable across delivery attempts: receivers de-duplicate on it.
	ID string `json:"id"`
	// Seq is the recipient's own cursor: GET /v1/notifications?since=Seq
	// returns the ones after it.
	Seq uint64 `json:"seq"`
	// Recipient is the partner addressed; As says in which capacity.
	Recipient string `json:"recipient"`
	As        string `json:"as"`
	// LeadPractitioner is, when As is lead_professional, the practitioner
	// recorded as the child's lead professional.
	LeadPractitioner string `json:"lead_practitioner,omitempty"`

	Event     string      `json:"event"`
	Time      time.Time   `json:"time"`       // when the record was disclosed
	RequestID string      `json:"request_id"` // the gateway request (and its audit entry)
	Subject   string      `json:"subject"`    // the child's NHS number
	Provider  string      `json:"provider"`   // whose record was disclosed
	Requester Requester   `json:"requester"`
	Purpose   string      `json:"purpose"`
	Basis     string      `json:"basis,omitempty"` // no_consent_needed | consent | override
	Protocol  ProtocolRef `json:"protocol"`
	// Categories and Fields are what was disclosed ("category.field").
	Categories []string `json:"categories"`
	Fields     []string `json:"fields"`

	// Match and Lookup describe the index's events (EventMatch,
	// EventLookup); Provider, Protocol, Categories and Fields are then empty.
	// Episode is, for a lead professional change made in an early help
	// episode, the episode's id (the index's lead route names no NHS
	// number; the previous lead knows the episode).
	Episode string `json:"episode,omitempty"`

	Match  *MatchNotice  `json:"match,omitempty"`
	Lookup *LookupNotice `json:"lookup,omitempty"`
}

// notificationClaims is the payload of a signed notification: a JWT whose
// jti is the notification id and whose aud is the recipient.
type notificationClaims struct {
	Issuer       string       `json:"iss"`
	Audience     string       `json:"aud"`
	IssuedAt     int64        `json:"iat"`
	ID           string       `json:"jti"`
	Notification Notification `json:"notification"`
}

// SignNotification signs n for its recipient as a JWT of type
// NotificationType. Each call signs afresh (the key may have rotated);
// the id inside stays the same.
func SignNotification(ctx context.Context, s Signer, issuer string, n *Notification, now time.Time) (string, error) {
	if n.ID == "" || n.Recipient == "" {
		return "", fmt.Errorf("provider: notification: id and recipient are required")
	}
	payload, err := json.Marshal(notificationClaims{Issuer: issuer, Audience: n.Recipient, IssuedAt: now.Unix(), ID: n.ID, Notification: *n})
	if err != nil {
		return "", fmt.Errorf("provider: notification: %w", err)
	}
	return s.Sign(ctx, payload, NotificationType)
}

// VerifyNotification checks a signed notification addressed to recipient
// by issuer and returns it. Failures are *TokenError or wrap
// ErrKeysUnavailable. Receivers de-duplicate on the returned ID.
func VerifyNotification(ctx context.Context, keys KeySource, issuer, recipient, raw string) (*Notification, error) {
	payload, err := verifyJWS(ctx, keys, raw, NotificationType, MaxNotificationBytes)
	if err != nil {
		return nil, err
	}
	var c notificationClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, tokenErr(CodeMalformed, "payload is not a notification")
	}
	switch {
	case c.Issuer != issuer:
		return nil, tokenErr(CodeWrongIssuer, "iss must be %q", issuer)
	case c.Audience != recipient || c.Notification.Recipient != recipient:
		return nil, tokenErr(CodeWrongAudience, "the notification is not addressed to %q", recipient)
	case c.ID == "" || c.ID != c.Notification.ID:
		return nil, tokenErr(CodeMissingClaim, "jti must be the notification id")
	}
	return &c.Notification, nil
}
