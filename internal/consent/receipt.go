package consent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Receipt constants.
const (
	// ReceiptVersion is the Kantara Consent Receipt specification the
	// receipt's fields are modelled on.
	ReceiptVersion = "KI-CR-v1.1.0"
	// ReceiptTyp is the JWS "typ" header of a receipt.
	ReceiptTyp = "consent-receipt+jws"
	// DefaultJurisdiction: England (ISO 3166-2), under the UK GDPR and the
	// Data Protection Act 2018.
	DefaultJurisdiction = "GB-ENG"
)

// Receipt types (the trustgate extension's receipt_type).
const (
	ReceiptConsent    = "consent"
	ReceiptWithdrawal = "withdrawal"
)

// ReceiptAlgorithms is the closed list of signature algorithms a receipt
// may be signed with.
var ReceiptAlgorithms = []jwa.SignatureAlgorithm{jwa.ES256, jwa.EdDSA}

// Receipt is the signed payload of a consent receipt. Its fields follow the
// Kantara Initiative Consent Receipt Specification v1.1 (camelCase names as
// in the specification); what the specification has no field for is under
// "trustgate".
type Receipt struct {
	Version          string       `json:"version"`
	Jurisdiction     string       `json:"jurisdiction"`
	ConsentTimestamp int64        `json:"consentTimestamp"` // Unix seconds
	CollectionMethod string       `json:"collectionMethod"`
	ConsentReceiptID string       `json:"consentReceiptID"`
	Language         string       `json:"language"`
	PIIPrincipalID   string       `json:"piiPrincipalId"` // the gateway's pseudonym of the child's NHS number
	PIIControllers   []Controller `json:"piiControllers"`
	PolicyURL        string       `json:"policyUrl"`
	Services         []Service    `json:"services"`
	Sensitive        bool         `json:"sensitive"`
	SPICat           []string     `json:"spiCat"`
	Trustgate        Extension    `json:"trustgate"`
}

// Controller is a data controller the receipt names: the recording agency
// and each partner the consent names as a recipient.
type Controller struct {
	PIIController string `json:"piiController"` // the partner's name
	PartnerID     string `json:"partnerId"`
	OnBehalf      bool   `json:"onBehalf"`
	Role          string `json:"role"` // "recording agency" or "recipient"
}

// Service groups the purposes of the receipt.
type Service struct {
	Service  string    `json:"service"`
	Purposes []Purpose `json:"purposes"`
}

// Purpose is one purpose of the consent with its scope.
type Purpose struct {
	Purpose              string   `json:"purpose"`
	PurposeCategory      []string `json:"purposeCategory"`
	ConsentType          string   `json:"consentType"`
	PIICategory          []string `json:"piiCategory"`
	PrimaryPurpose       bool     `json:"primaryPurpose"`
	Termination          string   `json:"termination"`
	ThirdPartyDisclosure bool     `json:"thirdPartyDisclosure"`
	ThirdPartyName       string   `json:"thirdPartyName,omitempty"`
}

// Extension is what the Kantara fields do not carry.
type Extension struct {
	Issuer      string      `json:"iss"`
	IssuedAt    int64       `json:"iat"`
	Trust       string      `json:"trust"`
	ReceiptType string      `json:"receipt_type"` // consent | withdrawal
	ConsentID   string      `json:"consent_id"`
	Outcome     string      `json:"outcome"`
	GivenBy     string      `json:"given_by"`
	Competence  *Competence `json:"competence,omitempty"`
	Recipients  Recipients  `json:"recipients"`
	ValidFrom   string      `json:"valid_from"`
	ValidUntil  string      `json:"valid_until,omitempty"`
	// Obtained, EvidenceRef and RecordedBy describe the event the receipt
	// is for: the consent, or the withdrawal.
	Obtained    string `json:"obtained"`
	EvidenceRef string `json:"evidence_ref,omitempty"`
	RecordedBy  Actor  `json:"recorded_by"`
	// ConsentRecordedBy, on a withdrawal receipt, is who recorded the
	// consent it ends.
	ConsentRecordedBy *Actor `json:"consent_recorded_by,omitempty"`
	// Withdraws names the consent a withdrawal receipt ends.
	Withdraws   string `json:"withdraws,omitempty"`
	WithdrawnBy string `json:"withdrawn_by,omitempty"`
	WithdrawnAt string `json:"withdrawn_at,omitempty"`
}

// Directory is what a receipt needs to know of the Trust.
type Directory interface {
	PartnerName(id string) string
	PurposeDescription(id string) string
	SpecialCategory(id string) bool
}

