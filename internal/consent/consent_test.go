package consent_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/consent"
	"github.com/childrens-trust/trustgate/internal/policy"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// subject stands for a pseudonym: the store never sees an NHS number.
const subject = "a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"

// openStore opens a real state store in a fresh temporary directory.
func openStore(t *testing.T, opts consent.Options) (*consent.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := consent.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

// vocab is a tiny Trust.
type vocab struct{}

func (vocab) HasPurpose(id string) bool { return id == "early_help" || id == "safeguarding" }
func (vocab) HasCategory(id string) bool {
	return slices.Contains([]string{"identity", "immunisations", "health_summary"}, id)
}
func (vocab) HasPartner(id string) bool        { return id == "csc" || id == "gp1" }
func (vocab) HasPartnerType(t string) bool     { return t == "local_authority" || t == "gp" }
func (vocab) HasProtocol(id string) bool       { return id == "isp-a" }
func (vocab) PartnerName(id string) string     { return "Partner " + id }
func (vocab) PurposeDescription(string) string { return "a purpose" }
func (vocab) SpecialCategory(id string) bool   { return id == "health_summary" || id == "immunisations" }

func parentConsent() *consent.Record {
	return &consent.Record{
		Outcome: consent.Given, GivenBy: "parent",
		Purposes: []string{"early_help"}, Categories: []string{"identity", "immunisations"},
		Recipients: consent.Recipients{Partners: []string{"csc"}},
		Obtained:   "written", EvidenceRef: "EH-2026-0042",
	}
}

// complete gives a checked record what the gateway sets.
func complete(t *testing.T, r *consent.Record) *consent.Record {
	t.Helper()
	if err := consent.Check(r, vocab{}, now); err != nil {
		t.Fatal(err)
	}
	r.ID, r.Subject, r.RecordedAt, r.ReceiptID, r.Receipt = consent.NewID(), subject, now, consent.NewReceiptID(), "x.y.z"
	r.RecordedBy = consent.Actor{Partner: "csc", Practitioner: "ew-1", Role: "early_help_worker"}
	return r
}

func TestCheck(t *testing.T) {
	with := func(f func(r *consent.Record)) *consent.Record { r := parentConsent(); f(r); return r }
	cases := []struct {
		name          string
		rec           *consent.Record
		field, reason string
		kind          error
	}{
		{"no outcome", with(func(r *consent.Record) { r.Outcome = "" }), "outcome", "required", consent.ErrInvalid},
		{"unknown outcome", with(func(r *consent.Record) { r.Outcome = "maybe" }), "outcome", "not one of given, refused", consent.ErrInvalid},
		{"unknown decider", with(func(r *consent.Record) { r.GivenBy = "neighbour" }), "given_by", "not one of", consent.ErrInvalid},
		{"competence on a parent's consent", with(func(r *consent.Record) {
			r.Competence = &consent.Competence{AssessedCompetent: true, AssessedBy: "sw-1"}
		}), "competence", "only to the child's own decision", consent.ErrInvalid},
		{"self without assessment", with(func(r *consent.Record) { r.GivenBy = "self" }), "competence", "required", consent.ErrInvalid},
		{"self assessed not competent", with(func(r *consent.Record) {
			r.GivenBy, r.Competence = "self", &consent.Competence{AssessedCompetent: false, AssessedBy: "sw-1"}
		}), "competence.assessed_competent", "cannot give or refuse consent", consent.ErrInvalid},
		{"self without assessor", with(func(r *consent.Record) {
			r.GivenBy, r.Competence = "self", &consent.Competence{AssessedCompetent: true}
		}), "competence.assessed_by", "required", consent.ErrInvalid},
		{"no purpose", with(func(r *consent.Record) { r.Purposes = nil }), "purposes", "required", consent.ErrInvalid},
		{"unknown purpose", with(func(r *consent.Record) { r.Purposes = []string{"early_help", "marketing"} }), "purposes[1]", `"marketing" is not a purpose`, consent.ErrInvalid},
		{"repeated purpose", with(func(r *consent.Record) { r.Purposes = []string{"early_help", "early_help"} }), "purposes[1]", "repeated", consent.ErrInvalid},
		{"no category on a consent", with(func(r *consent.Record) { r.Categories = nil }), "categories", "required", consent.ErrInvalid},
		{"unknown category", with(func(r *consent.Record) { r.Categories = []string{"shoe_size"} }), "categories[0]", "not a data category", consent.ErrInvalid},
		{"no recipient", with(func(r *consent.Record) { r.Recipients = consent.Recipients{} }), "recipients", "at least one recipient", consent.ErrInvalid},
		{"unknown partner", with(func(r *consent.Record) { r.Recipients.Partners = []string{"acme"} }), "recipients.partners[0]", "not a partner", consent.ErrInvalid},
		{"unknown type", with(func(r *consent.Record) { r.Recipients.Types = []string{"bank"} }), "recipients.types[0]", "not a partner type", consent.ErrInvalid},
		{"unknown protocol", with(func(r *consent.Record) { r.Recipients.Protocols = []string{"isp-z"} }), "recipients.protocols[0]", "not a protocol", consent.ErrInvalid},
		{"valid_until in the past", with(func(r *consent.Record) { r.ValidUntil = now.Add(-time.Hour) }), "valid_until", "in the past", consent.ErrInvalid},
		{"valid_until now", with(func(r *consent.Record) { r.ValidUntil = now }), "valid_until", "in the past", consent.ErrInvalid},
		{"valid_until before valid_from", with(func(r *consent.Record) {
			r.ValidFrom, r.ValidUntil = now.Add(48*time.Hour), now.Add(24*time.Hour)
		}), "valid_until", "after valid_from", consent.ErrInvalid},
		{"refusal with an expiry", with(func(r *consent.Record) { r.Outcome, r.ValidUntil = consent.Refused, now.Add(time.Hour) }), "valid_until", "until it is withdrawn", consent.ErrInvalid},
		{"no method", with(func(r *consent.Record) { r.Obtained = "" }), "obtained", "required", consent.ErrInvalid},
		{"unknown method", with(func(r *consent.Record) { r.Obtained = "telepathy" }), "obtained", "not one of written, verbal, electronic", consent.ErrInvalid},
		{"no evidence", with(func(r *consent.Record) { r.EvidenceRef = " " }), "evidence_ref", "required", consent.ErrInvalid},
		{"evidence with a control character", with(func(r *consent.Record) { r.EvidenceRef = "EH\x00" }), "evidence_ref", "printable", consent.ErrInvalid},
		{"evidence too long", with(func(r *consent.Record) { r.EvidenceRef = strings.Repeat("x", 129) }), "evidence_ref", "at most 128", consent.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := consent.Check(c.rec, vocab{}, now)
			var ce *consent.Error
			if !errors.As(err, &ce) || !errors.Is(err, c.kind) {
				t.Fatalf("err %v, want *consent.Error of kind %v", err, c.kind)
			}
			if ce.Field != c.field || !strings.Contains(ce.Reason, c.reason) {
				t.Fatalf("field %q reason %q; want %q ~%q", ce.Field, ce.Reason, c.field, c.reason)
			}
		})
	}

	t.Run("valid records pass and valid_from defaults to now", func(t *testing.T) {
		for _, r := range []*consent.Record{
			parentConsent(),
			with(func(r *consent.Record) {
				r.GivenBy, r.Competence = "self", &consent.Competence{AssessedCompetent: true, AssessedBy: "sw-1"}
			}),
			with(func(r *consent.Record) { r.Outcome, r.Categories = consent.Refused, nil }),
			with(func(r *consent.Record) {
				r.Recipients = consent.Recipients{Types: []string{"gp"}, Protocols: []string{"isp-a"}}
				r.ValidUntil = now.Add(365 * 24 * time.Hour)
			}),
		} {
			if err := consent.Check(r, vocab{}, now); err != nil {
				t.Fatalf("%+v: %v", r, err)
			}
			if !r.ValidFrom.Equal(now) {
				t.Fatalf("valid_from %v", r.ValidFrom)
			}
		}
	})
}

