package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/consent"
	"github.com/childrens-trust/trustgate/internal/nhs"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/childrens-trust/trustgate/internal/revision"
)

// Signer signs with the gateway's signing key (keys.Signer): consent
// receipts.
type Signer interface {
	Sign(ctx context.Context, payload []byte, typ string) (string, error)
}

// ConsentStore keeps consent records (internal/consent.Store). Record and
// Withdraw are atomic and durable when they return nil.
type ConsentStore interface {
	Record(ctx context.Context, r *consent.Record) error
	Get(ctx context.Context, id string) (*consent.Record, error)
	Withdraw(ctx context.Context, id string, w *consent.Withdrawal) (*consent.Record, error)
	History(ctx context.Context, subject string) ([]*consent.Record, error)
	// Delete undoes a Record whose audit entry could not be written.
	Delete(ctx context.Context, id string) error
}

// errStateUnavailable: the server was wired without a state store.
var errStateUnavailable = errors.New("no consent and review store is configured")

// ConsentRequest is the body of POST /v1/consents (docs/consent.md).
type ConsentRequest struct {
	Subject     string          `json:"subject"`
	Outcome     string          `json:"outcome"`
	GivenBy     string          `json:"given_by"`
	Competence  json.RawMessage `json:"competence,omitempty"`
	Purposes    []string        `json:"purposes"`
	Categories  []string        `json:"categories"`
	Recipients  json.RawMessage `json:"recipients"`
	ValidFrom   string          `json:"valid_from,omitempty"`
	ValidUntil  string          `json:"valid_until,omitempty"`
	Obtained    string          `json:"obtained"`
	EvidenceRef string          `json:"evidence_ref"`
}

// WithdrawRequest is the body of POST /v1/consents/{id}/withdraw.
type WithdrawRequest struct {
	WithdrawnBy string `json:"withdrawn_by"`
	WithdrawnAt string `json:"withdrawn_at,omitempty"`
	Obtained    string `json:"obtained"`
	EvidenceRef string `json:"evidence_ref,omitempty"`
}

// consentView is a record as partners read it: everything but the subject
// and the signed receipts themselves (their ids are shown).
type consentView struct {
	ID          string              `json:"id"`
	Status      consent.Status      `json:"status"`
	Outcome     string              `json:"outcome"`
	GivenBy     string              `json:"given_by"`
	Competence  *consent.Competence `json:"competence,omitempty"`
	Purposes    []string            `json:"purposes"`
	Categories  []string            `json:"categories"`
	Recipients  consent.Recipients  `json:"recipients"`
	ValidFrom   time.Time           `json:"valid_from"`
	ValidUntil  *time.Time          `json:"valid_until,omitempty"`
	Obtained    string              `json:"obtained"`
	EvidenceRef string              `json:"evidence_ref"`
	RecordedBy  consent.Actor       `json:"recorded_by"`
	RecordedAt  time.Time           `json:"recorded_at"`
	ReceiptID   string              `json:"receipt_id"`
	Withdrawal  *withdrawalView     `json:"withdrawal,omitempty"`
}

type withdrawalView struct {
	By          string        `json:"by"`
	At          time.Time     `json:"at"`
	Obtained    string        `json:"obtained"`
	EvidenceRef string        `json:"evidence_ref,omitempty"`
	RecordedBy  consent.Actor `json:"recorded_by"`
	RecordedAt  time.Time     `json:"recorded_at"`
	ReceiptID   string        `json:"receipt_id"`
}

