package involvement_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/involvement"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T, o involvement.Options) *involvement.Store {
	t.Helper()
	s, err := involvement.Open(filepath.Join(t.TempDir(), "index.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func pseudo(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:])
}

func inv(child, partner, kind string, concern bool) *involvement.Involvement {
	return &involvement.Involvement{
		Subject: pseudo(child), Partner: partner, Practitioner: partner + "-p1",
		Contact: involvement.Contact{Email: "duty@example.org"}, Service: "svc", Kind: kind,
		Concern: concern, Start: t0.Add(-24 * time.Hour),
	}
}

func tellBoth(a, b *involvement.Involvement) (bool, bool, error) { return true, true, nil }

func TestUndoRestoresExactly(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, involvement.Options{})
	if _, _, _, err := s.Record(ctx, inv("a", "csc", "child_in_need", true), t0, tellBoth); err != nil {
		t.Fatal(err)
	}
	v, ms, undo, err := s.Record(ctx, inv("a", "gp", "health", true), t0, tellBoth)
	if err != nil || len(ms) != 1 {
		t.Fatalf("record: %v, %d matches", err, len(ms))
	}
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, v.ID); !errors.Is(err, involvement.ErrNotFound) {
		t.Fatalf("undone involvement: %v", err)
	}
	snap, _ := s.View(ctx, pseudo("a"), t0)
	if len(snap.Involvements) != 1 {
		t.Fatalf("%d involvements after undo", len(snap.Involvements))
	}
	if m, _ := s.Matches(ctx, "csc", "csc-p1"); len(m) != 0 {
		t.Fatalf("the undone match is still listed: %+v", m)
	}
	// Recording it again matches again: the undone match left no trace.
	if _, ms, _, err := s.Record(ctx, inv("a", "gp", "health", true), t0, tellBoth); err != nil || len(ms) != 1 {
		t.Fatalf("again: %v, %d matches", err, len(ms))
	}
}

func TestSyncIsTheTruthAndIdempotent(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, involvement.Options{})
	by := involvement.Actor{Partner: "police", Practitioner: "x"}
	load := func(children ...string) *involvement.SyncResult {
		t.Helper()
		var items []*involvement.Involvement
		for _, c := range children {
			items = append(items, inv(c, "police", "youth_justice", false))
		}
		res, _, err := s.Sync(ctx, "police", items, t0, by, "r", tellBoth)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, c := range []struct {
		children                           []string
		created, updated, unchanged, ended int
	}{
		{[]string{"a", "b", "c"}, 3, 0, 0, 0},
		{[]string{"a", "b", "c"}, 0, 0, 3, 0},
		{[]string{"c", "a"}, 0, 0, 2, 1},
		{[]string{}, 0, 0, 0, 2},
		{[]string{"b"}, 1, 0, 0, 0}, // a new involvement: the old one stays ended
	} {
		r := load(c.children...)
		if r.Created != c.created || r.Updated != c.updated || r.Unchanged != c.unchanged || r.Ended != c.ended {
			t.Fatalf("sync %v: %+v", c.children, r)
		}
	}
	snap, _ := s.View(ctx, pseudo("b"), t0)
	if len(snap.Involvements) != 2 {
		t.Fatalf("b has %d involvements: ended ones are kept", len(snap.Involvements))
	}
}

func TestBasis(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, involvement.Options{})
	if _, _, _, err := s.Record(ctx, inv("a", "csc", "early_help", false), t0, tellBoth); err != nil {
		t.Fatal(err)
	}
	e, _, err := s.OpenEpisode(ctx, pseudo("b"), t0, involvement.Actor{Partner: "csc", Practitioner: "ehw"}, "early_help_worker")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ChangeEpisode(ctx, e.ID, involvement.Join(involvement.Member{Partner: "school", Practitioner: "t1", Role: "teacher", Joined: t0})); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		partner, child string
		want           bool
	}{
		{"csc", "a", true}, {"gp", "a", false}, {"school", "b", true}, {"csc", "b", true}, {"school", "a", false},
	} {
		if got, err := s.Basis(ctx, c.partner, pseudo(c.child), t0); err != nil || got != c.want {
			t.Errorf("Basis(%s, %s) = %v, %v", c.partner, c.child, got, err)
		}
	}
	if _, _, err := s.ChangeEpisode(ctx, e.ID, involvement.Close(t0.Add(time.Hour), involvement.Actor{Partner: "csc"})); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Basis(ctx, "school", pseudo("b"), t0.Add(2*time.Hour)); got {
		t.Error("a closed episode's team is still a basis")
	}
}

func TestRetention(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, involvement.Options{ActiveFor: 48 * time.Hour, VisibleFor: 72 * time.Hour})
	a := inv("a", "csc", "child_in_need", true)
	if _, _, _, err := s.Record(ctx, a, t0, tellBoth); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.Record(ctx, inv("a", "gp", "health", true), t0, tellBoth); err != nil {
		t.Fatal(err)
	}
	var recorded []*involvement.Erasure
	rec := func(_ context.Context, e *involvement.Erasure) error { recorded = append(recorded, e); return nil }

	// Two days after the last renewal (the start), both lapse.
	res, err := s.Sweep(ctx, t0.Add(48*time.Hour), rec)
	if err != nil || res.Lapsed != 2 || res.Erased != 0 {
		t.Fatalf("lapse: %+v %v", res, err)
	}
	got, _ := s.Get(ctx, a.ID)
	if got.EndReason != involvement.EndedLapsed || !got.End.Equal(a.Start.Add(48*time.Hour)) {
		t.Fatalf("lapsed: %+v", got)
	}
	// The audit (recorder) is down: nothing is erased.
	down := func(context.Context, *involvement.Erasure) error { return errors.New("audit down") }
	if _, err := s.Sweep(ctx, t0.Add(10*24*time.Hour), down); err == nil {
		t.Fatal("a sweep whose recorder failed succeeded")
	}
	if _, err := s.Get(ctx, a.ID); err != nil {
		t.Fatalf("erased without a record: %v", err)
	}
	// Visible three days after the end, then erased, with the match.
	res, err = s.Sweep(ctx, t0.Add(10*24*time.Hour), rec)
	if err != nil || res.Children != 1 || res.Erased != 3 || len(recorded) != 1 || len(recorded[0].Matches) != 1 {
		t.Fatalf("erase: %+v %v %+v", res, err, recorded)
	}
	if _, err := s.Get(ctx, a.ID); !errors.Is(err, involvement.ErrNotFound) {
		t.Fatalf("not erased: %v", err)
	}
	if m, _ := s.Matches(ctx, "csc", "csc-p1"); len(m) != 0 {
		t.Fatal("the match outlived its involvements")
	}
}

// The index keys times as Unix nanoseconds (good until 2262): a start
// or end outside 2000–2099 is refused, naming the field.
func TestTimesBounded(t *testing.T) {
	for _, c := range []struct {
		start, end time.Time
		field      string
	}{
		{t0, time.Time{}, ""},
		{t0, t0.AddDate(70, 0, 0), ""},
		{time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC), time.Time{}, "start"},
		{time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{}, "start"},
		{t0, time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), "end"},
		{t0, t0.Add(-time.Hour), "end"},
	} {
		v := inv("c", "p", "early_help", false)
		v.Start, v.End = c.start, c.end
		err := v.Check("")
		var fe *involvement.FieldError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%v–%v refused: %v", c.start, c.end, err)
		case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field):
			t.Errorf("%v–%v: %v, want a refusal naming %s", c.start, c.end, err, c.field)
		}
	}
}