func TestStatusAndPolicyMapping(t *testing.T) {
	r := complete(t, parentConsent())
	r.ValidFrom, r.ValidUntil = now.Add(time.Hour), now.Add(48*time.Hour)
	for _, c := range []struct {
		at   time.Time
		want consent.Status
	}{
		{now, consent.StatusNotYetValid},
		{now.Add(time.Hour), consent.StatusActive},
		{now.Add(48*time.Hour - 1), consent.StatusActive},
		{now.Add(48 * time.Hour), consent.StatusExpired},
	} {
		if got := r.Status(c.at); got != c.want {
			t.Fatalf("at %v: %s, want %s", c.at, got, c.want)
		}
	}
	p := r.Policy()
	if p.ID != r.ID || p.Outcome != "given" || p.GivenBy != "parent" || p.Competent ||
		p.ValidFromNS != now.Add(time.Hour).UnixNano() || p.ValidUntilNS != now.Add(48*time.Hour).UnixNano() || p.WithdrawnNS != 0 ||
		!slices.Equal(p.Recipients.Partners, []string{"csc"}) || p.Recipients.Types == nil || p.Recipients.Protocols == nil {
		t.Fatalf("policy consent %+v", p)
	}

	open := complete(t, parentConsent())
	if open.Policy().ValidUntilNS != 0 {
		t.Fatal("an open-ended consent must map to valid_until_ns 0")
	}
	open.Withdrawal = &consent.Withdrawal{By: "parent", At: now.Add(time.Minute)}
	if open.Status(now) != consent.StatusWithdrawn || open.Policy().WithdrawnNS != now.Add(time.Minute).UnixNano() {
		t.Fatalf("withdrawn: %s %d", open.Status(now), open.Policy().WithdrawnNS)
	}

	self := parentConsent()
	self.GivenBy, self.Outcome, self.Categories = "self", consent.Refused, nil
	self.Competence = &consent.Competence{AssessedCompetent: true, AssessedBy: "sw-1"}
	self = complete(t, self)
	if self.Status(now) != consent.StatusRefused || !self.Policy().Competent || self.Policy().Categories == nil {
		t.Fatalf("competent refusal: %s %+v", self.Status(now), self.Policy())
	}
}

