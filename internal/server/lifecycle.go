package server

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/revision"
	"github.com/childrens-trust/trustgate/internal/whatif"
)

// Lifecycle loads, checks and activates policy revisions
// (internal/revision.Loader). Reload runs every check on a candidate and
// publishes it only if all pass; it never fails a request in flight.
type Lifecycle interface {
	Reload(ctx context.Context, source string) *revision.Report
	Status() revision.Status
}

// WhatIfRunner replays recorded decisions against a proposed revision
// (internal/whatif.Runner).
type WhatIfRunner interface {
	Run(ctx context.Context, p whatif.Proposal) (*whatif.Result, error)
}

// AdminRole is the role that may reload the gateway's revision, read its
// status and run a what-if replay.
const AdminRole = "ig_lead"

// upcomingWindow is how far ahead GET /v1/policies lists review dates,
// expiries and withdrawals.
const upcomingWindow = 30 * 24 * time.Hour

func (s *Server) lifecycleRoutes(v1 *mux.Router) {
	v1.Handle("/policies", s.audited(s.listPolicies)).Methods(http.MethodGet)
	v1.Handle("/admin/reload", s.audited(s.postReload)).Methods(http.MethodPost)
	v1.Handle("/admin/status", s.audited(s.adminStatus)).Methods(http.MethodGet)
	v1.Handle("/admin/whatif", s.audited(s.postWhatIf)).Methods(http.MethodPost)
}

var errNoLifecycle = &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Reason: "policy lifecycle management is not configured", Kind: audit.KindUnavailable}

// postReload handles POST /v1/admin/reload: load the configured policies
// and protocols beside the serving revision, check them, and activate them
// only if every check passes. 200 when the candidate passed (activated, or
// unchanged), 422 with every problem when it was rejected; either way the
// report says what was checked.
func (s *Server) postReload(x *exchange) (int, any, error) {
	if err := requireRole(x, "reload the policy revision", AdminRole); err != nil {
		return 0, nil, err
	}
	if err := requireTrustWide(x, "reload the policy revision"); err != nil {
		return 0, nil, err
	}
	if s.deps.Lifecycle == nil {
		return 0, nil, errNoLifecycle
	}
	if err := s.emptyBody(x); err != nil {
		return 0, nil, err
	}
	// The reload belongs to the gateway, not to the caller: it completes
	// even if the caller hangs up (the loader bounds it).
	source := "api: " + x.claims.Partner + "/" + x.claims.Practitioner
	rep := s.deps.Lifecycle.Reload(context.WithoutCancel(x.ctx), source)
	serving := s.deps.Revisions.Current()
	body := map[string]any{
		"request_id":      x.id,
		"activated":       rep.Activated,
		"unchanged":       rep.Unchanged,
		"policy_revision": serving.Hash(),
		"previous":        rep.Previous,
		"report":          rep,
	}
	if !rep.OK {
		summary := rep.Summary()
		x.entry.Error = clip(summary)
		x.entry.Reasons = problemLines(rep, 10)
		body["error"] = errorBody{Code: "reload_rejected", Message: "the candidate revision failed its checks; the previous revision keeps serving: " + summary}
		return http.StatusUnprocessableEntity, body, nil
	}
	switch {
	case rep.Activated:
		x.entry.Reasons = []string{"activated revision " + rep.Revision + " (was " + rep.Previous + ")"}
	default:
		x.entry.Reasons = []string{"reloaded unchanged revision " + rep.Revision}
	}
	return http.StatusOK, body, nil
}

func problemLines(rep *revision.Report, n int) []string {
	var out []string
	for i, p := range rep.Problems {
		if i == n {
			break
		}
		out = append(out, clip(p.String()))
	}
	return out
}

// emptyBody accepts no body, or an empty JSON object sent as
// application/json (POST /v1/admin/reload, /v1/admin/index/retention).
func (s *Server) emptyBody(x *exchange) error {
	raw, err := io.ReadAll(http.MaxBytesReader(nil, x.r.Body, 1024))
	if err != nil {
		return badRequest("body", "must be empty")
	}
	t := strings.TrimSpace(string(raw))
	if t == "" {
		return nil
	}
	// A body, even {}, is JSON: it says so (415 otherwise), like every
	// other body the gateway reads.
	if err := jsonContentType(x.r); err != nil {
		return err
	}
	if t != "{}" {
		return badRequest("body", "must be empty: this endpoint takes no parameters")
	}
	return nil
}

