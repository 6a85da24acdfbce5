package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/fetch"
	"github.com/childrens-trust/trustgate/internal/involvement"
	"github.com/childrens-trust/trustgate/internal/nhs"
	"github.com/childrens-trust/trustgate/internal/notify"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/provider"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// RecordFetcher fetches a child's record from a provider under a decision
// (fetch.Client). Failures are *fetch.Error, or wrap ctx's error or a key
// store error.
type RecordFetcher interface {
	Fetch(ctx context.Context, p *registry.Partner, g *provider.TokenClaims) (*provider.Record, error)
}

// Notices keeps access notifications (notify.Store). The lead
// professional is kept in the involvement index's early help episodes.
type Notices interface {
	Add(ctx context.Context, ns []*provider.Notification, push func(recipient string) bool) error
	Release(ctx context.Context, ns []*provider.Notification) error
	Remove(ctx context.Context, ns []*provider.Notification) error
	List(ctx context.Context, recipient string, since uint64, limit int) ([]provider.Notification, bool, error)
}

// errSharingOff: the server was wired without a fetcher or notices.
var errSharingOff = errors.New("record sharing is not configured")

// shareRoutes adds the mediation endpoints to the /v1 router.
func (s *Server) shareRoutes(v1 *mux.Router) {
	v1.Handle("/share-requests", s.audited(s.postShareRequest)).Methods(http.MethodPost)
	v1.Handle("/notifications", s.audited(s.listNotifications)).Methods(http.MethodGet)
	v1.Handle("/subjects/{nhs}/lead-professional", s.audited(s.putLeadProfessional)).Methods(http.MethodPut)
}

// disclosedRecord is the record a share answers with. Nonce (random, kept
// nowhere else) makes the record's SHA-256 in the audit log impossible to
// confirm by guessing a small record: only a holder of the record can.
type disclosedRecord struct {
	Provider   string                     `json:"provider"`
	Nonce      string                     `json:"nonce"`
	Categories map[string]provider.Fields `json:"categories"`
}

// postShareRequest handles POST /v1/share-requests: decide; on a deny, 403
// with the decision; on an allow, fetch the record from the provider,
// minimise it to the decision, queue the access notifications and answer
// with the record. The audit entry says what was disclosed, never what
// it said.
func (s *Server) postShareRequest(x *exchange) (int, any, error) {
	if s.deps.Records == nil || s.deps.Notices == nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, errSharingOff
	}
	d, req, err := s.decide(x)
	if err != nil {
		return 0, nil, err
	}
	if !d.Allow {
		return http.StatusForbidden, map[string]any{
			"request_id":      x.id,
			"decision":        d,
			"policy_revision": x.rev.Hash(),
			"error":           errorBody{Code: "denied", Message: "the decision is a deny; nothing was fetched or disclosed"},
		}, nil
	}
	prov, _ := x.rev.Registry.Partner(req.Provider)
	subject, _ := nhs.Normalize(req.Subject) // validated by decide
	fields := map[string][]string{}
	for c, ff := range d.Fields {
		if contains(d.Categories, c) && len(ff) > 0 {
			fields[c] = ff
		}
	}
	grant := &provider.TokenClaims{
		RequestID:  x.id,
		Subject:    subject,
		Requester:  provider.Requester{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role},
		Purpose:    req.Purpose,
		Categories: d.Categories,
		Fields:     fields,
		Protocol:   provider.ProtocolRef{ID: d.Protocol.ID, Version: d.Protocol.Version, Rule: d.Protocol.Rule},
	}
	rec, err := s.deps.Records.Fetch(x.ctx, prov, grant)
	if err != nil {
		var fe *fetch.Error
		if errors.As(err, &fe) {
			x.entry.ProviderError = string(fe.Reason)
		}
		return 0, nil, err
	}
	// The provider was asked for no more than this; the gateway cuts the
	// answer down all the same, so a provider that sends too much
	// discloses nothing extra.
	out := provider.Minimise(rec, d.Categories, fields)
	raw, err := compactJSON(disclosedRecord{Provider: prov.ID, Nonce: provider.NewID(), Categories: out.Categories})
	if err != nil {
		return 0, nil, fmt.Errorf("encode the record: %w", err)
	}
	sum := sha256.Sum256(raw)
	digest := hex.EncodeToString(sum[:])

	ns, err := s.notifications(x, d, req, prov, out)
	if err != nil {
		return 0, nil, err
	}
	// Queued durably but held: released once the audit entry is written,
	// taken back if it cannot be (then nothing was disclosed). Detached
	// from the caller, whose hanging up must not lose a notification.
	nctx := context.WithoutCancel(x.ctx)
	push := func(p string) bool { pp, ok := x.rev.Registry.Partner(p); return ok && pp.Webhook != "" }
	if err := s.deps.Notices.Add(nctx, ns, push); err != nil {
		return 0, nil, err
	}
	x.onAuditFailure(func(ctx context.Context) error { return s.deps.Notices.Remove(ctx, ns) })
	x.afterAudit(func(ctx context.Context) {
		if err := s.deps.Notices.Release(ctx, ns); err != nil {
			x.log.Error("notifications stay held until the gateway restarts", "err", err)
		}
	})

	x.entry.Kind = audit.KindDisclosure
	x.entry.DisclosedCategories = out.CategoryNames()
	x.entry.DisclosedFields = out.FieldNames()
	x.entry.DisclosedSHA256 = digest
	for _, n := range ns {
		x.entry.NotificationIDs = append(x.entry.NotificationIDs, n.ID)
	}
	return http.StatusOK, map[string]any{
		"request_id":      x.id,
		"decision":        d,
		"policy_revision": x.rev.Hash(),
		"record":          json.RawMessage(raw),
		"record_sha256":   digest,
	}, nil
}