func TestStoreRecordsWithdrawsAndKeepsHistory(t *testing.T) {
	ctx := context.Background()
	s, path := openStore(t, consent.Options{})
	a := complete(t, parentConsent())
	b := complete(t, parentConsent())
	other := complete(t, parentConsent())
	other.Subject = strings.Repeat("b", 64)
	for _, r := range []*consent.Record{a, b, other} {
		if err := s.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Record(ctx, a); !errors.Is(err, consent.ErrConflict) {
		t.Fatalf("re-recording an id: %v", err)
	}
	hist, err := s.History(ctx, subject)
	if err != nil || len(hist) != 2 || hist[0].ID != a.ID || hist[1].ID != b.ID {
		t.Fatalf("history %v %v", hist, err)
	}

	w := &consent.Withdrawal{By: "parent", At: now, Obtained: "verbal", RecordedAt: now, ReceiptID: consent.NewReceiptID(),
		RecordedBy: consent.Actor{Partner: "gp1", Practitioner: "gp-7"}}
	got, err := s.Withdraw(ctx, a.ID, w)
	if err != nil || got.Withdrawal == nil || got.Withdrawal.RecordedBy.Partner != "gp1" {
		t.Fatalf("withdraw: %+v %v", got, err)
	}
	if _, err := s.Withdraw(ctx, a.ID, w); !errors.Is(err, consent.ErrConflict) {
		t.Fatalf("second withdrawal: %v", err)
	}
	var ce *consent.Error
	if _, err := s.Withdraw(ctx, "cns-nosuch", w); !errors.As(err, &ce) || !errors.Is(err, consent.ErrNotFound) || ce.Field != "id" {
		t.Fatalf("unknown id: %v", err)
	}
	if err := s.Delete(ctx, a.ID); !errors.Is(err, consent.ErrConflict) {
		t.Fatalf("a withdrawn record was deletable: %v", err)
	}

	// The withdrawal is visible to the very next ForDecision, and history
	// survives a restart.
	pcs, err := s.ForDecision(ctx, subject)
	if err != nil || len(pcs) != 2 || pcs[0].WithdrawnNS == 0 || pcs[1].WithdrawnNS != 0 {
		t.Fatalf("for decision %+v %v", pcs, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.History(ctx, subject); !errors.Is(err, consent.ErrUnavailable) {
		t.Fatalf("closed store: %v", err)
	}
	s2, err := consent.Open(path, consent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	hist, err = s2.History(ctx, subject)
	if err != nil || len(hist) != 2 || hist[0].Withdrawal == nil || hist[0].Withdrawal.By != "parent" {
		t.Fatalf("after reopen: %+v %v", hist, err)
	}

	// Delete (the undo of a Record) removes the record and its index entry.
	if err := s2.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if hist, _ := s2.History(ctx, subject); len(hist) != 1 {
		t.Fatalf("after delete: %d records", len(hist))
	}
	if _, err := s2.Get(ctx, b.ID); !errors.Is(err, consent.ErrNotFound) {
		t.Fatalf("deleted record: %v", err)
	}
}

func TestConcurrentWithdrawalsOnlyOneWins(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, consent.Options{})
	r := complete(t, parentConsent())
	if err := s.Record(ctx, r); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Withdraw(ctx, r.ID, &consent.Withdrawal{By: "parent", At: now, Obtained: "verbal", RecordedAt: now, ReceiptID: consent.NewReceiptID()})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	ok, conflicts := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, consent.ErrConflict):
			conflicts++
		default:
			t.Fatal(err)
		}
	}
	if ok != 1 || conflicts != n-1 {
		t.Fatalf("%d succeeded, %d conflicts", ok, conflicts)
	}
}