func viewConsent(r *consent.Record, now time.Time) consentView {
	v := consentView{
		ID: r.ID, Status: r.Status(now), Outcome: r.Outcome, GivenBy: r.GivenBy, Competence: r.Competence,
		Purposes: r.Purposes, Categories: nzs(r.Categories), Recipients: r.Recipients,
		ValidFrom: r.ValidFrom, Obtained: r.Obtained, EvidenceRef: r.EvidenceRef,
		RecordedBy: r.RecordedBy, RecordedAt: r.RecordedAt, ReceiptID: r.ReceiptID,
	}
	if !r.ValidUntil.IsZero() {
		u := r.ValidUntil
		v.ValidUntil = &u
	}
	if w := r.Withdrawal; w != nil {
		v.Withdrawal = &withdrawalView{By: w.By, At: w.At, Obtained: w.Obtained, EvidenceRef: w.EvidenceRef,
			RecordedBy: w.RecordedBy, RecordedAt: w.RecordedAt, ReceiptID: w.ReceiptID}
	}
	return v
}

// postConsent handles POST /v1/consents: record a consent or a refusal,
// answer 201 with its id and a signed receipt.
func (s *Server) postConsent(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	if s.deps.ConsentStore == nil || s.deps.Signer == nil {
		return 0, nil, errStateUnavailable
	}
	if err := s.permit(x, policy.ActionRecord, nil); err != nil {
		s.noteBodyChild(x)
		return 0, nil, err
	}
	var req ConsentRequest
	if err := s.decodeStrict(x, &req); err != nil {
		return 0, nil, err
	}
	x.entry.Purpose = clip(strings.Join(req.Purposes, ","))
	if len(req.Categories) <= consent.MaxCategories {
		x.entry.Categories = req.Categories
	}
	if req.Outcome == consent.Given || req.Outcome == consent.Refused {
		x.entry.ConsentAction = req.Outcome // the attempted action; never free text
	}
	subject, err := nhsField("subject", req.Subject)
	if err != nil {
		return 0, nil, err
	}
	rec := &consent.Record{
		Outcome: req.Outcome, GivenBy: req.GivenBy, Purposes: req.Purposes, Categories: req.Categories,
		Obtained: req.Obtained, EvidenceRef: req.EvidenceRef,
	}
	if len(req.Competence) > 0 && string(req.Competence) != "null" {
		rec.Competence = &consent.Competence{}
		if err := decodeObject("competence", req.Competence, rec.Competence); err != nil {
			return 0, nil, err
		}
	}
	if err := decodeObject("recipients", req.Recipients, &rec.Recipients); err != nil {
		return 0, nil, err
	}
	if rec.ValidFrom, err = timeField("valid_from", req.ValidFrom); err != nil {
		return 0, nil, err
	}
	if rec.ValidUntil, err = timeField("valid_until", req.ValidUntil); err != nil {
		return 0, nil, err
	}
	now := s.opts.Now()
	voc := vocabulary{x.rev}
	if err := consent.Check(rec, voc, now); err != nil {
		return 0, nil, err
	}
	pseudo, err := s.pseudonym(x, subject)
	if err != nil {
		return 0, nil, err
	}
	history, err := s.deps.ConsentStore.History(x.ctx, pseudo)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err
	}

	rec.ID, rec.Subject, rec.RecordedAt, rec.ReceiptID = consent.NewID(), pseudo, now, consent.NewReceiptID()
	rec.RecordedBy = consent.Actor{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role}
	receipt := consent.NewReceipt(rec, s.receiptContext(x.rev, rec.Recipients))
	if rec.Receipt, err = s.sign(x, receipt); err != nil {
		return 0, nil, err
	}
	if err := s.deps.ConsentStore.Record(x.ctx, rec); err != nil {
		if errors.Is(err, consent.ErrUnavailable) {
			x.entry.Kind = audit.KindUnavailable
		}
		return 0, nil, err
	}
	id := rec.ID
	x.onAuditFailure(func(ctx context.Context) error { return s.deps.ConsentStore.Delete(ctx, id) })
	x.entry.Kind, x.entry.ConsentID, x.entry.ReceiptID = audit.KindConsent, rec.ID, rec.ReceiptID
	return http.StatusCreated, map[string]any{
		"request_id":      x.id,
		"consent_id":      rec.ID,
		"status":          rec.Status(now),
		"receipt_id":      rec.ReceiptID,
		"receipt":         rec.Receipt,
		"warnings":        consentWarnings(rec, history, x.rev, now),
		"policy_revision": x.rev.Hash(),
	}, nil
}