// notifications builds what a disclosure owes: one to the provider, and
// one to the child's lead professional where one is recorded — except for
// a sensitive service, whose involvement with the child is itself shielded
// (the service is told; the lead professional is not).
func (s *Server) notifications(x *exchange, d *policy.Decision, req *DecisionRequest, prov *registry.Partner, out *provider.Record) ([]*provider.Notification, error) {
	subject, _ := nhs.Normalize(req.Subject)
	base := provider.Notification{
		Event:      provider.EventDisclosed,
		Time:       x.entry.Time,
		RequestID:  x.id,
		Subject:    subject,
		Provider:   prov.ID,
		Requester:  provider.Requester{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role},
		Purpose:    req.Purpose,
		Basis:      d.Basis,
		Protocol:   provider.ProtocolRef{ID: d.Protocol.ID, Version: d.Protocol.Version, Rule: d.Protocol.Rule},
		Categories: orEmpty(out.CategoryNames()),
		Fields:     orEmpty(out.FieldNames()),
	}
	toProvider := base
	toProvider.ID, toProvider.Recipient, toProvider.As = provider.NewID(), prov.ID, provider.AsProvider
	ns := []*provider.Notification{&toProvider}
	if prov.Sensitive {
		return ns, nil
	}
	lead, err := s.currentLead(x, x.entry.Subject)
	if err != nil {
		return nil, err
	}
	if lead != nil {
		// Only an agency entitled to know is told as the lead's.
		ok, err := s.involvement().Involved(x.ctx, x.rev, lead.Partner, x.entry.Subject, x.entry.Time)
		if err != nil {
			return nil, err
		}
		if !ok {
			return ns, nil
		}
		toLead := base
		toLead.ID, toLead.Recipient, toLead.As, toLead.LeadPractitioner = provider.NewID(), lead.Partner, provider.AsLeadProfessional, lead.Practitioner
		ns = append(ns, &toLead)
	}
	return ns, nil
}

// compactJSON encodes v as compact JSON without HTML escaping: the exact
// bytes the answer carries (writeJSON passes a json.RawMessage through
// unchanged), so a requester can hash what it received.
func compactJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// listNotifications handles GET /v1/notifications?since=SEQ&limit=N: the
// caller's own agency's notifications after SEQ, oldest first.
func (s *Server) listNotifications(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	if s.deps.Notices == nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, errSharingOff
	}
	q := x.r.URL.Query()
	for k := range q {
		if k != "since" && k != "limit" {
			return 0, nil, badRequest(clip(k), "unknown parameter (since, limit)")
		}
		if len(q[k]) > 1 {
			return 0, nil, badRequest(k, "given more than once")
		}
	}
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, nil, badRequest("since", "must be the seq of the last notification you hold (a non-negative integer)")
		}
		since = n
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > notify.MaxList {
			return 0, nil, badRequest("limit", fmt.Sprintf("must be an integer from 1 to %d", notify.MaxList))
		}
		limit = n
	}
	x.entry.Kind = audit.KindAccess
	ns, more, err := s.deps.Notices.List(x.ctx, x.claims.Partner, since, limit)
	if err != nil {
		return 0, nil, err
	}
	next := since
	if len(ns) > 0 {
		next = ns[len(ns)-1].Seq
	}
	if ns == nil {
		ns = []provider.Notification{}
	}
	return http.StatusOK, map[string]any{"request_id": x.id, "notifications": ns, "next": next, "more": more}, nil
}

// LeadRequest is the body of PUT /v1/subjects/{nhs}/lead-professional.
type LeadRequest struct {
	// Partner is the lead professional's agency; default the caller's.
	Partner string `json:"partner,omitempty"`
	// Practitioner is the lead professional's id in that agency.
	Practitioner string `json:"practitioner"`
}

// coordinatingRoles may record a lead professional in another agency: the
// local authority's practitioners who convene the team around the child.
var coordinatingRoles = []string{"social_worker", "team_manager", "early_help_worker"}

