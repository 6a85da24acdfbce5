package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/involvement"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/provider"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// Index is the involvement index (involvement.Store): who is involved
// with each child, early help episodes, matches. docs/index.md.
type Index interface {
	Record(ctx context.Context, v *involvement.Involvement, now time.Time, rule involvement.MatchRule) (*involvement.Involvement, []involvement.Match, involvement.Undo, error)
	Get(ctx context.Context, id string) (*involvement.Involvement, error)
	Update(ctx context.Context, partner, id string, c involvement.Change, now time.Time, by involvement.Actor, requestID string, rule involvement.MatchRule) (*involvement.Involvement, []involvement.Match, involvement.Undo, error)
	Sync(ctx context.Context, partner string, items []*involvement.Involvement, now time.Time, by involvement.Actor, requestID string, rule involvement.MatchRule) (*involvement.SyncResult, involvement.Undo, error)
	View(ctx context.Context, subject string, now time.Time) (*involvement.Snapshot, error)
	OpenEpisode(ctx context.Context, subject string, opened time.Time, by involvement.Actor, role string) (*involvement.Episode, involvement.Undo, error)
	Episode(ctx context.Context, id string) (*involvement.Episode, error)
	ChangeEpisode(ctx context.Context, id string, fn func(*involvement.Episode) error) (*involvement.Episode, involvement.Undo, error)
	Matches(ctx context.Context, partner, practitioner string) ([]involvement.Match, error)
	Sweep(ctx context.Context, now time.Time, record involvement.Recorder) (*involvement.SweepResult, error)
}

var _ Index = (*involvement.Store)(nil)

// errIndexOff: the server was wired without an index.
var errIndexOff = &apiError{Status: http.StatusServiceUnavailable, Code: "index_unavailable", Reason: "the involvement index is not configured on this gateway", Kind: audit.KindUnavailable}

// indexRoutes adds the involvement index's endpoints (docs/index.md).
func (s *Server) indexRoutes(v1 *mux.Router) {
	v1.Handle("/involvements", s.audited(s.postInvolvement)).Methods(http.MethodPost)
	v1.Handle("/involvements/{id}", s.audited(s.patchInvolvement)).Methods(http.MethodPatch)
	v1.Handle("/involvements/{id}/end", s.audited(s.endInvolvement)).Methods(http.MethodPost)
	v1.Handle("/caseload", s.audited(s.putCaseload)).Methods(http.MethodPut)
	v1.Handle("/subjects/{nhs}/involvements", s.audited(s.lookup)).Methods(http.MethodGet)
	v1.Handle("/matches", s.audited(s.listMatches)).Methods(http.MethodGet)
	v1.Handle("/early-help", s.audited(s.openEpisode)).Methods(http.MethodPost)
	v1.Handle("/early-help/{id}/close", s.audited(s.closeEpisode)).Methods(http.MethodPost)
	v1.Handle("/early-help/{id}/team", s.audited(s.joinTeam)).Methods(http.MethodPost)
	v1.Handle("/early-help/{id}/team/leave", s.audited(s.leaveTeam)).Methods(http.MethodPost)
	v1.Handle("/early-help/{id}/lead-professional", s.audited(s.putEpisodeLead)).Methods(http.MethodPut)
	v1.Handle("/admin/index/retention", s.audited(s.postRetention)).Methods(http.MethodPost)
}

// InvolvementBody is one involvement as an agency sends it: identifiers,
// codes, dates, flags and a work contact; no case detail (an unknown
// field, free text among them, is refused).
type InvolvementBody struct {
	Subject string `json:"subject"`
	// Partner is the recording agency; only the caller's own (default).
	Partner          string `json:"partner,omitempty"`
	Practitioner     string `json:"practitioner"`
	Phone            string `json:"phone,omitempty"`
	Email            string `json:"email,omitempty"`
	Service          string `json:"service"`
	Kind             string `json:"kind"`
	Concern          bool   `json:"concern,omitempty"`
	ShareWithMatches bool   `json:"share_with_matches,omitempty"`
	Start            string `json:"start"`
	End              string `json:"end,omitempty"`
}

// involvementOf validates b (fields named with prefix p) into an
// involvement of the caller's agency, with the NHS number it names.
func (s *Server) involvementOf(x *exchange, b *InvolvementBody, p string) (*involvement.Involvement, string, error) {
	subject, err := nhsField(p+"subject", b.Subject)
	if err != nil {
		return nil, "", err
	}
	if b.Partner != "" && b.Partner != x.claims.Partner {
		return nil, "", badRequest(p+"partner", fmt.Sprintf("%q is another agency: an agency records only its own practitioners' involvements (the token is %s's)", clip(b.Partner), x.claims.Partner))
	}
	start, err := timeField(p+"start", b.Start)
	if err != nil {
		return nil, "", err
	}
	end, err := timeField(p+"end", b.End)
	if err != nil {
		return nil, "", err
	}
	me, _ := x.rev.Registry.Partner(x.claims.Partner)
	v := &involvement.Involvement{
		Partner: x.claims.Partner, Practitioner: b.Practitioner,
		Contact: involvement.Contact{Phone: b.Phone, Email: b.Email},
		Service: b.Service, Kind: b.Kind, Concern: b.Concern, ShareWithMatches: b.ShareWithMatches,
		Start: start, End: end,
		Shielded:  (me != nil && me.Sensitive) || involvement.IsShieldedKind(b.Kind),
		UpdatedBy: s.actor(x), RequestID: x.id,
	}
	if err := v.Check(p); err != nil {
		return nil, "", s.indexError(x, err)
	}
	if b.ShareWithMatches && !v.Shielded {
		return nil, "", badRequest(p+"share_with_matches", "only a shielded service's involvement is withheld from matches; this one is shown to them anyway")
	}
	return v, subject, nil
}