// consentWarnings says what about a valid new record will surprise the
// practitioner when a decision is made.
func consentWarnings(rec *consent.Record, history []*consent.Record, rev *revision.Revision, now time.Time) []string {
	out := []string{}
	if rec.GivenBy != "self" {
		for _, h := range history {
			if h.GivenBy == "self" && h.Competence != nil && h.Competence.AssessedCompetent && h.Withdrawal == nil {
				out = append(out, fmt.Sprintf("the child is recorded as competent (%s): a %s's %s will not count in decisions; only the child's own decision does", h.ID, rec.GivenBy, rec.Outcome))
				break
			}
		}
	}
	for _, pid := range rec.Recipients.Protocols {
		if !protocolInForce(rev, pid, now) {
			out = append(out, fmt.Sprintf("protocol %s is not in force: its signatories are not covered until it is", pid))
		}
	}
	return out
}

// listConsents handles GET /v1/subjects/{nhs}/consents: a child's consent
// history, current and past, for the partners the policy allows.
func (s *Server) listConsents(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	if s.deps.ConsentStore == nil {
		return 0, nil, errStateUnavailable
	}
	subject, err := nhsField("nhs", mux.Vars(x.r)["nhs"])
	if err != nil {
		return 0, nil, err
	}
	pseudo, err := s.pseudonym(x, subject)
	if err != nil {
		return 0, nil, err
	}
	history, err := s.deps.ConsentStore.History(x.ctx, pseudo)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err
	}
	var recordedBy []string
	for _, r := range history {
		if !slices.Contains(recordedBy, r.RecordedBy.Partner) {
			recordedBy = append(recordedBy, r.RecordedBy.Partner)
		}
	}
	if err := s.permit(x, policy.ActionRead, recordedBy); err != nil {
		return 0, nil, err
	}
	now := s.opts.Now()
	out := make([]consentView, len(history))
	for i, r := range history {
		out[i] = viewConsent(r, now)
	}
	x.entry.Kind = audit.KindAccess
	return http.StatusOK, map[string]any{"request_id": x.id, "consents": out, "policy_revision": x.rev.Hash()}, nil
}

// postWithdrawal handles POST /v1/consents/{id}/withdraw: from the answer
// on, no decision relies on the consent.
func (s *Server) postWithdrawal(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	x.entry.ConsentAction = audit.ConsentWithdrawn
	if s.deps.ConsentStore == nil || s.deps.Signer == nil {
		return 0, nil, errStateUnavailable
	}
	if err := s.permit(x, policy.ActionWithdraw, nil); err != nil {
		return 0, nil, err
	}
	id := mux.Vars(x.r)["id"]
	x.entry.ConsentID = clip(id)
	var req WithdrawRequest
	if err := s.decodeStrict(x, &req); err != nil {
		return 0, nil, err
	}
	at, err := timeField("withdrawn_at", req.WithdrawnAt)
	if err != nil {
		return 0, nil, err
	}
	rec, err := s.deps.ConsentStore.Get(x.ctx, id)
	if err != nil {
		if errors.Is(err, consent.ErrUnavailable) {
			x.entry.Kind = audit.KindUnavailable
		}
		return 0, nil, err
	}
	x.entry.Subject = rec.Subject
	now := s.opts.Now()
	w := &consent.Withdrawal{
		By: req.WithdrawnBy, At: at, Obtained: req.Obtained, EvidenceRef: req.EvidenceRef,
		RecordedBy: consent.Actor{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role},
		RecordedAt: now, ReceiptID: consent.NewReceiptID(),
	}
	if err := consent.CheckWithdrawal(rec, w, now); err != nil {
		return 0, nil, err
	}
	ended := *rec
	ended.Withdrawal = w
	if w.Receipt, err = s.sign(x, consent.NewWithdrawalReceipt(&ended, s.receiptContext(x.rev, rec.Recipients))); err != nil {
		return 0, nil, err
	}
	if _, err := s.deps.ConsentStore.Withdraw(x.ctx, id, w); err != nil {
		if errors.Is(err, consent.ErrUnavailable) {
			x.entry.Kind = audit.KindUnavailable
		}
		return 0, nil, err
	}
	// A withdrawal is not undone if its audit entry fails: keeping it is
	// the safe side (it only ever stops sharing).
	x.entry.Kind, x.entry.ReceiptID = audit.KindConsent, w.ReceiptID
	return http.StatusOK, map[string]any{
		"request_id":      x.id,
		"consent_id":      rec.ID,
		"status":          consent.StatusWithdrawn,
		"withdrawn_at":    w.At.UTC(),
		"receipt_id":      w.ReceiptID,
		"receipt":         w.Receipt,
		"policy_revision": x.rev.Hash(),
	}, nil
}