// adminStatus handles GET /v1/admin/status: the serving revision, when and
// by what it was activated, the last reload and the last rejected one with
// every problem, and what the file watch sees.
func (s *Server) adminStatus(x *exchange) (int, any, error) {
	if err := requireRole(x, "read the gateway's revision status", AdminRole); err != nil {
		return 0, nil, err
	}
	if err := requireTrustWide(x, "read the gateway's revision status"); err != nil {
		return 0, nil, err
	}
	if s.deps.Lifecycle == nil {
		return 0, nil, errNoLifecycle
	}
	return http.StatusOK, map[string]any{
		"request_id":      x.id,
		"policy_revision": x.rev.Hash(),
		"status":          s.deps.Lifecycle.Status(),
		"decision_memo":   s.memoStatus(),
	}, nil
}

// memoView is the decision memo of the active revision as
// GET /v1/admin/status shows it.
type memoView struct {
	Revision string `json:"policy_revision,omitempty"` // the revision it serves; empty before its first decision
	Enabled  bool   `json:"enabled"`                   // the configuration allows a memo
	Off      string `json:"off,omitempty"`             // why this revision's decisions are all evaluated
	Hits     uint64 `json:"hits"`                      // decisions answered from the memo
	Misses   uint64 `json:"misses"`                    // decisions evaluated and remembered
	// TrustParts is how many Trust-level parts (the rules that apply to
	// a requester, role, provider and purpose) the memo holds;
	// TrustPrefill is "running" or "done" when policy.trust_prefill
	// computes them ahead (decision.Memo.Prefill).
	TrustParts   int    `json:"trust_parts"`
	TrustPrefill string `json:"trust_prefill,omitempty"`
}

// MemoStats is the active revision's decision memo: decisions answered
// from it and decisions evaluated and remembered (metrics).
func (s *Server) MemoStats() (hits, misses uint64) {
	v := s.memoStatus()
	return v.Hits, v.Misses
}

func (s *Server) memoStatus() memoView {
	v := memoView{Enabled: s.opts.DecisionMemo > 0}
	if rm := s.memo.Load(); rm != nil {
		v.Revision = rm.rev.Hash()
		_, v.Off = rm.m.Off()
		v.Hits, v.Misses = rm.m.Stats()
		v.TrustParts, v.TrustPrefill = rm.m.TrustParts()
	}
	return v
}

// signatoryView is one signatory of a protocol in force and the key it
// signed with.
type signatoryView struct {
	Partner string `json:"partner"`
	KeyID   string `json:"kid"`
}

type protocolWithdrawalView struct {
	Partner   string    `json:"partner"`
	KeyID     string    `json:"kid"`
	Version   string    `json:"version"`
	Effective time.Time `json:"effective"`
	SignedAt  time.Time `json:"signed_at"`
}

type inForceView struct {
	ID            string                   `json:"id"`
	Version       string                   `json:"version"`
	Title         string                   `json:"title"`
	File          string                   `json:"file"`
	Digest        string                   `json:"digest"`
	Signatories   []signatoryView          `json:"signatories"`
	Purposes      []string                 `json:"purposes"`
	EffectiveFrom string                   `json:"effective_from"`
	ReviewBy      string                   `json:"review_by"`
	Expires       string                   `json:"expires"`
	Until         time.Time                `json:"until"` // expires, or the first withdrawal
	Withdrawals   []protocolWithdrawalView `json:"withdrawals"`
	Warnings      []string                 `json:"warnings"`
}

type notInForceView struct {
	ID          string                   `json:"id,omitempty"`
	Version     string                   `json:"version,omitempty"`
	Title       string                   `json:"title,omitempty"`
	File        string                   `json:"file"`
	Reasons     []string                 `json:"reasons"`
	Withdrawals []protocolWithdrawalView `json:"withdrawals"`
}