func (s *Server) actor(x *exchange) involvement.Actor {
	return involvement.Actor{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role}
}

// matchRule asks the revision's match rule who of a new match is told of
// whom.
func (s *Server) matchRule(x *exchange) involvement.MatchRule {
	side := func(v *involvement.Involvement) policy.MatchParty {
		p := policy.MatchParty{Partner: v.Partner, Kind: v.Kind, Shielded: v.Shielded, ShareWithMatches: v.ShareWithMatches}
		if pp, ok := x.rev.Registry.Partner(v.Partner); ok {
			p.Type = string(pp.Type)
		}
		return p
	}
	return func(a, b *involvement.Involvement) (bool, bool, error) {
		ctx, cancel := context.WithTimeout(x.ctx, s.opts.EvalTimeout)
		defer cancel()
		d, err := x.rev.Policy.MatchDecide(ctx, &policy.MatchInput{TimeNS: x.entry.Time.UnixNano(), A: side(a), B: side(b)})
		if err != nil {
			return false, false, err
		}
		return d.TellA, d.TellB, nil
	}
}

// held queues ns durably but held, releases them once the audit entry is
// written and takes them back if it cannot be (as a disclosure's).
func (s *Server) held(x *exchange, ns []*provider.Notification) error {
	if len(ns) == 0 {
		return nil
	}
	if s.deps.Notices == nil {
		return errSharingOff
	}
	nctx := context.WithoutCancel(x.ctx)
	push := func(p string) bool { pp, ok := x.rev.Registry.Partner(p); return ok && pp.Webhook != "" }
	if err := s.deps.Notices.Add(nctx, ns, push); err != nil {
		return err
	}
	x.onAuditFailure(func(ctx context.Context) error { return s.deps.Notices.Remove(ctx, ns) })
	x.afterAudit(func(ctx context.Context) {
		if err := s.deps.Notices.Release(ctx, ns); err != nil {
			x.log.Error("notifications stay held until the gateway restarts", "err", err)
		}
	})
	for _, n := range ns {
		x.entry.NotificationIDs = append(x.entry.NotificationIDs, n.ID)
	}
	return nil
}

// matchNotices builds the match messages: each practitioner told of the
// other, through their agency's notifications. subjects maps a pseudonym
// to the child's NHS number.
func (s *Server) matchNotices(x *exchange, ms []involvement.Match, subjects func(string) string) []*provider.Notification {
	var out []*provider.Notification
	for _, m := range ms {
		for _, side := range []struct {
			told      bool
			me, other involvement.Party
		}{{m.TellA, m.A, m.B}, {m.TellB, m.B, m.A}} {
			if !side.told {
				continue
			}
			out = append(out, &provider.Notification{
				ID: provider.NewID(), Recipient: side.me.Partner, As: provider.AsMatched,
				Event: provider.EventMatch, Time: x.entry.Time, RequestID: x.id,
				Subject:    subjects(m.Subject),
				Requester:  provider.Requester{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role},
				Categories: []string{}, Fields: []string{},
				Match: &provider.MatchNotice{
					ID: m.ID, Involvement: side.me.Involvement, Practitioner: side.me.Practitioner,
					Other: provider.MatchedParty{Partner: side.other.Partner, Practitioner: side.other.Practitioner,
						Phone: side.other.Contact.Phone, Email: side.other.Contact.Email, Kind: side.other.Kind},
				},
			})
		}
		x.entry.IndexIDs = append(x.entry.IndexIDs, m.ID)
	}
	return out
}

func (s *Server) needIndex(x *exchange) error {
	x.entry.Kind = audit.KindRejected
	if s.deps.Index == nil {
		return errIndexOff
	}
	return nil
}

// indexRequest is the start of an index change with a JSON body: the
// index must be there (needIndex), the entry names the index action
// (none for the episode routes, whose kind says it), and the body is
// decoded strictly into body.
func (s *Server) indexRequest(x *exchange, action string, body any) error {
	if err := s.needIndex(x); err != nil {
		return err
	}
	if action != "" {
		x.entry.IndexAction = action
	}
	return s.decodeStrict(x, body)
}

// postInvolvement handles POST /v1/involvements: record one involvement
// of the caller's agency (201), and the matches its concern makes.
func (s *Server) postInvolvement(x *exchange) (int, any, error) {
	var b InvolvementBody
	if err := s.indexRequest(x, "record", &b); err != nil {
		return 0, nil, err
	}
	v, subject, err := s.involvementOf(x, &b, "")
	if err != nil {
		return 0, nil, err
	}
	if v.Subject, err = s.pseudonym(x, subject); err != nil {
		return 0, nil, err
	}
	v, ms, undo, err := s.deps.Index.Record(context.WithoutCancel(x.ctx), v, x.entry.Time, s.matchRule(x))
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	x.onAuditFailure(undo)
	x.entry.IndexIDs = []string{v.ID}
	if err := s.held(x, s.matchNotices(x, ms, func(string) string { return subject })); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindInvolvement
	return http.StatusCreated, map[string]any{"request_id": x.id, "involvement": s.ownView(v), "matches": s.matchViews(ms, x.claims.Partner, x.claims.Practitioner)}, nil
}