func TestStoreBoundsRecordsPerSubject(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, consent.Options{MaxPerSubject: 3})
	for i := 0; i < 3; i++ {
		if err := s.Record(ctx, complete(t, parentConsent())); err != nil {
			t.Fatal(err)
		}
	}
	var ce *consent.Error
	if err := s.Record(ctx, complete(t, parentConsent())); !errors.As(err, &ce) || ce.Field != "subject" {
		t.Fatalf("fourth record: %v", err)
	}
}

func TestOpenIsLockedAgainstASecondOpener(t *testing.T) {
	_, path := openStore(t, consent.Options{})
	_, err := consent.Open(path, consent.Options{OpenTimeout: 50 * time.Millisecond})
	if !errors.Is(err, consent.ErrBusy) {
		t.Fatalf("second open: %v", err)
	}
}

func TestStoreHonoursContext(t *testing.T) {
	s, _ := openStore(t, consent.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Record(ctx, complete(t, parentConsent())); !errors.Is(err, consent.ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}
	if _, err := s.ForDecision(ctx, subject); !errors.Is(err, consent.ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestCheckWithdrawal(t *testing.T) {
	parent := complete(t, parentConsent())
	self := parentConsent()
	self.GivenBy, self.Competence = "self", &consent.Competence{AssessedCompetent: true, AssessedBy: "sw-1"}
	self = complete(t, self)
	withdrawn := complete(t, parentConsent())
	withdrawn.Withdrawal = &consent.Withdrawal{By: "parent", At: now}
	w := func(by string, at time.Time, obtained string) *consent.Withdrawal {
		return &consent.Withdrawal{By: by, At: at, Obtained: obtained}
	}
	cases := []struct {
		name          string
		rec           *consent.Record
		w             *consent.Withdrawal
		field, reason string
		kind          error
	}{
		{"already withdrawn", withdrawn, w("parent", time.Time{}, "verbal"), "id", "already withdrawn", consent.ErrConflict},
		{"no one withdrew", parent, w("", time.Time{}, "verbal"), "withdrawn_by", "required", consent.ErrInvalid},
		{"unknown withdrawer", parent, w("aunt", time.Time{}, "verbal"), "withdrawn_by", "not one of", consent.ErrInvalid},
		{"a parent withdrawing a competent child's decision", self, w("parent", time.Time{}, "verbal"), "withdrawn_by", "only by the child", consent.ErrInvalid},
		{"in the future", parent, w("parent", now.Add(time.Minute), "verbal"), "withdrawn_at", "in the future", consent.ErrInvalid},
		{"before recording", parent, w("parent", now.Add(-time.Minute), "verbal"), "withdrawn_at", "before the consent was recorded", consent.ErrInvalid},
		{"no method", parent, w("parent", time.Time{}, ""), "obtained", "required", consent.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := consent.CheckWithdrawal(c.rec, c.w, now)
			var ce *consent.Error
			if !errors.As(err, &ce) || !errors.Is(err, c.kind) || ce.Field != c.field || !strings.Contains(ce.Reason, c.reason) {
				t.Fatalf("err %v; want %v %s ~%q", err, c.kind, c.field, c.reason)
			}
		})
	}
	ok := w("self", time.Time{}, "electronic")
	if err := consent.CheckWithdrawal(self, ok, now); err != nil || !ok.At.Equal(now) {
		t.Fatalf("the child withdrawing their own decision: %v %v", err, ok.At)
	}
}

// The records the store returns decide through the real policy: a
// withdrawal recorded is honoured by the very next evaluation.
func TestForDecisionThroughThePolicy(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, consent.Options{})
	rev := preparePolicy(t)
	r := complete(t, parentConsent())
	if err := s.Record(ctx, r); err != nil {
		t.Fatal(err)
	}
	decide := func() *policy.Decision {
		t.Helper()
		cs, err := s.ForDecision(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		d, err := rev.Decide(ctx, &policy.Input{
			TimeNS:     now.Add(time.Second).UnixNano(),
			Requester:  policy.Requester{Partner: "csc", Type: "local_authority", Practitioner: "ew-1", Role: "early_help_worker"},
			Provider:   policy.Provider{Partner: "gp1", Type: "gp"},
			Purpose:    "early_help",
			Categories: []string{"immunisations"},
			Consents:   cs,
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := decide(); !d.Allow || d.Basis != "consent" || !slices.Equal(d.Consents, []string{r.ID}) {
		t.Fatalf("with consent: %+v", d)
	}
	if _, err := s.Withdraw(ctx, r.ID, &consent.Withdrawal{By: "parent", At: now, Obtained: "verbal", RecordedAt: now, ReceiptID: consent.NewReceiptID()}); err != nil {
		t.Fatal(err)
	}
	d := decide()
	if d.Allow || !slices.ContainsFunc(d.Reasons, func(s string) bool { return strings.Contains(s, fmt.Sprintf("consent %s was withdrawn", r.ID)) }) {
		t.Fatalf("after withdrawal: %+v", d)
	}
}

// ForDecision holds its answers in memory; every change is seen by the
// first ForDecision that starts after the change returned, even with
// other decisions about the same child reading all the while.
func TestForDecisionSeesEveryChangeAtOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, consent.Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.ForDecision(ctx, subject); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for i := range 60 {
		r := complete(t, parentConsent())
		if err := s.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
		pcs, err := s.ForDecision(ctx, subject)
		if err != nil || len(pcs) != 2*i+1 || pcs[len(pcs)-1].ID != r.ID || pcs[len(pcs)-1].WithdrawnNS != 0 {
			t.Fatalf("after recording %d: %d records, %v", i, len(pcs), err)
		}
		w := &consent.Withdrawal{By: "parent", At: now, Obtained: "verbal", RecordedAt: now, ReceiptID: consent.NewReceiptID(),
			RecordedBy: consent.Actor{Partner: "csc", Practitioner: "ew-1"}}
		if _, err := s.Withdraw(ctx, r.ID, w); err != nil {
			t.Fatal(err)
		}
		if pcs, _ := s.ForDecision(ctx, subject); pcs[len(pcs)-1].WithdrawnNS == 0 {
			t.Fatalf("withdrawal %d not seen by the next ForDecision", i)
		}
		u := complete(t, parentConsent())
		if err := s.Record(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		if pcs, _ := s.ForDecision(ctx, subject); len(pcs) != 2*i+1 {
			t.Fatalf("after a record and its undo %d: %d records", i, len(pcs))
		}
		// The pair is one record more for the next round's count.
		if err := s.Record(ctx, complete(t, parentConsent())); err != nil {
			t.Fatal(err)
		}
	}
}
