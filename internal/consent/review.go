package consent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/policy"
)

// Review outcomes an IG lead may record.
const (
	Upheld    = "upheld"
	NotUpheld = "not_upheld"
)

// MaxNoteLen bounds a reviewer's note and an override justification.
const MaxNoteLen = 4000

// ReviewStatus is a review item's state at an instant; derived, never
// stored.
type ReviewStatus string

// The statuses of a review item. An overdue item is open and past its due
// time.
const (
	ReviewOpen    ReviewStatus = "open"
	ReviewOverdue ReviewStatus = "overdue"
	ReviewClosed  ReviewStatus = "closed"
)

// ProtocolRule names the protocol rule an override was allowed under.
type ProtocolRule struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Rule    string `json:"rule"`
}

// Review is one safeguarding override awaiting, or having had, review by
// an information governance lead. It keeps what the audit log must not:
// the practitioner's justification in their own words.
type Review struct {
	ID             string    `json:"id"`
	OpenedAt       time.Time `json:"opened_at"`
	Due            time.Time `json:"due"`
	RequestID      string    `json:"request_id"` // the decision's request id, as in the audit log
	PolicyRevision string    `json:"policy_revision"`
	Subject        string    `json:"subject"` // pseudonym
	Requester      Actor     `json:"requester"`
	Provider       string    `json:"provider"`
	Purpose        string    `json:"purpose"`
	// Categories are the categories the override disclosed.
	Categories       []string            `json:"categories"`
	Protocol         ProtocolRule        `json:"protocol"`
	Ground           string              `json:"ground"`
	Justification    string              `json:"justification"`
	RefusalsOnRecord []string            `json:"refusals_on_record"`
	Obligations      []policy.Obligation `json:"obligations"`
	Closure          *Closure            `json:"closure,omitempty"`
}

// Closure is the IG lead's finding on an override.
type Closure struct {
	Outcome  string    `json:"outcome"` // upheld | not_upheld
	Note     string    `json:"note"`
	Reviewer Actor     `json:"reviewer"`
	At       time.Time `json:"at"`
}

// Status derives the item's status at now: closed once an outcome is
// recorded; overdue from its due time on; open before.
func (r *Review) Status(now time.Time) ReviewStatus {
	switch {
	case r.Closure != nil:
		return ReviewClosed
	case !now.Before(r.Due):
		return ReviewOverdue
	default:
		return ReviewOpen
	}
}

// Concerns reports whether partner asked for or provided the data: the
// IG leads of those two partners review the override.
func (r *Review) Concerns(partner string) bool {
	return partner == "" || r.Requester.Partner == partner || r.Provider == partner
}

// CheckClosure validates an outcome and a note.
func CheckClosure(c *Closure) error {
	switch c.Outcome {
	case "":
		return invalid("outcome", "required: upheld or not_upheld")
	case Upheld, NotUpheld:
	default:
		return invalid("outcome", fmt.Sprintf("%q is not one of upheld, not_upheld", clip(c.Outcome)))
	}
	t := strings.TrimSpace(c.Note)
	if t == "" {
		return invalid("note", "required: the reviewer's finding in a sentence or more")
	}
	if len([]rune(t)) > MaxNoteLen {
		return invalid("note", fmt.Sprintf("at most %d characters", MaxNoteLen))
	}
	for _, r := range t {
		if !unicode.IsPrint(r) && r != '\n' && r != '\r' && r != '\t' {
			return invalid("note", "must be text (no control characters)")
		}
	}
	return nil
}

// OpenReview stores a new review item, open until CloseReview.
func (s *Store) OpenReview(ctx context.Context, r *Review) error {
	if r.ID == "" || r.Due.IsZero() || r.Closure != nil {
		return invalid("", "a review item needs an id and a due time, and no outcome")
	}
	val, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("consent: encode review %s: %w", r.ID, err)
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		rv := tx.Bucket(bucketReviews)
		if rv.Get([]byte(r.ID)) != nil {
			return conflict("id", fmt.Sprintf("%s is already used", r.ID))
		}
		if err := rv.Put([]byte(r.ID), val); err != nil {
			return err
		}
		return tx.Bucket(bucketOpen).Put(timeKey(r.Due, r.ID), nil)
	})
}

// Review returns the item with id, or an *Error wrapping ErrNotFound.
func (s *Store) Review(ctx context.Context, id string) (*Review, error) {
	var r *Review
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		r, err = getReview(tx, id)
		return err
	})
	return r, err
}

func getReview(tx *bolt.Tx, id string) (*Review, error) {
	v := tx.Bucket(bucketReviews).Get([]byte(id))
	if v == nil {
		return nil, notFound("id", fmt.Sprintf("no review item %q", clip(id)))
	}
	var r Review
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode review %s: %w", clip(id), err)
	}
	return &r, nil
}

func putReview(tx *bolt.Tx, r *Review) error {
	val, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketReviews).Put([]byte(r.ID), val)
}