// InvolvementChange is the body of PATCH /v1/involvements/{id}.
type InvolvementChange struct {
	Practitioner     *string `json:"practitioner,omitempty"`
	Phone            *string `json:"phone,omitempty"`
	Email            *string `json:"email,omitempty"`
	Concern          *bool   `json:"concern,omitempty"`
	ShareWithMatches *bool   `json:"share_with_matches,omitempty"`
	// Renew restarts the two-year active period now.
	Renew bool `json:"renew,omitempty"`
}

// patchInvolvement handles PATCH /v1/involvements/{id}: change the
// practitioner, the contact or the concern, or renew.
func (s *Server) patchInvolvement(x *exchange) (int, any, error) {
	var b InvolvementChange
	if err := s.indexRequest(x, "update", &b); err != nil {
		return 0, nil, err
	}
	c := involvement.Change{Practitioner: b.Practitioner, Concern: b.Concern, ShareWithMatches: b.ShareWithMatches, Renew: b.Renew}
	if b.Practitioner != nil {
		if why := involvement.CheckPractitioner(*b.Practitioner); why != "" {
			return 0, nil, badRequest("practitioner", why)
		}
	}
	return s.changeInvolvement(x, c, b.Phone, b.Email)
}

// EndBody is the body of POST /v1/involvements/{id}/end.
type EndBody struct {
	// End is when the involvement ended (RFC 3339); default now.
	End string `json:"end,omitempty"`
}

// endInvolvement handles POST /v1/involvements/{id}/end. The involvement
// stays visible for the retention period, then is erased.
func (s *Server) endInvolvement(x *exchange) (int, any, error) {
	var b EndBody
	if err := s.indexRequest(x, "end", &b); err != nil {
		return 0, nil, err
	}
	end, err := timeOrNow(x, "end", b.End)
	if err != nil {
		return 0, nil, err
	}
	return s.changeInvolvement(x, involvement.Change{End: &end}, nil, nil)
}

func (s *Server) changeInvolvement(x *exchange, c involvement.Change, phone, email *string) (int, any, error) {
	id := mux.Vars(x.r)["id"]
	cur, err := s.deps.Index.Get(x.ctx, id)
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	if cur.Partner != x.claims.Partner {
		return 0, nil, notFound("your agency records no involvement " + clip(id))
	}
	x.entry.Subject = cur.Subject
	if phone != nil || email != nil {
		ct := cur.Contact
		if phone != nil {
			ct.Phone = *phone
		}
		if email != nil {
			ct.Email = *email
		}
		if err := ct.Check("contact"); err != nil {
			return 0, nil, s.indexError(x, err)
		}
		c.Contact = &ct
	}
	if c.ShareWithMatches != nil && *c.ShareWithMatches && !cur.Shielded {
		return 0, nil, badRequest("share_with_matches", "only a shielded service's involvement is withheld from matches; this one is shown to them anyway")
	}
	v, ms, undo, err := s.deps.Index.Update(context.WithoutCancel(x.ctx), x.claims.Partner, id, c, x.entry.Time, s.actor(x), x.id, s.matchRule(x))
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	x.onAuditFailure(undo)
	x.entry.IndexIDs = []string{v.ID}
	if len(ms) > 0 {
		// The NHS number is not stored: a concern raised by an update is
		// matched, and the match messages name the child by the involvement
		// id the recipient holds (the agency knows its own child).
		if err := s.held(x, s.matchNotices(x, ms, func(string) string { return "" })); err != nil {
			return 0, nil, err
		}
	}
	x.entry.Kind = audit.KindInvolvement
	return http.StatusOK, map[string]any{"request_id": x.id, "involvement": s.ownView(v), "matches": s.matchViews(ms, x.claims.Partner, x.claims.Practitioner)}, nil
}

// CaseloadBody is the body of PUT /v1/caseload: the agency's whole active
// caseload.
type CaseloadBody struct {
	Involvements []json.RawMessage `json:"involvements"`
}

