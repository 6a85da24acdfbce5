package notify_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/notify"
	"github.com/childrens-trust/trustgate/internal/provider"
)

var at = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T, path string) *notify.Store {
	t.Helper()
	s, err := notify.Open(path, notify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func note(recipient string) *provider.Notification {
	return &provider.Notification{
		ID: provider.NewID(), Recipient: recipient, As: provider.AsProvider, Event: provider.EventDisclosed,
		Time: at, RequestID: "req", Subject: "9990000018", Provider: recipient,
		Requester: provider.Requester{Partner: "exley-csc", Practitioner: "sw-0042", Role: "social_worker"},
		Purpose:   "safeguarding", Categories: []string{"police_concerns"}, Fields: []string{"police_concerns.summary"},
	}
}

func ids(ns []provider.Notification) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.ID)
	}
	return out
}

func TestInboxesArePerPartner(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "outbox.db"))
	defer s.Close()
	ctx := context.Background()
	var police []string
	for i := 0; i < 5; i++ {
		a, b := note("exley-police"), note("riverside-gp")
		if err := s.Add(ctx, []*provider.Notification{a, b}, nil); err != nil {
			t.Fatal(err)
		}
		if a.Seq != uint64(i+1) || b.Seq != uint64(i+1) {
			t.Fatalf("seqs %d %d: each partner counts its own", a.Seq, b.Seq)
		}
		police = append(police, a.ID)
	}
	got, more, err := s.List(ctx, "exley-police", 0, 3)
	if err != nil || !more || !slices.Equal(ids(got), police[:3]) {
		t.Fatalf("first page %v %v %v", ids(got), more, err)
	}
	got, more, _ = s.List(ctx, "exley-police", got[2].Seq, 3)
	if more || !slices.Equal(ids(got), police[3:]) {
		t.Fatalf("second page %v %v", ids(got), more)
	}
	for _, n := range got {
		if n.Recipient != "exley-police" {
			t.Fatalf("another partner's notification listed: %+v", n)
		}
	}
	if got, _, _ := s.List(ctx, "exley-jcp", 0, 10); len(got) != 0 {
		t.Fatalf("empty inbox: %v", got)
	}
}

