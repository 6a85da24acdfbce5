package audit

import (
	"encoding/json"
	"fmt"
	"time"
)

// Legacy formats. Formats 2 and 3 stored each entry as encoding/json of
// the entry under short names (docs/audit-format.md §6 lists them):
//
//   - format 3: the names of v3Names, the time as decimal seconds, hex
//     identifiers as base64url and a decision's reasons with its own rule
//     reference abbreviated (codec.go), the residual input as a nested
//     JSON value under "x";
//   - format 2: the names of v2Entry, RFC 3339 times, hex as it is, a
//     decision's whole policy input under "input".
//
// Both chained and hashed the stored bytes as format 4 does (the entry
// hash is the RFC 9162 leaf hash of the stored bytes), so the old tree and
// its signed checkpoints are checked from the raw values alone; the
// decoders below only give Migrate the entries to carry over. The
// writers exist for tests, which build format-2 and format-3 files
// themselves.

// marshalV3 returns the format-3 stored bytes of e.
func marshalV3(e *Entry) ([]byte, error) {
	if rs, changed := storeReasons(e.Reasons, ruleRef(e)); changed {
		c := *e
		c.Reasons = rs
		e = &c
	}
	return json.Marshal(asV3(e))
}

// decodeV3 strictly decodes a format-3 stored value of key seq.
func decodeV3(seq uint64, val []byte) (*Entry, error) {
	var e Entry
	if err := decodeStrict(seq, val, asV3(&e), &e.Seq, "format-3 entry"); err != nil {
		return nil, err
	}
	if e.OriginFormat != 0 || e.OriginSize != 0 || e.OriginRoot != "" || e.OriginCheckpoint != "" || e.OriginSeq != 0 || e.OriginHash != "" {
		return nil, tampered(seq, "a format-3 entry with origin fields")
	}
	loadReasons(e.Reasons, ruleRef(&e))
	e.Hash = hashHex(val)
	return &e, nil
}

// v2Entry is an entry as format 2 stored it.
type v2Entry struct {
	Seq                 uint64          `json:"n"`
	Time                time.Time       `json:"t"`
	RequestID           string          `json:"id"`
	Kind                Kind            `json:"k"`
	Method              string          `json:"m,omitempty"`
	Path                string          `json:"u,omitempty"`
	Status              int             `json:"st,omitempty"`
	Requester           string          `json:"r,omitempty"`
	Practitioner        string          `json:"pr,omitempty"`
	Role                string          `json:"rl,omitempty"`
	TokenID             string          `json:"j,omitempty"`
	Provider            string          `json:"pv,omitempty"`
	Purpose             string          `json:"pu,omitempty"`
	Subject             string          `json:"s,omitempty"`
	Categories          []string        `json:"c,omitempty"`
	Decision            string          `json:"d,omitempty"`
	AllowedCategories   []string        `json:"ac,omitempty"`
	Reasons             []string        `json:"rs,omitempty"`
	Protocol            string          `json:"p,omitempty"`
	ProtocolVersion     string          `json:"v,omitempty"`
	Rule                string          `json:"ru,omitempty"`
	LawfulBasis         string          `json:"lb,omitempty"`
	OverrideGround      string          `json:"og,omitempty"`
	PolicyRevision      string          `json:"rev,omitempty"`
	Input               json.RawMessage `json:"input,omitempty"`
	Override            bool            `json:"o,omitempty"`
	ReviewID            string          `json:"rv,omitempty"`
	Consents            []string        `json:"cs,omitempty"`
	RefusalsOnRecord    []string        `json:"rf,omitempty"`
	ConsentID           string          `json:"ci,omitempty"`
	ConsentAction       string          `json:"ca,omitempty"`
	ReceiptID           string          `json:"rc,omitempty"`
	ReviewOutcome       string          `json:"ro,omitempty"`
	DisclosedCategories []string        `json:"dc,omitempty"`
	DisclosedFields     []string        `json:"df,omitempty"`
	DisclosedSHA256     string          `json:"dh,omitempty"`
	ProviderError       string          `json:"pe,omitempty"`
	NotificationIDs     []string        `json:"ni,omitempty"`
	LeadPartner         string          `json:"lp,omitempty"`
	LeadPractitioner    string          `json:"lq,omitempty"`
	Error               string          `json:"e,omitempty"`
	PrevSubject         uint64          `json:"ps,omitempty"`
	PrevPractitioner    uint64          `json:"pp,omitempty"`
	PrevHash            string          `json:"h"`
}