// CloseReview records c on the item, atomically. An unknown id is
// ErrNotFound, and so is an item that does not concern partner (when
// partner is not empty), so that its existence is not disclosed; an item
// already closed is ErrConflict. c must have passed CheckClosure.
func (s *Store) CloseReview(ctx context.Context, id, partner string, c *Closure) (*Review, error) {
	if c.At.IsZero() || c.Reviewer.Partner == "" {
		return nil, invalid("", "a closure needs a time and a reviewer")
	}
	var out *Review
	err := s.update(ctx, func(tx *bolt.Tx) error {
		r, err := getReview(tx, id)
		if err != nil {
			return err
		}
		if !r.Concerns(partner) {
			return notFound("id", fmt.Sprintf("no review item %q concerns %s", clip(id), partner))
		}
		if r.Closure != nil {
			return conflict("id", fmt.Sprintf("review %s was already closed (%s, at %s)", r.ID, r.Closure.Outcome, r.Closure.At.UTC().Format(time.RFC3339)))
		}
		cc := *c
		r.Closure = &cc
		if err := putReview(tx, r); err != nil {
			return err
		}
		if err := tx.Bucket(bucketOpen).Delete(timeKey(r.Due, r.ID)); err != nil {
			return err
		}
		out = r
		return tx.Bucket(bucketClosed).Put(timeKey(c.At, r.ID), nil)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReopenReview removes the outcome of a closed item. It exists only to
// undo a CloseReview whose audit entry could not be written.
func (s *Store) ReopenReview(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		r, err := getReview(tx, id)
		if err != nil || r.Closure == nil {
			return err
		}
		if err := tx.Bucket(bucketClosed).Delete(timeKey(r.Closure.At, r.ID)); err != nil {
			return err
		}
		r.Closure = nil
		if err := putReview(tx, r); err != nil {
			return err
		}
		return tx.Bucket(bucketOpen).Put(timeKey(r.Due, r.ID), nil)
	})
}

// DeleteReview removes an open item. It exists only to undo an OpenReview
// whose decision was not answered (its audit entry could not be written,
// so nothing was disclosed).
func (s *Store) DeleteReview(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		r, err := getReview(tx, id)
		if err != nil {
			return err
		}
		if r.Closure != nil {
			return conflict("id", "a closed review is history and is never deleted")
		}
		if err := tx.Bucket(bucketOpen).Delete(timeKey(r.Due, r.ID)); err != nil {
			return err
		}
		return tx.Bucket(bucketReviews).Delete([]byte(id))
	})
}

// ReviewQuery selects review items.
type ReviewQuery struct {
	// Status: ReviewOpen lists every item not closed (overdue ones
	// included, flagged by their status), oldest due first; ReviewOverdue
	// only those past due, oldest due first; ReviewClosed the closed ones,
	// most recently closed first.
	Status ReviewStatus
	Now    time.Time
	// Partner, if not empty, keeps only the items that concern it.
	Partner string
	// Limit bounds the answer; zero or negative: 100.
	Limit int
}

// Reviews lists the items q selects, and whether more were left out.
func (s *Store) Reviews(ctx context.Context, q ReviewQuery) ([]*Review, bool, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var out []*Review
	more := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return scanReviews(tx, q.Status, q.Now, func(r *Review) bool {
			if !r.Concerns(q.Partner) {
				return true
			}
			if len(out) == q.Limit {
				more = true
				return false
			}
			out = append(out, r)
			return true
		})
	})
	return out, more, err
}

// ReviewSummary counts the items that concern partner ("" for all).
type ReviewSummary struct {
	Open    int `json:"open"`    // not closed, overdue included
	Overdue int `json:"overdue"` // not closed and past due
	Closed  int `json:"closed"`
	// OldestDue is the due time of the longest-overdue item, if any.
	OldestDue *time.Time `json:"oldest_overdue_due,omitempty"`
}

// Summary counts the review items that concern partner at now.
func (s *Store) Summary(ctx context.Context, partner string, now time.Time) (ReviewSummary, error) {
	var sum ReviewSummary
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if err := scanReviews(tx, ReviewOpen, now, func(r *Review) bool {
			if r.Concerns(partner) {
				sum.Open++
				if r.Status(now) == ReviewOverdue {
					sum.Overdue++
					if sum.OldestDue == nil {
						d := r.Due
						sum.OldestDue = &d
					}
				}
			}
			return true
		}); err != nil {
			return err
		}
		return scanReviews(tx, ReviewClosed, now, func(r *Review) bool {
			if r.Concerns(partner) {
				sum.Closed++
			}
			return true
		})
	})
	return sum, err
}

// scanReviews visits the items of one status in index order until fn
// returns false.
func scanReviews(tx *bolt.Tx, st ReviewStatus, now time.Time, fn func(*Review) bool) error {
	var c *bolt.Cursor
	var k []byte
	next := func() []byte { k, _ = c.Next(); return k }
	switch st {
	case ReviewOpen, ReviewOverdue:
		c = tx.Bucket(bucketOpen).Cursor()
		k, _ = c.First()
	case ReviewClosed:
		c = tx.Bucket(bucketClosed).Cursor()
		k, _ = c.Last()
		next = func() []byte { k, _ = c.Prev(); return k }
	default:
		return invalid("status", fmt.Sprintf("%q is not one of open, overdue, closed", clip(string(st))))
	}
	for ; k != nil; k = next() {
		if len(k) <= 8 {
			return fmt.Errorf("malformed review index key %x", k)
		}
		if st == ReviewOverdue && int64(be64(k[:8])) > now.UnixNano() {
			return nil
		}
		r, err := getReview(tx, string(k[8:]))
		if err != nil {
			return fmt.Errorf("the review index names %s: %v", clip(string(k[8:])), err)
		}
		if !fn(r) {
			return nil
		}
	}
	return nil
}

// timeKey orders by time (Unix ns, big-endian; times before 1970 sort
// first) and then by id.
func timeKey(t time.Time, id string) []byte {
	return append(be(uint64(max(t.UnixNano(), 0))), id...)
}

func be64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}