// permit asks the policy whether the caller may take a consent action; a
// refusal is a 403 carrying the policy's reasons.
func (s *Server) permit(x *exchange, action string, recordedBy []string) error {
	p, _ := x.rev.Registry.Partner(x.claims.Partner)
	in := &policy.PermissionInput{
		TimeNS: s.opts.Now().UnixNano(),
		Action: action,
		Requester: policy.Requester{Partner: x.claims.Partner, Type: string(p.Type),
			Practitioner: x.claims.Practitioner, Role: x.claims.Role},
		RecordedBy: recordedBy,
	}
	ctx, cancel := context.WithTimeout(x.ctx, s.opts.EvalTimeout)
	defer cancel()
	perm, err := x.rev.Policy.Permit(ctx, in)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return err
	}
	if !perm.Allow {
		x.entry.Reasons = perm.Reasons
		return forbidden(strings.Join(perm.Reasons, "; "))
	}
	return nil
}

// pseudonym turns the NHS number into the gateway's pseudonym and records
// it in the audit entry.
func (s *Server) pseudonym(x *exchange, subject string) (string, error) {
	ctx, cancel := context.WithTimeout(x.ctx, s.opts.KeyTimeout)
	defer cancel()
	p, err := s.deps.Keys.Pseudonym(ctx, subject)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return "", err
	}
	x.entry.Subject = p
	return p, nil
}

func (s *Server) sign(x *exchange, r *consent.Receipt) (string, error) {
	ctx, cancel := context.WithTimeout(x.ctx, s.opts.KeyTimeout)
	defer cancel()
	out, err := r.Sign(ctx, s.deps.Signer)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return "", err
	}
	return out, nil
}

func (s *Server) receiptContext(rev *revision.Revision, rc consent.Recipients) consent.ReceiptContext {
	return consent.ReceiptContext{
		Issuer:     s.opts.GatewayID,
		TrustID:    rev.Registry.ID(),
		TrustName:  rev.Registry.Name(),
		Directory:  vocabulary{rev},
		Recipients: resolveRecipients(rev, rc, s.opts.Now()),
	}
}