// putCaseload handles PUT /v1/caseload: what the agency sends is the
// truth for it; involvements it no longer lists are ended, not deleted.
// Idempotent: the same caseload again changes nothing.
func (s *Server) putCaseload(x *exchange) (int, any, error) {
	if err := s.needIndex(x); err != nil {
		return 0, nil, err
	}
	x.entry.IndexAction = "sync"
	var b CaseloadBody
	if err := s.decodeLimited(x, &b, s.opts.MaxCaseloadBytes); err != nil {
		return 0, nil, err
	}
	if b.Involvements == nil {
		return 0, nil, badRequest("involvements", "required: the agency's active involvements (an empty list ends them all)")
	}
	items := make([]*involvement.Involvement, len(b.Involvements))
	nhsOf := make([]string, len(b.Involvements))
	seen := make(map[string]int, len(b.Involvements))
	for i, raw := range b.Involvements {
		p := fmt.Sprintf("involvements[%d]", i)
		var ib InvolvementBody
		if err := decodeObject(p, raw, &ib); err != nil {
			return 0, nil, err
		}
		if ib.End != "" {
			return 0, nil, badRequest(p+".end", "a caseload lists active involvements: end one by leaving it out")
		}
		v, subject, err := s.involvementOf(x, &ib, p+".")
		if err != nil {
			return 0, nil, err
		}
		k := subject + "|" + v.Service + "|" + v.Kind
		if j, dup := seen[k]; dup {
			return 0, nil, badRequest(p, fmt.Sprintf("the same child, service and kind as involvements[%d]", j))
		}
		seen[k] = i
		items[i], nhsOf[i] = v, subject
	}
	if err := s.pseudonyms(x, items, nhsOf); err != nil {
		return 0, nil, err
	}
	res, undo, err := s.deps.Index.Sync(context.WithoutCancel(x.ctx), x.claims.Partner, items, x.entry.Time, s.actor(x), x.id, s.matchRule(x))
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	x.onAuditFailure(undo)
	byPseudo := make(map[string]string, len(items))
	for i, v := range items {
		byPseudo[v.Subject] = nhsOf[i]
	}
	if err := s.held(x, s.matchNotices(x, res.Matches, func(p string) string { return byPseudo[p] })); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindInvolvement
	x.entry.IndexCounts = counts("created", res.Created, "updated", res.Updated, "unchanged", res.Unchanged, "ended", res.Ended, "matches", len(res.Matches))
	return http.StatusOK, map[string]any{"request_id": x.id, "created": res.Created, "updated": res.Updated,
		"unchanged": res.Unchanged, "ended": res.Ended, "matches": s.matchViews(res.Matches, x.claims.Partner, "")}, nil
}

// pseudonyms sets each item's Subject from its NHS number, a few at a
// time (a remote key store batches concurrent calls).
func (s *Server) pseudonyms(x *exchange, items []*involvement.Involvement, nhsOf []string) error {
	const workers = 8
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(items); i += workers {
				ctx, cancel := context.WithTimeout(x.ctx, s.opts.KeyTimeout)
				p, err := s.deps.Keys.Pseudonym(ctx, nhsOf[i])
				cancel()
				if err != nil {
					errs[w] = err
					return
				}
				items[i].Subject = p
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		x.entry.Kind = audit.KindUnavailable
		return err
	}
	return nil
}

// indexError maps the index's errors onto the one error mapping.
func (s *Server) indexError(x *exchange, err error) error {
	var fe *involvement.FieldError
	switch {
	case errors.As(err, &fe):
		return badRequest(fe.Field, fe.Reason)
	case errors.Is(err, involvement.ErrNotFound):
		return notFound(strings.TrimPrefix(err.Error(), involvement.ErrNotFound.Error()+": "))
	case errors.Is(err, involvement.ErrConflict):
		return &apiError{Status: http.StatusConflict, Code: "conflict", Reason: strings.TrimPrefix(err.Error(), involvement.ErrConflict.Error()+": "), Kind: audit.KindRejected}
	}
	x.entry.Kind = audit.KindUnavailable
	return err
}

// ---------------------------------------------------------------------------
// The lookup.

// InvolvementView is an involvement as a lookup shows it.
type InvolvementView struct {
	ID           string              `json:"id"`
	Partner      string              `json:"partner"`
	PartnerName  string              `json:"partner_name,omitempty"`
	Practitioner string              `json:"practitioner"`
	Contact      involvement.Contact `json:"contact"`
	Service      string              `json:"service"`
	Kind         string              `json:"kind"`
	Concern      bool                `json:"concern"`
	Shielded     bool                `json:"shielded,omitempty"`
	Start        time.Time           `json:"start"`
	End          *time.Time          `json:"end,omitempty"`
	EndReason    string              `json:"end_reason,omitempty"`
	Status       string              `json:"status"`
	RenewBy      *time.Time          `json:"renew_by,omitempty"`
}

func (s *Server) viewOf(v *involvement.Involvement, now time.Time, name string) InvolvementView {
	out := InvolvementView{ID: v.ID, Partner: v.Partner, PartnerName: name, Practitioner: v.Practitioner, Contact: v.Contact,
		Service: v.Service, Kind: v.Kind, Concern: v.Concern, Shielded: v.Shielded, Start: v.Start, EndReason: v.EndReason, Status: "active"}
	if !v.End.IsZero() {
		e := v.End
		out.End = &e
	}
	if !v.Active(now) {
		out.Status = "ended"
	}
	return out
}

// ownView is an involvement as the agency that recorded it sees it.
func (s *Server) ownView(v *involvement.Involvement) InvolvementView {
	out := s.viewOf(v, s.opts.Now(), "")
	if v.Active(s.opts.Now()) && s.opts.ActiveFor > 0 {
		r := v.RenewedAt.Add(s.opts.ActiveFor)
		out.RenewBy = &r
	}
	return out
}