// ReceiptContext is the issuing gateway and the Trust as of issue.
type ReceiptContext struct {
	Issuer       string // the gateway id
	Jurisdiction string // empty: DefaultJurisdiction
	TrustID      string
	TrustName    string
	Directory    Directory
	// Recipients are the partner ids the consent's recipients resolve to
	// now (named partners, partners of the named types, signatories of the
	// named protocols), sorted.
	Recipients []string
}

// NewReceipt builds the receipt of a newly recorded consent or refusal.
func NewReceipt(r *Record, rc ReceiptContext) *Receipt {
	rcpt := base(r, rc, r.ReceiptID, r.RecordedAt, ReceiptConsent, r.RecordedBy)
	term := "until withdrawn"
	if !r.ValidUntil.IsZero() {
		term = "until " + r.ValidUntil.UTC().Format(time.RFC3339) + " or until withdrawn, whichever is sooner"
	}
	if r.Outcome == Refused {
		term = "a refusal of consent: it stands until it is withdrawn"
	}
	term += "; a withdrawal stops future sharing and does not undo what was lawfully shared before it"
	rcpt.CollectionMethod = fmt.Sprintf("%s %s by %s, recorded by %s (%s)", r.Obtained, decision(r.Outcome), r.GivenBy, r.RecordedBy.Partner, r.RecordedBy.Practitioner)
	rcpt.setTermination(term)
	return rcpt
}

// NewWithdrawalReceipt builds the receipt of a withdrawal of r (r.Withdrawal
// must be set).
func NewWithdrawalReceipt(r *Record, rc ReceiptContext) *Receipt {
	w := r.Withdrawal
	rcpt := base(r, rc, w.ReceiptID, w.RecordedAt, ReceiptWithdrawal, w.RecordedBy)
	rcpt.CollectionMethod = fmt.Sprintf("%s withdrawal by %s, recorded by %s (%s)", w.Obtained, w.By, w.RecordedBy.Partner, w.RecordedBy.Practitioner)
	rcpt.Trustgate.Obtained = w.Obtained
	rcpt.Trustgate.ConsentRecordedBy = &r.RecordedBy
	rcpt.Trustgate.Withdraws = r.ID
	rcpt.Trustgate.WithdrawnBy = w.By
	rcpt.Trustgate.WithdrawnAt = w.At.UTC().Format(time.RFC3339)
	rcpt.Trustgate.EvidenceRef = w.EvidenceRef
	rcpt.setTermination(fmt.Sprintf("%s %s was withdrawn at %s: no decision evaluated after the withdrawal was recorded relies on it; what was lawfully shared before is not undone",
		decision(r.Outcome), r.ID, rcpt.Trustgate.WithdrawnAt))
	return rcpt
}

func decision(outcome string) string {
	if outcome == Refused {
		return "refusal"
	}
	return "consent"
}

// base builds what consent and withdrawal receipts share; recorder is who
// recorded the event the receipt is for.
func base(r *Record, rc ReceiptContext, id string, at time.Time, typ string, recorder Actor) *Receipt {
	j := rc.Jurisdiction
	if j == "" {
		j = DefaultJurisdiction
	}
	dir := rc.Directory
	controllers := []Controller{{PIIController: dir.PartnerName(recorder.Partner), PartnerID: recorder.Partner, Role: "recording agency"}}
	if r.RecordedBy.Partner != recorder.Partner {
		controllers = append(controllers, Controller{PIIController: dir.PartnerName(r.RecordedBy.Partner), PartnerID: r.RecordedBy.Partner, Role: "recorded the consent"})
	}
	var names []string
	for _, p := range rc.Recipients {
		names = append(names, dir.PartnerName(p))
		if p != recorder.Partner && p != r.RecordedBy.Partner {
			controllers = append(controllers, Controller{PIIController: dir.PartnerName(p), PartnerID: p, Role: "recipient"})
		}
	}
	var spi []string
	for _, c := range r.Categories {
		if dir.SpecialCategory(c) {
			spi = append(spi, c)
		}
	}
	purposes := make([]Purpose, len(r.Purposes))
	for i, p := range r.Purposes {
		purposes[i] = Purpose{
			Purpose:              dir.PurposeDescription(p),
			PurposeCategory:      []string{p},
			ConsentType:          "EXPLICIT",
			PIICategory:          nz(r.Categories),
			PrimaryPurpose:       i == 0,
			ThirdPartyDisclosure: r.Outcome == Given && len(rc.Recipients) > 0,
			ThirdPartyName:       strings.Join(names, "; "),
		}
	}
	ext := Extension{
		Issuer: rc.Issuer, IssuedAt: at.Unix(), Trust: rc.TrustID, ReceiptType: typ,
		ConsentID: r.ID, Outcome: r.Outcome, GivenBy: r.GivenBy, Competence: r.Competence,
		Recipients: Recipients{Partners: nz(r.Recipients.Partners), Types: nz(r.Recipients.Types), Protocols: nz(r.Recipients.Protocols)},
		ValidFrom:  r.ValidFrom.UTC().Format(time.RFC3339), Obtained: r.Obtained, EvidenceRef: r.EvidenceRef, RecordedBy: recorder,
	}
	if !r.ValidUntil.IsZero() {
		ext.ValidUntil = r.ValidUntil.UTC().Format(time.RFC3339)
	}
	return &Receipt{
		Version:          ReceiptVersion,
		Jurisdiction:     j,
		ConsentTimestamp: at.Unix(),
		ConsentReceiptID: id,
		Language:         "en",
		PIIPrincipalID:   r.Subject,
		PIIControllers:   controllers,
		PolicyURL:        "urn:trustgate:" + rc.TrustID + ":protocols",
		Services:         []Service{{Service: rc.TrustName + ": information sharing between partner agencies", Purposes: purposes}},
		Sensitive:        len(spi) > 0,
		SPICat:           nz(spi),
		Trustgate:        ext,
	}
}