// upcomingView is a date an IG lead must act on: a review due (or
// overdue), an expiry, a withdrawal taking effect.
type upcomingView struct {
	Protocol string    `json:"protocol"`
	Version  string    `json:"version"`
	Event    string    `json:"event"` // review_due, review_overdue, expires, withdrawal
	Date     time.Time `json:"date"`
	Days     int       `json:"days"` // from now; negative when past
	Partner  string    `json:"partner,omitempty"`
}

// listPolicies handles GET /v1/policies: the active revision (its hash,
// when and by what it was activated, its policy files), the protocols in
// force with their signatories, those not in force with the reasons, and
// the review dates, expiries and withdrawals due within 30 days.
func (s *Server) listPolicies(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindAccess
	now := s.opts.Now()
	rev := x.rev
	inForce, notInForce, upcoming := []inForceView{}, []notInForceView{}, []upcomingView{}
	for _, st := range rev.Protocols {
		p := st.Protocol
		wds := protocolWithdrawals(st)
		if !st.InForce || p == nil {
			v := notInForceView{File: baseName(st.File), Reasons: st.Reasons, Withdrawals: wds}
			if p != nil {
				v.ID, v.Version, v.Title = p.ID, p.Version, p.Title
			}
			notInForce = append(notInForce, v)
			continue
		}
		v := inForceView{
			ID: p.ID, Version: p.Version, Title: p.Title, File: baseName(st.File), Digest: st.Digest,
			Signatories: []signatoryView{}, Purposes: p.Purposes,
			EffectiveFrom: p.EffectiveFrom.String(), ReviewBy: p.ReviewBy.String(), Expires: p.Expires.String(),
			Until: st.Until, Withdrawals: wds, Warnings: st.Warnings,
		}
		for _, sig := range st.Signatures {
			if sig.OK && p.IsSignatory(sig.Partner) {
				v.Signatories = append(v.Signatories, signatoryView{Partner: sig.Partner, KeyID: sig.KeyID})
			}
		}
		inForce = append(inForce, v)
		upcoming = append(upcoming, upcomingFor(st, now)...)
	}
	slices.SortFunc(upcoming, func(a, b upcomingView) int { return a.Date.Compare(b.Date) })
	return http.StatusOK, map[string]any{
		"request_id":             x.id,
		"policy_revision":        rev.Hash(),
		"activated_at":           rev.ActivatedAt,
		"activated_by":           rev.Source,
		"files":                  rev.PolicyFiles,
		"samples":                len(rev.Samples),
		"protocols_in_force":     inForce,
		"protocols_not_in_force": notInForce,
		"upcoming":               upcoming,
	}, nil
}

func protocolWithdrawals(st protocol.Status) []protocolWithdrawalView {
	out := []protocolWithdrawalView{}
	for _, w := range st.Withdrawals {
		if w.OK {
			out = append(out, protocolWithdrawalView{Partner: w.Partner, KeyID: w.KeyID, Version: w.Claims.Version, Effective: w.Claims.Effective, SignedAt: w.Claims.SignedAt})
		}
	}
	return out
}

func upcomingFor(st protocol.Status, now time.Time) []upcomingView {
	p := st.Protocol
	var out []upcomingView
	add := func(event string, at time.Time, partner string) {
		out = append(out, upcomingView{Protocol: p.ID, Version: p.Version, Event: event, Date: at, Days: days(at.Sub(now)), Partner: partner})
	}
	horizon := now.Add(upcomingWindow)
	switch review := p.ReviewBy.Time(); {
	case !now.Before(review):
		add("review_overdue", review, "")
	case review.Before(horizon):
		add("review_due", review, "")
	}
	if exp := p.Expires.Time(); exp.Before(horizon) {
		add("expires", exp, "")
	}
	for _, w := range st.Withdrawals {
		if w.OK && w.Claims.Protocol == p.ID && w.Claims.Version == p.Version && p.IsSignatory(w.Partner) && w.Claims.Effective.Before(horizon) {
			add("withdrawal", w.Claims.Effective, w.Partner)
		}
	}
	return out
}