// lookup handles GET /v1/subjects/{nhs}/involvements?purpose=P: who else
// is involved with the child, decided by the lookup policy.
func (s *Server) lookup(x *exchange) (int, any, error) {
	if err := s.needIndex(x); err != nil {
		return 0, nil, err
	}
	x.entry.IndexAction = "lookup"
	q, err := queryParams(x, "purpose")
	if err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindRejected
	purpose := q["purpose"]
	if purpose != "" && !x.rev.Registry.HasPurpose(purpose) {
		return 0, nil, badRequest("purpose", fmt.Sprintf("%q is not a purpose of the Trust", clip(purpose)))
	}
	x.entry.Purpose = purpose
	subject, err := nhsField("nhs", mux.Vars(x.r)["nhs"])
	if err != nil {
		return 0, nil, err
	}
	pseudo, err := s.pseudonym(x, subject)
	if err != nil {
		return 0, nil, err
	}
	now := x.entry.Time
	snap, err := s.deps.Index.View(x.ctx, pseudo, now)
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	var consents []policy.Consent
	if s.deps.Consents != nil && purpose != "" {
		if consents, err = s.deps.Consents.ForDecision(x.ctx, pseudo); err != nil {
			x.entry.Kind = audit.KindUnavailable
			return 0, nil, err
		}
	}
	me, _ := x.rev.Registry.Partner(x.claims.Partner)
	in := &policy.LookupInput{
		TimeNS: now.UnixNano(), Purpose: purpose,
		Requester: policy.Requester{Partner: x.claims.Partner, Type: string(me.Type), Practitioner: x.claims.Practitioner, Role: x.claims.Role},
		Consents:  orNone(consents),
		Involved:  []policy.Involved{},
	}
	seen := map[string]int{}
	for _, v := range snap.Involvements {
		if v.Active(now) && v.Partner == x.claims.Partner && v.Practitioner == x.claims.Practitioner {
			in.Own.Involvement = true
		}
		i, ok := seen[v.Partner]
		if !ok {
			typ := ""
			if p, ok := x.rev.Registry.Partner(v.Partner); ok {
				typ = string(p.Type)
			}
			i = len(in.Involved)
			seen[v.Partner] = i
			in.Involved = append(in.Involved, policy.Involved{Partner: v.Partner, Type: typ})
		}
		in.Involved[i].Shielded = in.Involved[i].Shielded || v.Shielded
	}
	open := openEpisode(snap)
	if open != nil && open.IsMember(x.claims.Partner, x.claims.Practitioner) {
		in.Own.Team = true
	}
	ctx, cancel := context.WithTimeout(x.ctx, s.opts.EvalTimeout)
	d, err := x.rev.Policy.LookupDecide(ctx, in)
	cancel()
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err
	}
	x.entry.Kind = audit.KindLookup
	x.entry.Reasons = d.Reasons
	decision := map[string]any{"allow": d.Allow, "reasons": d.Reasons, "basis": d.Basis, "protocol": d.Protocol}
	if !d.Allow {
		x.entry.Decision = "deny"
		return http.StatusForbidden, map[string]any{
			"request_id": x.id, "decision": decision, "policy_revision": x.rev.Hash(),
			"error": errorBody{Code: "denied", Message: "no basis to look up who is involved with this child: " + strings.Join(d.Reasons, "; ")},
		}, nil
	}
	x.entry.Decision = "allow"
	if d.Protocol != nil {
		x.entry.Protocol, x.entry.ProtocolVersion, x.entry.Rule = d.Protocol.ID, d.Protocol.Version, d.Protocol.Rule
	}
	shielded := func(partner string, v bool) bool { return v && partner != x.claims.Partner }
	views := []InvolvementView{}
	for _, v := range snap.Involvements {
		if shielded(v.Partner, v.Shielded) {
			continue
		}
		name := ""
		if p, ok := x.rev.Registry.Partner(v.Partner); ok {
			name = p.Name
		}
		views = append(views, s.viewOf(v, now, name))
		x.entry.IndexIDs = append(x.entry.IndexIDs, v.ID)
	}
	sort.SliceStable(views, func(i, j int) bool {
		if (views[i].Status == "active") != (views[j].Status == "active") {
			return views[i].Status == "active"
		}
		return views[i].Start.After(views[j].Start)
	})
	body := map[string]any{
		"request_id": x.id, "decision": decision, "policy_revision": x.rev.Hash(),
		"involvements": views,
		"early_help":   s.episodeView(x, snap, open),
	}
	if d.Shielded == policy.ShieldedAcknowledged {
		body["shielded_services"] = map[string]any{"involved": true, "told_of_enquiry": true}
	}
	ns := make([]*provider.Notification, 0, len(d.Notify))
	for _, p := range d.Notify {
		ns = append(ns, &provider.Notification{
			ID: provider.NewID(), Recipient: p, As: provider.AsInvolved, Event: provider.EventLookup,
			Time: x.entry.Time, RequestID: x.id, Subject: subject, Purpose: purpose,
			Requester:  provider.Requester{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role},
			Categories: []string{}, Fields: []string{},
			Lookup: &provider.LookupNotice{Shielded: in.Involved[seen[p]].Shielded},
		})
	}
	if err := s.held(x, ns); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, body, nil
}

func orNone(cs []policy.Consent) []policy.Consent {
	if cs == nil {
		return []policy.Consent{}
	}
	return cs
}

func openEpisode(snap *involvement.Snapshot) *involvement.Episode {
	for _, e := range snap.Episodes {
		if e.Open() {
			return e
		}
	}
	return nil
}