func (v *v2Entry) entry() *Entry {
	return &Entry{
		Seq: v.Seq, Time: v.Time.UTC(), RequestID: v.RequestID, Kind: v.Kind, Method: v.Method, Path: v.Path,
		Status: v.Status, Requester: v.Requester, Practitioner: v.Practitioner, Role: v.Role, TokenID: v.TokenID,
		Provider: v.Provider, Purpose: v.Purpose, Subject: v.Subject, Categories: v.Categories,
		Decision: v.Decision, AllowedCategories: v.AllowedCategories, Reasons: v.Reasons, Protocol: v.Protocol,
		ProtocolVersion: v.ProtocolVersion, Rule: v.Rule, LawfulBasis: v.LawfulBasis, OverrideGround: v.OverrideGround,
		PolicyRevision: v.PolicyRevision, Override: v.Override, ReviewID: v.ReviewID, Consents: v.Consents,
		RefusalsOnRecord: v.RefusalsOnRecord, ConsentID: v.ConsentID, ConsentAction: v.ConsentAction,
		ReceiptID: v.ReceiptID, ReviewOutcome: v.ReviewOutcome, DisclosedCategories: v.DisclosedCategories,
		DisclosedFields: v.DisclosedFields, DisclosedSHA256: v.DisclosedSHA256, ProviderError: v.ProviderError,
		NotificationIDs: v.NotificationIDs, LeadPartner: v.LeadPartner, LeadPractitioner: v.LeadPractitioner,
		Error: v.Error, PrevSubject: v.PrevSubject, PrevPractitioner: v.PrevPractitioner, PrevHash: v.PrevHash,
	}
}

func v2Of(e *Entry, input json.RawMessage) *v2Entry {
	return &v2Entry{
		Seq: e.Seq, Time: e.Time.UTC(), RequestID: e.RequestID, Kind: e.Kind, Method: e.Method, Path: e.Path,
		Status: e.Status, Requester: e.Requester, Practitioner: e.Practitioner, Role: e.Role, TokenID: e.TokenID,
		Provider: e.Provider, Purpose: e.Purpose, Subject: e.Subject, Categories: e.Categories,
		Decision: e.Decision, AllowedCategories: e.AllowedCategories, Reasons: e.Reasons, Protocol: e.Protocol,
		ProtocolVersion: e.ProtocolVersion, Rule: e.Rule, LawfulBasis: e.LawfulBasis, OverrideGround: e.OverrideGround,
		PolicyRevision: e.PolicyRevision, Input: input, Override: e.Override, ReviewID: e.ReviewID, Consents: e.Consents,
		RefusalsOnRecord: e.RefusalsOnRecord, ConsentID: e.ConsentID, ConsentAction: e.ConsentAction,
		ReceiptID: e.ReceiptID, ReviewOutcome: e.ReviewOutcome, DisclosedCategories: e.DisclosedCategories,
		DisclosedFields: e.DisclosedFields, DisclosedSHA256: e.DisclosedSHA256, ProviderError: e.ProviderError,
		NotificationIDs: e.NotificationIDs, LeadPartner: e.LeadPartner, LeadPractitioner: e.LeadPractitioner,
		Error: e.Error, PrevSubject: e.PrevSubject, PrevPractitioner: e.PrevPractitioner, PrevHash: e.PrevHash,
	}
}

// decodeV2 strictly decodes a format-2 stored value of key seq. The
// decision's whole policy input ("input") has no place in format 4 and is
// not returned: it stays in the old file, which the migrated entry's
// origin_hash commits to.
func decodeV2(seq uint64, val []byte) (*Entry, error) {
	var v v2Entry
	if err := decodeStrict(seq, val, &v, &v.Seq, "format-2 entry"); err != nil {
		return nil, err
	}
	e := v.entry()
	e.Hash = hashHex(val)
	return e, nil
}

// decodeLegacy decodes a stored value of the given legacy format.
func decodeLegacy(version, seq uint64, val []byte) (*Entry, error) {
	switch version {
	case 2:
		return decodeV2(seq, val)
	case 3:
		return decodeV3(seq, val)
	}
	return nil, fmt.Errorf("format version %d: %w", version, ErrUnsupportedVersion)
}