func (r *Receipt) setTermination(t string) {
	for i := range r.Services {
		for j := range r.Services[i].Purposes {
			r.Services[i].Purposes[j].Termination = t
		}
	}
}

// Signer signs payloads as compact JWS with the gateway's key
// (keys.Signer).
type Signer interface {
	Sign(ctx context.Context, payload []byte, typ string) (string, error)
}

// Sign returns the receipt as a compact JWS signed by s.
func (r *Receipt) Sign(ctx context.Context, s Signer) (string, error) {
	payload, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("consent: encode receipt: %w", err)
	}
	out, err := s.Sign(ctx, payload, ReceiptTyp)
	if err != nil {
		return "", fmt.Errorf("consent: sign receipt: %w", err)
	}
	return out, nil
}

// VerifyReceipt checks a compact JWS receipt against keys (the gateway's
// published key set) and returns its payload. It accepts only the compact
// serialisation, one signature, an algorithm in ReceiptAlgorithms, typ
// ReceiptTyp, a kid found in keys, and no header that would name another
// key (jku, jwk, x5u, x5c) or demand extensions (crit). Any failure wraps
// ErrReceipt.
func VerifyReceipt(compact []byte, keys jwk.Set) (*Receipt, error) {
	compact = bytes.TrimSpace(compact)
	if bytes.Count(compact, []byte(".")) != 2 || bytes.ContainsAny(compact, "{} \n") {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrReceipt)
	}
	msg, err := jws.Parse(compact, jws.WithCompact())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReceipt, err)
	}
	if len(msg.Signatures()) != 1 {
		return nil, fmt.Errorf("%w: %d signatures, want 1", ErrReceipt, len(msg.Signatures()))
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	alg := h.Algorithm()
	if !slices.Contains(ReceiptAlgorithms, alg) {
		return nil, fmt.Errorf("%w: algorithm %q is not allowed (ES256, EdDSA)", ErrReceipt, alg)
	}
	if h.Type() != ReceiptTyp {
		return nil, fmt.Errorf("%w: typ %q is not %s", ErrReceipt, h.Type(), ReceiptTyp)
	}
	if h.JWKSetURL() != "" || h.JWK() != nil || h.X509URL() != "" || (h.X509CertChain() != nil && h.X509CertChain().Len() > 0) || len(h.Critical()) > 0 {
		return nil, fmt.Errorf("%w: header names a key or demands extensions (jku, jwk, x5u, x5c, crit)", ErrReceipt)
	}
	kid := h.KeyID()
	if kid == "" {
		return nil, fmt.Errorf("%w: no kid", ErrReceipt)
	}
	key, ok := keys.LookupKeyID(kid)
	if !ok {
		return nil, fmt.Errorf("%w: key %q is not in the key set", ErrReceipt, kid)
	}
	if ka := key.Algorithm(); ka != nil && ka.String() != "" && ka.String() != alg.String() {
		return nil, fmt.Errorf("%w: key %q is for %s, the receipt says %s", ErrReceipt, kid, ka, alg)
	}
	payload, err := jws.Verify(compact, jws.WithKey(alg, key))
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrReceipt, err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var r Receipt
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrReceipt, err)
	}
	if r.Version != ReceiptVersion {
		return nil, fmt.Errorf("%w: version %q is not %s", ErrReceipt, r.Version, ReceiptVersion)
	}
	if r.ConsentReceiptID == "" || r.Trustgate.ConsentID == "" {
		return nil, fmt.Errorf("%w: no receipt id or consent id", ErrReceipt)
	}
	return &r, nil
}