// days rounds d to whole days, up for the future and down for the past.
func days(d time.Duration) int {
	return int(math.Ceil(d.Hours() / 24))
}

// WhatIfRequest is the body of POST /v1/admin/whatif: a period (since, or
// from and to) and a proposed revision as edits to the serving policies
// and protocols (file name → new content; null removes the file).
type WhatIfRequest struct {
	Since        string             `json:"since,omitempty"`
	From         string             `json:"from,omitempty"`
	To           string             `json:"to,omitempty"`
	Policies     map[string]*string `json:"policies,omitempty"`
	Protocols    map[string]*string `json:"protocols,omitempty"`
	AssumeSigned *bool              `json:"assume_signed,omitempty"` // default true
	Examples     int                `json:"examples,omitempty"`
}

// maxWhatIfBody bounds a what-if request: whole policy and protocol files
// travel in it.
const maxWhatIfBody = 2 << 20

// postWhatIf handles POST /v1/admin/whatif: replay the recorded decisions
// of a period against the proposed revision and report which would
// change, grouped by change, protocol rule and purpose. 422 when the
// proposed policies do not compile (with the located problems).
func (s *Server) postWhatIf(x *exchange) (int, any, error) {
	if err := requireRole(x, "run a what-if replay", AdminRole); err != nil {
		return 0, nil, err
	}
	if err := requireTrustWide(x, "run a what-if replay"); err != nil {
		return 0, nil, err
	}
	if s.deps.WhatIf == nil {
		return 0, nil, errNoLifecycle
	}
	x.entry.Kind = audit.KindRejected
	var req WhatIfRequest
	if err := s.decodeLimited(x, &req, maxWhatIfBody); err != nil {
		return 0, nil, err
	}
	p, err := s.proposal(&req)
	if err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindAccess
	res, err := s.deps.WhatIf.Run(x.ctx, p)
	var ce *policy.CompileError
	switch {
	case errors.As(err, &ce):
		x.entry.Error = clip(ce.Error())
		return http.StatusUnprocessableEntity, map[string]any{
			"request_id":  x.id,
			"error":       errorBody{Code: "proposal_rejected", Message: "the proposed policies do not compile"},
			"diagnostics": ce.Diagnostics,
		}, nil
	case err != nil:
		return 0, nil, err
	}
	x.entry.Reasons = []string{clip(res.Summary())}
	return http.StatusOK, map[string]any{
		"request_id":      x.id,
		"policy_revision": x.rev.Hash(),
		"whatif":          res,
	}, nil
}

func (s *Server) proposal(req *WhatIfRequest) (whatif.Proposal, error) {
	now := s.opts.Now()
	p := whatif.Proposal{To: now, Policies: req.Policies, Protocols: req.Protocols, AssumeSigned: true, Examples: req.Examples}
	if req.AssumeSigned != nil {
		p.AssumeSigned = *req.AssumeSigned
	}
	if req.Examples < 0 || req.Examples > 50 {
		return p, badRequest("examples", "must be between 0 and 50")
	}
	if req.To != "" {
		t, err := time.Parse(time.RFC3339Nano, req.To)
		if err != nil {
			return p, badRequest("to", "not an RFC 3339 time")
		}
		p.To = t
	}
	switch {
	case req.Since != "" && req.From != "":
		return p, badRequest("since", "give since or from, not both")
	case req.Since != "":
		d, err := whatif.ParseSince(req.Since)
		if err != nil {
			return p, badRequest("since", err.Error())
		}
		p.From = p.To.Add(-d)
	case req.From != "":
		t, err := time.Parse(time.RFC3339Nano, req.From)
		if err != nil {
			return p, badRequest("from", "not an RFC 3339 time")
		}
		p.From = t
	default:
		return p, badRequest("since", "required (e.g. 30d), or from")
	}
	if !p.From.Before(p.To) {
		return p, badRequest("from", "must be before to")
	}
	for dir, files := range map[string]map[string]*string{"policies": req.Policies, "protocols": req.Protocols} {
		for name := range files {
			if err := whatif.ValidName(dir, name); err != nil {
				return p, badRequest(dir+"."+clip(name), err.Error())
			}
		}
	}
	return p, nil
}