// resolveRecipients lists the partners a consent's recipients name now:
// by id, by type, and the signatories of the named protocols in force.
func resolveRecipients(rev *revision.Revision, rc consent.Recipients, now time.Time) []string {
	set := map[string]bool{}
	for _, p := range rc.Partners {
		set[p] = true
	}
	for _, p := range rev.Registry.Partners() {
		if slices.Contains(rc.Types, string(p.Type)) {
			set[p.ID] = true
		}
	}
	for _, pd := range rev.Policy.Data().Protocols {
		if slices.Contains(rc.Protocols, pd.ID) && protocolInForce(rev, pd.ID, now) {
			for _, sg := range pd.Signatories {
				set[sg] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func protocolInForce(rev *revision.Revision, id string, now time.Time) bool {
	ns := now.UnixNano()
	for _, pd := range rev.Policy.Data().Protocols {
		if pd.ID == id && pd.EffectiveFromNS <= ns && ns < pd.ExpiresNS {
			return true
		}
	}
	return false
}

// vocabulary answers the consent package's questions from one revision.
type vocabulary struct{ rev *revision.Revision }

var (
	_ consent.Vocabulary = vocabulary{}
	_ consent.Directory  = vocabulary{}
)

func (v vocabulary) HasPurpose(id string) bool    { return v.rev.Registry.HasPurpose(id) }
func (v vocabulary) HasCategory(id string) bool   { return v.rev.Registry.HasCategory(id) }
func (v vocabulary) HasPartnerType(t string) bool { return registry.ValidType(t) }
func (v vocabulary) SpecialCategory(id string) bool {
	t, _ := v.rev.Registry.Category(id)
	return t.Special
}

func (v vocabulary) HasPartner(id string) bool {
	_, ok := v.rev.Registry.Partner(id)
	return ok
}

func (v vocabulary) HasProtocol(id string) bool {
	for _, st := range v.rev.Protocols {
		if st.Protocol != nil && st.Protocol.ID == id {
			return true
		}
	}
	return false
}

func (v vocabulary) PartnerName(id string) string {
	if p, ok := v.rev.Registry.Partner(id); ok && p.Name != "" {
		return p.Name
	}
	return id
}

func (v vocabulary) PurposeDescription(id string) string {
	for _, t := range v.rev.Registry.Purposes() {
		if t.ID == id && t.Description != "" {
			return t.Description
		}
	}
	return id
}

// nhsField validates an NHS number given in field.
func nhsField(field, s string) (string, error) {
	if s == "" {
		return "", badRequest(field, "required: the child's NHS number")
	}
	n, err := nhs.Normalize(s)
	if err != nil {
		var ne *nhs.Error
		if errors.As(err, &ne) {
			return "", badRequest(field, "not a valid NHS number: "+ne.Reason)
		}
		return "", badRequest(field, "not a valid NHS number")
	}
	return n, nil
}

// timeField parses an optional RFC 3339 time.
func timeField(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, badRequest(field, "must be an RFC 3339 time, e.g. 2027-11-22T00:00:00Z")
	}
	return t.UTC(), nil
}

// decodeObject strictly decodes the nested object raw of field into v,
// naming any problem as field.member.
func decodeObject(field string, raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	prefix := func(err error) error {
		var ae *apiError
		if errors.As(err, &ae) {
			if ae.Field == "body" {
				ae.Field, ae.Reason = field, "must be an object"
			} else {
				ae.Field = field + "." + ae.Field
			}
		}
		return err
	}
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		if err := unknownField(raw, v); err != nil {
			return prefix(err)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return prefix(jsonError(err))
	}
	return nil
}

// auditPath is the request path as the audit log keeps it: a segment that
// looks like an NHS number (ten digits, spaces and hyphens aside) is
// replaced by {nhs}, so that no number is ever logged in clear.
func auditPath(p string) string {
	if !strings.ContainsAny(p, "0123456789") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, sg := range segs {
		d := nhs.StripSeparators(sg)
		if len(d) == 10 && strings.Trim(d, "0123456789") == "" {
			segs[i] = "{nhs}"
		}
	}
	return strings.Join(segs, "/")
}

func nzs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// undo reverses the exchange's state changes, newest first, after its
// audit entry could not be written: what was not audited must not take
// effect. Each step gets its own deadline, detached from the caller.
func (s *Server) undo(parent context.Context, x *exchange) {
	for i := len(x.undo) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 5*time.Second)
		if err := x.undo[i](ctx); err != nil {
			x.log.Error("could not undo a state change whose audit entry failed", "err", err)
		}
		cancel()
	}
}