// episodeView is the early help part of a lookup: whether an episode is
// open, its team, lead professional and lead history. A sensitive
// service's members and terms are shown only to that service.
func (s *Server) episodeView(x *exchange, snap *involvement.Snapshot, open *involvement.Episode) map[string]any {
	if open == nil {
		out := map[string]any{"open": false}
		if n := len(snap.Episodes); n > 0 {
			last := snap.Episodes[n-1]
			out["last_closed"] = last.Closed
		}
		return out
	}
	hidden := func(partner string) bool {
		p, ok := x.rev.Registry.Partner(partner)
		return ok && p.Sensitive && partner != x.claims.Partner
	}
	// The team as it is and as it was: members who left keep their
	// place, with the date they left.
	team := []involvement.Member{}
	for _, m := range open.Team {
		if !hidden(m.Partner) {
			team = append(team, m)
		}
	}
	leads := []involvement.Lead{}
	for _, l := range open.Leads {
		if !hidden(l.Partner) {
			leads = append(leads, l)
		}
	}
	var lead any
	if l := open.Lead(); l != nil && !hidden(l.Partner) {
		lead = map[string]any{"partner": l.Partner, "practitioner": l.Practitioner, "from": l.From}
	}
	x.entry.IndexIDs = append(x.entry.IndexIDs, open.ID)
	return map[string]any{"open": true, "id": open.ID, "opened": open.Opened, "team": team, "lead_professional": lead, "lead_history": leads}
}

// ---------------------------------------------------------------------------
// Matches.

// MatchView is a match as one of its practitioners sees it.
type MatchView struct {
	ID           string            `json:"id"`
	Time         time.Time         `json:"time"`
	Involvement  string            `json:"involvement"`
	Practitioner string            `json:"practitioner"`
	Other        involvement.Party `json:"other"`
}

// matchViews are the matches as practitioner of partner sees them (""
// practitioner: any of the agency's).
func (s *Server) matchViews(ms []involvement.Match, partner, practitioner string) []MatchView {
	out := []MatchView{}
	for _, m := range ms {
		for _, side := range []struct {
			told      bool
			me, other involvement.Party
		}{{m.TellA, m.A, m.B}, {m.TellB, m.B, m.A}} {
			if side.told && side.me.Partner == partner && (practitioner == "" || side.me.Practitioner == practitioner) {
				out = append(out, MatchView{ID: m.ID, Time: m.Time, Involvement: side.me.Involvement, Practitioner: side.me.Practitioner, Other: side.other})
			}
		}
	}
	return out
}

// listMatches handles GET /v1/matches: the caller's own matches (the
// practitioner of the token), newest first.
func (s *Server) listMatches(x *exchange) (int, any, error) {
	if err := s.needIndex(x); err != nil {
		return 0, nil, err
	}
	if _, err := queryParams(x); err != nil {
		return 0, nil, err
	}
	ms, err := s.deps.Index.Matches(x.ctx, x.claims.Partner, x.claims.Practitioner)
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	x.entry.Kind = audit.KindAccess
	return http.StatusOK, map[string]any{"request_id": x.id, "matches": s.matchViews(ms, x.claims.Partner, x.claims.Practitioner)}, nil
}

// ---------------------------------------------------------------------------
// Early help episodes.

// EpisodeBody is the body of POST /v1/early-help.
type EpisodeBody struct {
	Subject string `json:"subject"`
	// Opened defaults to now; Role is the opener's role in the team
	// (default the token's).
	Opened string `json:"opened,omitempty"`
	Role   string `json:"role,omitempty"`
}

// mayConvene reports whether the caller may open an episode for, or
// change the team of, a child: a local authority social worker, team
// manager or early help worker, or a practitioner whose agency is
// involved (has an active involvement, or a member in the open team).
func (s *Server) mayConvene(x *exchange, snap *involvement.Snapshot) bool {
	if caller, ok := x.rev.Registry.Partner(x.claims.Partner); ok && caller.Type == registry.LocalAuthority && contains(coordinatingRoles, x.claims.Role) {
		return true
	}
	for _, v := range snap.Involvements {
		if v.Partner == x.claims.Partner && v.Active(x.entry.Time) {
			return true
		}
	}
	if e := openEpisode(snap); e != nil && e.HasMember(x.claims.Partner) {
		return true
	}
	return false
}

func (s *Server) role(field, role string, x *exchange) (string, error) {
	if role == "" {
		return x.claims.Role, nil
	}
	if !x.rev.Registry.HasRole(role) {
		return "", badRequest(field, fmt.Sprintf("%q is not a role of the Trust", clip(role)))
	}
	return role, nil
}

// openEpisode handles POST /v1/early-help: open an early help episode
// (the assessment) for a child; the opener joins the team.
func (s *Server) openEpisode(x *exchange) (int, any, error) {
	var b EpisodeBody
	if err := s.indexRequest(x, "episode_open", &b); err != nil {
		return 0, nil, err
	}
	subject, err := nhsField("subject", b.Subject)
	if err != nil {
		return 0, nil, err
	}
	opened, err := timeOrNow(x, "opened", b.Opened)
	if err != nil {
		return 0, nil, err
	}
	role, err := s.role("role", b.Role, x)
	if err != nil {
		return 0, nil, err
	}
	pseudo, err := s.pseudonym(x, subject)
	if err != nil {
		return 0, nil, err
	}
	snap, err := s.deps.Index.View(x.ctx, pseudo, x.entry.Time)
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	if !s.mayConvene(x, snap) {
		return 0, nil, forbidden("only an involved agency, or a local authority social worker, team manager or early help worker, may open an early help episode")
	}
	e, undo, err := s.deps.Index.OpenEpisode(context.WithoutCancel(x.ctx), pseudo, opened, s.actor(x), role)
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	x.onAuditFailure(undo)
	x.entry.IndexIDs = []string{e.ID}
	x.entry.Kind = audit.KindInvolvement
	return http.StatusCreated, map[string]any{"request_id": x.id, "episode": e}, nil
}