// putLeadProfessional handles PUT /v1/subjects/{nhs}/lead-professional.
// An agency's practitioner records a lead professional of their own
// agency; a local authority social worker, team manager or early help
// worker may name one in any agency. The last recorded wins.
func (s *Server) putLeadProfessional(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	if s.deps.Notices == nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, errSharingOff
	}
	subject, err := nhs.Normalize(mux.Vars(x.r)["nhs"])
	if err != nil {
		var ne *nhs.Error
		reason := "not a valid NHS number"
		if errors.As(err, &ne) {
			reason += ": " + ne.Reason
		}
		return 0, nil, badRequest("nhs", reason+" (in the path)")
	}
	var req LeadRequest
	if err := s.decodeStrict(x, &req); err != nil {
		return 0, nil, err
	}
	if req.Partner == "" {
		req.Partner = x.claims.Partner
	}
	lp, ok := x.rev.Registry.Partner(req.Partner)
	if !ok {
		return 0, nil, badRequest("partner", fmt.Sprintf("%q is not a partner of the Trust", clip(req.Partner)))
	}
	if why := authz.PractitionerID(req.Practitioner); why != "" {
		return 0, nil, badRequest("practitioner", why)
	}
	x.entry.LeadPartner, x.entry.LeadPractitioner = lp.ID, req.Practitioner
	caller, _ := x.rev.Registry.Partner(x.claims.Partner)
	coordinator := caller != nil && caller.Type == registry.LocalAuthority && contains(coordinatingRoles, x.claims.Role)
	if lp.ID != x.claims.Partner && !coordinator {
		return 0, nil, forbidden("only a local authority social worker, team manager or early help worker may record a lead professional in another agency")
	}
	kctx, cancel := context.WithTimeout(x.ctx, s.opts.KeyTimeout)
	pseudo, err := s.deps.Keys.Pseudonym(kctx, subject)
	cancel()
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err
	}
	x.entry.Subject = pseudo
	// Only an agency involved with the child may hold the lead.
	inv := s.involvement()
	ok, err = inv.Involved(x.ctx, x.rev, lp.ID, pseudo, x.entry.Time)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err
	}
	if !ok {
		return 0, nil, &apiError{Status: http.StatusForbidden, Code: "not_involved", Field: "partner", Reason: lp.ID + " is not involved with the child (no lawful basis to know about them), so none of its practitioners may be the lead professional", Kind: audit.KindRejected}
	}
	// The lead professional lives in the child's early help episode in the
	// involvement index (docs/index.md): this route names it there,
	// opening an episode when the child has none and joining the named
	// practitioner to its team.
	if s.deps.Index == nil {
		return 0, nil, errIndexOff
	}
	x.entry.IndexAction = "lead"
	snap, err := s.deps.Index.View(x.ctx, pseudo, x.entry.Time)
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	open := openEpisode(snap)
	var cur *involvement.Lead
	if open != nil {
		cur = open.Lead()
	}
	// A lead of another agency is not replaced from outside it except by
	// the local authority practitioners who convene the team around the
	// child: a practitioner cannot take over the lead for themselves.
	if cur != nil && cur.Partner != x.claims.Partner && !coordinator {
		return 0, nil, &apiError{Status: http.StatusForbidden, Code: "lead_held", Reason: "the child's lead professional is a practitioner of another agency; only a local authority social worker, team manager or early help worker may change it", Kind: audit.KindRejected}
	}
	lead := involvement.Lead{Partner: lp.ID, Practitioner: req.Practitioner, From: x.entry.Time, SetBy: s.actor(x), RequestID: x.id}
	if cur == nil || cur.Partner != lead.Partner || cur.Practitioner != lead.Practitioner {
		if open == nil {
			e, undo, err := s.deps.Index.OpenEpisode(context.WithoutCancel(x.ctx), pseudo, x.entry.Time, s.actor(x), x.claims.Role)
			if err != nil {
				return 0, nil, s.indexError(x, err)
			}
			x.onAuditFailure(undo)
			open = e
		}
		role := leadRole
		if lp.ID == x.claims.Partner && req.Practitioner == x.claims.Practitioner {
			role = x.claims.Role
		}
		member := involvement.Member{Partner: lp.ID, Practitioner: req.Practitioner, Role: role, Joined: x.entry.Time}
		e, undo, err := s.deps.Index.ChangeEpisode(context.WithoutCancel(x.ctx), open.ID, func(e *involvement.Episode) error {
			if !e.IsMember(member.Partner, member.Practitioner) {
				if err := involvement.Join(member)(e); err != nil {
					return err
				}
			}
			return involvement.SetLead(lead)(e)
		})
		if err != nil {
			return 0, nil, s.indexError(x, err)
		}
		x.onAuditFailure(undo)
		open = e
		if err := s.tellPreviousLead(x, cur, lead, subject, ""); err != nil {
			return 0, nil, err
		}
	}
	x.entry.IndexIDs = []string{open.ID}
	x.entry.Kind = audit.KindLead
	return http.StatusOK, map[string]any{
		"request_id":        x.id,
		"lead_professional": map[string]any{"partner": lp.ID, "practitioner": req.Practitioner},
		"episode":           open.ID,
	}, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
