package consent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/consent"
)

func newReview(requester, provider string, due time.Time) *consent.Review {
	return &consent.Review{
		ID: consent.NewReviewID(), OpenedAt: now, Due: due, RequestID: "req-1", Subject: subject,
		Requester: consent.Actor{Partner: requester, Practitioner: "sw-1", Role: "social_worker"},
		Provider:  provider, Purpose: "safeguarding", Categories: []string{"health_summary"},
		Ground: "risk_of_significant_harm", Justification: "in the practitioner's own words",
	}
}

func ids(rs []*consent.Review) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return strings.Join(out, ",")
}

func TestReviewQueue(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, consent.Options{})
	day := 24 * time.Hour
	a := newReview("csc", "gp1", now.Add(5*day))
	b := newReview("csc", "police", now.Add(2*day))
	c := newReview("edu", "school", now.Add(1*day)) // concerns neither csc nor gp1
	for _, r := range []*consent.Review{a, b, c} {
		if err := s.OpenReview(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	list := func(st consent.ReviewStatus, at time.Time, partner string) string {
		t.Helper()
		rs, _, err := s.Reviews(ctx, consent.ReviewQuery{Status: st, Now: at, Partner: partner})
		if err != nil {
			t.Fatal(err)
		}
		return ids(rs)
	}
	if got, want := list(consent.ReviewOpen, now, "csc"), b.ID+","+a.ID; got != want {
		t.Fatalf("open for csc (oldest due first): %s, want %s", got, want)
	}
	if got := list(consent.ReviewOpen, now, "gp1"); got != a.ID {
		t.Fatalf("open for gp1: %s", got)
	}
	if got := list(consent.ReviewOverdue, now, ""); got != "" {
		t.Fatalf("overdue now: %s", got)
	}
	// Three days on, b is overdue (from its due instant), a is not.
	later := now.Add(3 * day)
	if got := list(consent.ReviewOverdue, later, "csc"); got != b.ID {
		t.Fatalf("overdue later: %s", got)
	}
	if got := list(consent.ReviewOverdue, b.Due, "csc"); got != b.ID {
		t.Fatalf("overdue at the due instant: %s", got)
	}
	if st := b.Status(b.Due.Add(-1)); st != consent.ReviewOpen {
		t.Fatalf("just before due: %s", st)
	}
	sum, err := s.Summary(ctx, "csc", later)
	if err != nil || sum.Open != 2 || sum.Overdue != 1 || sum.Closed != 0 || sum.OldestDue == nil || !sum.OldestDue.Equal(b.Due) {
		t.Fatalf("summary %+v %v", sum, err)
	}

	closure := &consent.Closure{Outcome: consent.Upheld, Note: "Proportionate.", At: later,
		Reviewer: consent.Actor{Partner: "csc", Practitioner: "ig-1", Role: "ig_lead"}}
	if _, err := s.CloseReview(ctx, c.ID, "csc", closure); !errors.Is(err, consent.ErrNotFound) {
		t.Fatalf("closing an item that does not concern csc: %v", err)
	}
	got, err := s.CloseReview(ctx, b.ID, "csc", closure)
	if err != nil || got.Status(later) != consent.ReviewClosed || got.Closure.Reviewer.Practitioner != "ig-1" {
		t.Fatalf("close: %+v %v", got, err)
	}
	if _, err := s.CloseReview(ctx, b.ID, "csc", closure); !errors.Is(err, consent.ErrConflict) {
		t.Fatalf("closing twice: %v", err)
	}
	if got := list(consent.ReviewClosed, later, "csc"); got != b.ID {
		t.Fatalf("closed: %s", got)
	}
	if got := list(consent.ReviewOpen, later, "csc"); got != a.ID {
		t.Fatalf("open after close: %s", got)
	}
	sum, _ = s.Summary(ctx, "", later)
	if sum.Open != 2 || sum.Overdue != 1 || sum.Closed != 1 { // a and c open, c overdue
		t.Fatalf("summary for all %+v", sum)
	}

	// The undo steps.
	if err := s.ReopenReview(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if got := list(consent.ReviewClosed, later, ""); got != "" {
		t.Fatalf("closed after reopen: %s", got)
	}
	if err := s.DeleteReview(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Review(ctx, a.ID); !errors.Is(err, consent.ErrNotFound) {
		t.Fatalf("deleted: %v", err)
	}
	if got := list(consent.ReviewOpen, later, "csc"); got != b.ID {
		t.Fatalf("open after undo: %s", got)
	}

	rs, more, err := s.Reviews(ctx, consent.ReviewQuery{Status: consent.ReviewOpen, Now: later, Limit: 1})
	if err != nil || len(rs) != 1 || !more {
		t.Fatalf("limit: %d %v %v", len(rs), more, err)
	}
	if _, _, err := s.Reviews(ctx, consent.ReviewQuery{Status: "pending"}); !errors.Is(err, consent.ErrInvalid) {
		t.Fatalf("unknown status: %v", err)
	}
}

func TestCheckClosure(t *testing.T) {
	for _, c := range []struct {
		cl            consent.Closure
		field, reason string
	}{
		{consent.Closure{Note: "x"}, "outcome", "required"},
		{consent.Closure{Outcome: "fine", Note: "x"}, "outcome", "not one of upheld, not_upheld"},
		{consent.Closure{Outcome: consent.NotUpheld, Note: "  "}, "note", "required"},
		{consent.Closure{Outcome: consent.NotUpheld, Note: strings.Repeat("n", consent.MaxNoteLen+1)}, "note", "at most"},
		{consent.Closure{Outcome: consent.NotUpheld, Note: "bell\a"}, "note", "control"},
	} {
		var ce *consent.Error
		if err := consent.CheckClosure(&c.cl); !errors.As(err, &ce) || ce.Field != c.field || !strings.Contains(ce.Reason, c.reason) {
			t.Fatalf("%+v: %v", c.cl, err)
		}
	}
	if err := consent.CheckClosure(&consent.Closure{Outcome: consent.NotUpheld, Note: "Not proportionate:\nno imminent risk."}); err != nil {
		t.Fatal(err)
	}
}