// changeEpisode authorises and applies one change to an open episode:
// the caller must be in its team, or a local authority coordinator.
func (s *Server) changeEpisode(x *exchange, action string, fn func(*involvement.Episode) error) (int, any, error) {
	id := mux.Vars(x.r)["id"]
	e, err := s.deps.Index.Episode(x.ctx, id)
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	x.entry.Subject = e.Subject
	x.entry.IndexAction = action
	caller, _ := x.rev.Registry.Partner(x.claims.Partner)
	if !e.IsMember(x.claims.Partner, x.claims.Practitioner) && (caller == nil || caller.Type != registry.LocalAuthority || !contains(coordinatingRoles, x.claims.Role)) {
		return 0, nil, forbidden("only a member of the team around the child, or a local authority social worker, team manager or early help worker, may change an early help episode")
	}
	e, undo, err := s.deps.Index.ChangeEpisode(context.WithoutCancel(x.ctx), id, fn)
	if err != nil {
		return 0, nil, s.indexError(x, err)
	}
	x.onAuditFailure(undo)
	x.entry.IndexIDs = []string{e.ID}
	x.entry.Kind = audit.KindInvolvement
	return http.StatusOK, map[string]any{"request_id": x.id, "episode": e}, nil
}

// CloseBody is the body of POST /v1/early-help/{id}/close.
type CloseBody struct {
	Closed string `json:"closed,omitempty"`
}

func (s *Server) closeEpisode(x *exchange) (int, any, error) {
	var b CloseBody
	if err := s.indexRequest(x, "", &b); err != nil {
		return 0, nil, err
	}
	t, err := timeOrNow(x, "closed", b.Closed)
	if err != nil {
		return 0, nil, err
	}
	return s.changeEpisode(x, "episode_close", involvement.Close(t, s.actor(x)))
}

// MemberBody is the body of POST /v1/early-help/{id}/team and .../leave.
type MemberBody struct {
	Partner      string `json:"partner,omitempty"` // default the caller's agency
	Practitioner string `json:"practitioner"`
	Role         string `json:"role,omitempty"` // joining: required
	Joined       string `json:"joined,omitempty"`
	Left         string `json:"left,omitempty"`
}

func (s *Server) member(x *exchange, b *MemberBody) error {
	if b.Partner == "" {
		b.Partner = x.claims.Partner
	}
	if _, ok := x.rev.Registry.Partner(b.Partner); !ok {
		return badRequest("partner", fmt.Sprintf("%q is not a partner of the Trust", clip(b.Partner)))
	}
	if why := involvement.CheckPractitioner(b.Practitioner); why != "" {
		return badRequest("practitioner", why)
	}
	return nil
}

func (s *Server) joinTeam(x *exchange) (int, any, error) {
	var b MemberBody
	if err := s.indexRequest(x, "", &b); err != nil {
		return 0, nil, err
	}
	if err := s.member(x, &b); err != nil {
		return 0, nil, err
	}
	if b.Left != "" {
		return 0, nil, badRequest("left", "not for joining (POST .../team/leave)")
	}
	if b.Role == "" || !x.rev.Registry.HasRole(b.Role) {
		return 0, nil, badRequest("role", "required: the member's role, one of the Trust's roles")
	}
	t, err := timeOrNow(x, "joined", b.Joined)
	if err != nil {
		return 0, nil, err
	}
	return s.changeEpisode(x, "team_join", involvement.Join(involvement.Member{Partner: b.Partner, Practitioner: b.Practitioner, Role: b.Role, Joined: t}))
}

func (s *Server) leaveTeam(x *exchange) (int, any, error) {
	var b MemberBody
	if err := s.indexRequest(x, "", &b); err != nil {
		return 0, nil, err
	}
	if err := s.member(x, &b); err != nil {
		return 0, nil, err
	}
	if b.Joined != "" || b.Role != "" {
		return 0, nil, badRequest(map[bool]string{true: "joined", false: "role"}[b.Joined != ""], "not for leaving")
	}
	t, err := timeOrNow(x, "left", b.Left)
	if err != nil {
		return 0, nil, err
	}
	return s.changeEpisode(x, "team_leave", involvement.Leave(b.Partner, b.Practitioner, t))
}

// EpisodeLeadBody is the body of PUT /v1/early-help/{id}/lead-professional.
type EpisodeLeadBody struct {
	Partner      string `json:"partner,omitempty"` // default the caller's agency
	Practitioner string `json:"practitioner"`
}

