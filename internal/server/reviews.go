package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/consent"
	"github.com/childrens-trust/trustgate/internal/policy"
)

// ReviewStore keeps the queue of safeguarding overrides awaiting IG review
// (internal/consent.Store). OpenReview and CloseReview are atomic and
// durable when they return nil.
type ReviewStore interface {
	OpenReview(ctx context.Context, r *consent.Review) error
	Review(ctx context.Context, id string) (*consent.Review, error)
	// CloseReview fails with ErrNotFound for an item that does not
	// concern partner, and ErrConflict for one already closed.
	CloseReview(ctx context.Context, id, partner string, c *consent.Closure) (*consent.Review, error)
	Reviews(ctx context.Context, q consent.ReviewQuery) ([]*consent.Review, bool, error)
	Summary(ctx context.Context, partner string, now time.Time) (consent.ReviewSummary, error)
	// DeleteReview and ReopenReview undo OpenReview and CloseReview when
	// the audit entry of the request could not be written.
	DeleteReview(ctx context.Context, id string) error
	ReopenReview(ctx context.Context, id string) error
}

// ReviewRole is the role that works the IG review queue.
const ReviewRole = "ig_lead"

const (
	defaultReviewLimit = 100
	maxReviewLimit     = 500
)

// ReviewRequest is the body of POST /v1/reviews/{id}.
type ReviewRequest struct {
	Outcome string `json:"outcome"`
	Note    string `json:"note"`
}

// reviewView is a review item as the IG lead reads it.
type reviewView struct {
	*consent.Review
	Status      consent.ReviewStatus `json:"status"`
	Overdue     bool                 `json:"overdue"`
	DaysOverdue int                  `json:"days_overdue,omitempty"`
}

func viewReview(r *consent.Review, now time.Time) reviewView {
	v := reviewView{Review: r, Status: r.Status(now)}
	if v.Status == consent.ReviewOverdue {
		v.Overdue = true
		v.DaysOverdue = int(now.Sub(r.Due) / (24 * time.Hour))
	}
	return v
}

// openOverrideReview puts an overriding decision in the IG review queue
// before it is answered. If the item cannot be stored the decision is not
// answered (503): no override goes unreviewed.
func (s *Server) openOverrideReview(x *exchange, d *policy.Decision, req *DecisionRequest) error {
	if s.deps.Reviews == nil {
		return errStateUnavailable
	}
	days := 0
	for _, o := range d.Obligations {
		if o.Type == "ig_review" {
			days = o.WithinDays
		}
	}
	if days <= 0 {
		days = x.rev.Policy.Data().Settings.OverrideReviewDays
	}
	days = max(days, 1)
	now := s.opts.Now()
	rv := &consent.Review{
		ID:             consent.NewReviewID(),
		OpenedAt:       now,
		Due:            now.Add(time.Duration(days) * 24 * time.Hour),
		RequestID:      x.id,
		PolicyRevision: x.rev.Hash(),
		Subject:        x.entry.Subject,
		Requester:      consent.Actor{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role},
		Provider:       req.Provider,
		Purpose:        req.Purpose,
		Categories:     d.Categories,
		Ground:         req.OverrideGround,
		// The justification is kept here, for the IG lead; never in the
		// audit log.
		Justification:    strings.TrimSpace(req.Justification),
		RefusalsOnRecord: nzs(d.RefusalsOnRecord),
		Obligations:      d.Obligations,
	}
	if d.Protocol != nil {
		rv.Protocol = consent.ProtocolRule{ID: d.Protocol.ID, Version: d.Protocol.Version, Rule: d.Protocol.Rule}
	}
	if err := s.deps.Reviews.OpenReview(x.ctx, rv); err != nil {
		return err
	}
	id := rv.ID
	x.onAuditFailure(func(ctx context.Context) error { return s.deps.Reviews.DeleteReview(ctx, id) })
	x.review = rv
	x.entry.ReviewID = rv.ID
	return nil
}

// reviewer checks that the caller works the review queue.
func (s *Server) reviewer(x *exchange) error {
	x.entry.Kind = audit.KindRejected
	if x.claims.Role != ReviewRole {
		return forbidden(fmt.Sprintf("role %s may not work the IG review queue: only %s", x.claims.Role, ReviewRole))
	}
	if s.deps.Reviews == nil {
		return errStateUnavailable
	}
	return nil
}