// receiver is a webhook that verifies each notification and counts
// deliveries per id; it answers 503 while down.
type receiver struct {
	t       *testing.T
	keys    provider.KeySource
	down    atomic.Bool
	refused atomic.Int32

	mu    sync.Mutex
	seen  map[string]int
	order []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rc.down.Load() {
		rc.refused.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	b, _ := io.ReadAll(r.Body)
	n, err := provider.VerifyNotification(r.Context(), rc.keys, "trustgate", "exley-police", string(b))
	if err != nil {
		rc.t.Errorf("webhook got an unverifiable notification: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.Header.Get("X-Trustgate-Notification-Id") != n.ID {
		rc.t.Errorf("id header %q for %s", r.Header.Get("X-Trustgate-Notification-Id"), n.ID)
	}
	rc.mu.Lock()
	rc.seen[n.ID]++
	rc.order = append(rc.order, n.ID)
	rc.mu.Unlock()
}

func (rc *receiver) distinct() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, id := range rc.order {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDeliveryIsDurableOrderedAndAtLeastOnce: held notifications wait for
// Release; a failing webhook is retried with backoff; what is queued when
// the dispatcher stops is delivered by the next one, from the reopened
// file, with the same ids, in order; removed ones are never sent.
func TestDeliveryIsDurableOrderedAndAtLeastOnce(t *testing.T) {
	k, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set, _ := k.PublicKeys(context.Background())
	rc := &receiver{t: t, keys: provider.StaticKeys{Set: set}, seen: map[string]int{}}
	ts := httptest.NewServer(rc)
	defer ts.Close()
	path := filepath.Join(t.TempDir(), "outbox.db")
	webhook := func(p string) (string, bool) {
		if p == "exley-police" {
			return ts.URL, true
		}
		return "", false
	}
	push := func(p string) bool { _, ok := webhook(p); return ok }
	run := func(s *notify.Store) (stop func()) {
		d := notify.NewDispatcher(s, k, notify.DispatchOptions{Webhook: webhook, RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	ctx := context.Background()
	s := openStore(t, path)
	stop := run(s)

	// Held until released; removed ones never go.
	a, gone := note("exley-police"), note("exley-police")
	pull := note("exley-jcp") // no webhook: inbox only
	if err := s.Add(ctx, []*provider.Notification{a, gone, pull}, push); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Pending(ctx); n != 2 {
		t.Fatalf("pending %d; want 2 (the partner without a webhook is not queued)", n)
	}
	if err := s.Remove(ctx, []*provider.Notification{gone}); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, []*provider.Notification{a}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first delivery", func() bool { return len(rc.distinct()) == 1 })

	// The webhook goes down: the next two are retried, not lost.
	rc.down.Store(true)
	b, c := note("exley-police"), note("exley-police")
	if err := s.Add(ctx, []*provider.Notification{b, c}, push); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, []*provider.Notification{b, c}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three attempts against the dead webhook", func() bool { return rc.refused.Load() >= 3 })
	stop()
	s.Close()

	// One more is added and left held by a "gateway" that stops before
	// recording it: reopening releases it.
	s = openStore(t, path)
	d := note("exley-police")
	if err := s.Add(ctx, []*provider.Notification{d}, push); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, path)
	defer s.Close()
	rc.down.Store(false)
	stop = run(s)
	defer stop()
	waitFor(t, "every owed notification", func() bool { return len(rc.distinct()) == 4 })
	waitFor(t, "an empty queue", func() bool { n, _ := s.Pending(ctx); return n == 0 })
	if got, want := rc.distinct(), []string{a.ID, b.ID, c.ID, d.ID}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want in order %v", got, want)
	}
	if rc.seen[gone.ID] != 0 {
		t.Fatal("a removed notification was delivered")
	}
	inbox, _, _ := s.List(ctx, "exley-police", 0, 10)
	if slices.Contains(ids(inbox), gone.ID) || len(inbox) != 4 {
		t.Fatalf("inbox %v", ids(inbox))
	}
}

func TestOpenTwiceIsBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	s := openStore(t, path)
	defer s.Close()
	_, err := notify.Open(path, notify.Options{OpenTimeout: 50 * time.Millisecond})
	if !errors.Is(err, notify.ErrBusy) || !strings.Contains(err.Error(), "another gateway") {
		t.Fatalf("got %v", err)
	}
}

// TestPurgeKeepsWhatIsUndelivered: past the retention, delivered (or
// pull-only) notifications are purged; queued ones are kept.
func TestPurgeKeepsWhatIsUndelivered(t *testing.T) {
	k, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, filepath.Join(t.TempDir(), "outbox.db"))
	defer s.Close()
	ctx := context.Background()
	old, queued := note("exley-jcp"), note("exley-police")
	if err := s.Add(ctx, []*provider.Notification{old, queued}, func(p string) bool { return p == "exley-police" }); err != nil {
		t.Fatal(err)
	}
	d := notify.NewDispatcher(s, k, notify.DispatchOptions{
		Webhook:   func(string) (string, bool) { return "http://127.0.0.1:1/", true },
		Retention: 24 * time.Hour,
		Now:       func() time.Time { return at.Add(48 * time.Hour) },
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- d.Run(rctx) }()
	waitFor(t, "the purge", func() bool { got, _, _ := s.List(ctx, "exley-jcp", 0, 10); return len(got) == 0 })
	cancel()
	<-done
	if got, _, _ := s.List(ctx, "exley-police", 0, 10); len(got) != 1 {
		t.Fatalf("a queued notification was purged: %v", got)
	}
}