// putEpisodeLead handles PUT /v1/early-help/{id}/lead-professional: the
// lead professional is chosen from the team (only an involved agency may
// be named); every change is kept in the episode's lead history.
func (s *Server) putEpisodeLead(x *exchange) (int, any, error) {
	var b EpisodeLeadBody
	if err := s.indexRequest(x, "", &b); err != nil {
		return 0, nil, err
	}
	mb := MemberBody{Partner: b.Partner, Practitioner: b.Practitioner}
	if err := s.member(x, &mb); err != nil {
		return 0, nil, err
	}
	x.entry.LeadPartner, x.entry.LeadPractitioner = mb.Partner, mb.Practitioner
	lead := involvement.Lead{Partner: mb.Partner, Practitioner: mb.Practitioner, From: x.entry.Time, SetBy: s.actor(x), RequestID: x.id}
	var prev *involvement.Lead
	status, body, err := s.changeEpisode(x, "lead", func(e *involvement.Episode) error {
		if l := e.Lead(); l != nil {
			cp := *l
			prev = &cp
		}
		return involvement.SetLead(lead)(e)
	})
	if err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindLead
	if err := s.tellPreviousLead(x, prev, lead, "", mux.Vars(x.r)["id"]); err != nil {
		return 0, nil, err
	}
	return status, body, nil
}

// leadRole is the team role of a lead professional named by someone else
// through PUT /v1/subjects/{nhs}/lead-professional (the route does not say
// the practitioner's role; naming oneself keeps one's own).
const leadRole = "lead_professional"

// currentLead is the child's lead professional (by pseudonym): the lead
// of the open early help episode in the index, the one place it is kept;
// nil when there is none, or no index.
func (s *Server) currentLead(x *exchange, pseudo string) (*involvement.Lead, error) {
	if s.deps.Index == nil {
		return nil, nil
	}
	snap, err := s.deps.Index.View(x.ctx, pseudo, x.entry.Time)
	if err != nil {
		return nil, err
	}
	if e := openEpisode(snap); e != nil {
		return e.Lead(), nil
	}
	return nil, nil
}

// tellPreviousLead tells the previous lead professional's agency that its
// practitioner no longer holds the lead (held until the audit entry is
// durable) — only while that agency is entitled to know about the child
// (Involvement). subject is the child's NHS number when the request named
// it, episode the episode's id when it did not.
func (s *Server) tellPreviousLead(x *exchange, prev *involvement.Lead, next involvement.Lead, subject, episode string) error {
	if prev == nil || (prev.Partner == next.Partner && prev.Practitioner == next.Practitioner) {
		return nil
	}
	ok, err := s.involvement().Involved(x.ctx, x.rev, prev.Partner, x.entry.Subject, x.entry.Time)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return err
	}
	if !ok {
		return nil
	}
	return s.held(x, []*provider.Notification{{
		ID: provider.NewID(), Recipient: prev.Partner, As: provider.AsLeadProfessional, LeadPractitioner: prev.Practitioner,
		Event: provider.EventLeadChanged, Time: x.entry.Time, RequestID: x.id, Subject: subject, Episode: episode,
		Requester:  provider.Requester{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role},
		Categories: []string{}, Fields: []string{},
	}})
}

// ---------------------------------------------------------------------------
// Retention.

// postRetention handles POST /v1/admin/index/retention: an IG lead runs
// the retention sweep now (it also runs on its own, index.sweep_every).
func (s *Server) postRetention(x *exchange) (int, any, error) {
	if err := s.needIndex(x); err != nil {
		return 0, nil, err
	}
	x.entry.IndexAction = "retention"
	if err := requireRole(x, "run the index's retention", AdminRole); err != nil {
		return 0, nil, err
	}
	if err := s.emptyBody(x); err != nil {
		return 0, nil, err
	}
	res, err := s.SweepIndex(x.ctx)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err
	}
	x.entry.IndexCounts = counts("lapsed", res.Lapsed, "children", res.Children, "erased", res.Erased)
	return http.StatusOK, map[string]any{"request_id": x.id, "lapsed": res.Lapsed, "children": res.Children, "erased": res.Erased}, nil
}

// SweepIndex applies the index's retention now: each child's erasure is
// an audit entry (kind erasure, the child's pseudonym, the ids erased),
// written before anything is erased.
func (s *Server) SweepIndex(ctx context.Context) (*involvement.SweepResult, error) {
	if s.deps.Index == nil {
		return &involvement.SweepResult{}, nil
	}
	return s.deps.Index.Sweep(ctx, s.opts.Now(), func(ctx context.Context, e *involvement.Erasure) error {
		entry := audit.Entry{
			Time: s.opts.Now().UTC(), RequestID: newRequestID(), Kind: audit.KindErasure,
			Requester: s.opts.GatewayID, Subject: e.Subject, IndexAction: "erase", IndexIDs: e.IDs(),
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _, err := s.deps.Audit.Append(actx, &entry)
		return err
	})
}

// counts formats name, count pairs as the audit entry's "name=count".
func counts(kv ...any) []string {
	out := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, fmt.Sprintf("%s=%d", kv[i], kv[i+1]))
	}
	return out
}

// timeOrNow parses an optional RFC 3339 time in field; absent, the
// request's time.
func timeOrNow(x *exchange, field, v string) (time.Time, error) {
	t, err := timeField(field, v)
	if err == nil && t.IsZero() {
		t = x.entry.Time
	}
	return t, err
}