// listReviews handles GET /v1/reviews?status=open|overdue|closed&limit=N:
// the override reviews that concern the caller's agency (it asked or it
// provided). open lists every item not closed, overdue ones flagged.
func (s *Server) listReviews(x *exchange) (int, any, error) {
	if err := s.reviewer(x); err != nil {
		return 0, nil, err
	}
	q := x.r.URL.Query()
	for k := range q {
		if k != "status" && k != "limit" {
			return 0, nil, badRequest(clip(k), "unknown query parameter (status, limit)")
		}
	}
	status := consent.ReviewOpen
	if v := q.Get("status"); v != "" {
		status = consent.ReviewStatus(v)
	}
	switch status {
	case consent.ReviewOpen, consent.ReviewOverdue, consent.ReviewClosed:
	default:
		return 0, nil, badRequest("status", fmt.Sprintf("%q is not one of open, overdue, closed", clip(string(status))))
	}
	limit := defaultReviewLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxReviewLimit {
			return 0, nil, badRequest("limit", fmt.Sprintf("must be a whole number from 1 to %d", maxReviewLimit))
		}
		limit = n
	}
	now := s.opts.Now()
	items, more, err := s.deps.Reviews.Reviews(x.ctx, consent.ReviewQuery{Status: status, Now: now, Partner: x.claims.Partner, Limit: limit})
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err
	}
	out := make([]reviewView, len(items))
	for i, r := range items {
		out[i] = viewReview(r, now)
	}
	x.entry.Kind = audit.KindAccess
	return http.StatusOK, map[string]any{"request_id": x.id, "status": status, "reviews": out, "truncated": more}, nil
}

// reviewSummary handles GET /v1/reviews/summary: counts of open, overdue
// and closed reviews that concern the caller's agency.
func (s *Server) reviewSummary(x *exchange) (int, any, error) {
	if err := s.reviewer(x); err != nil {
		return 0, nil, err
	}
	sum, err := s.deps.Reviews.Summary(x.ctx, x.claims.Partner, s.opts.Now())
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err
	}
	x.entry.Kind = audit.KindAccess
	return http.StatusOK, map[string]any{"request_id": x.id, "summary": sum}, nil
}

// getReview handles GET /v1/reviews/{id}.
func (s *Server) getReview(x *exchange) (int, any, error) {
	if err := s.reviewer(x); err != nil {
		return 0, nil, err
	}
	id := mux.Vars(x.r)["id"]
	x.entry.ReviewID = clip(id)
	rv, err := s.deps.Reviews.Review(x.ctx, id)
	if err != nil {
		if errors.Is(err, consent.ErrUnavailable) {
			x.entry.Kind = audit.KindUnavailable
		}
		return 0, nil, err
	}
	if !rv.Concerns(x.claims.Partner) {
		return 0, nil, &consent.Error{Kind: consent.ErrNotFound, Field: "id", Reason: fmt.Sprintf("no review item %q concerns %s", clip(id), x.claims.Partner)}
	}
	x.entry.Kind, x.entry.Subject = audit.KindAccess, rv.Subject
	return http.StatusOK, map[string]any{"request_id": x.id, "review": viewReview(rv, s.opts.Now())}, nil
}

// postReview handles POST /v1/reviews/{id}: the IG lead's outcome.
func (s *Server) postReview(x *exchange) (int, any, error) {
	if err := s.reviewer(x); err != nil {
		return 0, nil, err
	}
	id := mux.Vars(x.r)["id"]
	x.entry.ReviewID = clip(id)
	var req ReviewRequest
	if err := s.decodeStrict(x, &req); err != nil {
		return 0, nil, err
	}
	if req.Outcome == consent.Upheld || req.Outcome == consent.NotUpheld {
		x.entry.ReviewOutcome = req.Outcome
	}
	now := s.opts.Now()
	c := &consent.Closure{
		Outcome: req.Outcome, Note: strings.TrimSpace(req.Note), At: now,
		Reviewer: consent.Actor{Partner: x.claims.Partner, Practitioner: x.claims.Practitioner, Role: x.claims.Role},
	}
	if err := consent.CheckClosure(c); err != nil {
		return 0, nil, err
	}
	// Four eyes: nobody closes the review of an override they made or that
	// was made in their name. The item's requester never changes once it
	// is opened, so reading it first is as good as checking in the close.
	open, err := s.deps.Reviews.Review(x.ctx, id)
	if err != nil {
		if errors.Is(err, consent.ErrUnavailable) {
			x.entry.Kind = audit.KindUnavailable
		}
		return 0, nil, err
	}
	if open.Concerns(x.claims.Partner) && open.Requester.Partner == x.claims.Partner && open.Requester.Practitioner == x.claims.Practitioner {
		x.entry.Subject = open.Subject
		return 0, nil, &apiError{Status: http.StatusForbidden, Code: "self_review", Reason: fmt.Sprintf("%s of %s made this override and may not review it: a second person must (four eyes)", x.claims.Practitioner, x.claims.Partner), Kind: audit.KindRejected}
	}
	rv, err := s.deps.Reviews.CloseReview(x.ctx, id, x.claims.Partner, c)
	if err != nil {
		if errors.Is(err, consent.ErrUnavailable) {
			x.entry.Kind = audit.KindUnavailable
		}
		return 0, nil, err
	}
	x.onAuditFailure(func(ctx context.Context) error { return s.deps.Reviews.ReopenReview(ctx, id) })
	x.entry.Kind = audit.KindReview
	x.entry.Subject, x.entry.Provider, x.entry.Purpose, x.entry.OverrideGround = rv.Subject, rv.Provider, rv.Purpose, rv.Ground
	x.entry.Protocol, x.entry.ProtocolVersion, x.entry.Rule = rv.Protocol.ID, rv.Protocol.Version, rv.Protocol.Rule
	return http.StatusOK, map[string]any{"request_id": x.id, "review": viewReview(rv, now)}, nil
}
