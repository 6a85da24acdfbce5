package console

import (
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/registry"
)

func TestSessionTimeouts(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	for _, tc := range []struct {
		name  string
		steps []time.Duration // time passing before each use
		alive bool
	}{
		{"used within the idle timeout", []time.Duration{29 * time.Minute}, true},
		{"idle too long", []time.Duration{30 * time.Minute}, false},
		{"kept busy, within the absolute timeout", []time.Duration{20 * time.Minute, 20 * time.Minute, 20 * time.Minute}, true},
		{"kept busy past the absolute timeout", []time.Duration{25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25 * time.Minute}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
			ss := newSessions(clock, 30*time.Minute, 100*time.Minute, 10)
			s := ss.create(&session{Partner: "exley-csc", Practitioner: "ig-0001"})
			var got *session
			for _, d := range tc.steps {
				now = now.Add(d)
				got = ss.get(s.id)
				if got == nil {
					break
				}
			}
			if (got != nil) != tc.alive {
				t.Fatalf("alive = %v, want %v", got != nil, tc.alive)
			}
			if !tc.alive && ss.get(s.id) != nil {
				t.Fatal("an expired session came back")
			}
		})
	}
}

func TestSessionsAreBoundedAndSecret(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	ss := newSessions(func() time.Time { return now }, time.Hour, 8*time.Hour, 3)
	var all []*session
	for i := range 5 {
		now = now.Add(time.Second)
		all = append(all, ss.create(&session{Practitioner: string(rune('a' + i))}))
	}
	if len(ss.byID) != 3 || ss.get(all[0].id) != nil || ss.get(all[1].id) != nil || ss.get(all[4].id) == nil {
		t.Fatalf("the bound keeps %d sessions; the oldest must go first", len(ss.byID))
	}
	s := all[4]
	if len(s.id) != 64 || len(s.csrf) != 64 || s.id == s.csrf || s.publicID == "" || s.publicID == s.id[:16] {
		t.Fatalf("session secrets: id %q csrf %q public %q", s.id, s.csrf, s.publicID)
	}
	ss.end(s.id)
	if ss.get(s.id) != nil {
		t.Fatal("a session survived sign-out")
	}
}

func TestLocalNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                          Prefix,
		"/console/reviews?x=1":      "/console/reviews?x=1",
		"https://evil.example/":     Prefix,
		"//evil.example/console/":   Prefix,
		"/v1/audit/snapshot":        Prefix,
		"/console/\\evil":           Prefix,
		"/console/a\r\nSet-Cookie:": Prefix,
	} {
		if got := localNext(in); got != want {
			t.Errorf("localNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClaimedRoles(t *testing.T) {
	reg, err := registry.Parse(t.Context(), []byte(`id: t
name: T
purposes: [{id: safeguarding, description: s}]
categories: [{id: identity, description: i}]
roles: [{id: ig_lead, description: i}, {id: auditor, description: a}]
partners: []
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		claim any
		want  []string
	}{
		{"ig_lead", []string{"ig_lead"}},
		{"ig_lead auditor", []string{"ig_lead", "auditor"}},
		{[]any{"auditor", "admin", "auditor", 7}, []string{"auditor"}},
		{nil, nil},
		{map[string]any{"ig_lead": true}, nil},
	} {
		got := claimedRoles(tc.claim, reg)
		if len(got) != len(tc.want) {
			t.Fatalf("claimedRoles(%v) = %v, want %v", tc.claim, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("claimedRoles(%v) = %v, want %v", tc.claim, got, tc.want)
			}
		}
	}
}

func TestChartScalesToTheLargestGroup(t *testing.T) {
	ch := newChart("c", "C", []any{
		map[string]any{"key": "a", "shares": 10.0, "denials": 10.0},
		map[string]any{"key": "b", "shares": 1.0, "denials": 0.0},
		map[string]any{"key": "none", "shares": 0.0, "denials": 0.0},
	}, 10)
	if len(ch.Bars) != 2 || ch.Empty {
		t.Fatalf("bars %+v", ch.Bars)
	}
	a, b := ch.Bars[0], ch.Bars[1]
	if a.ShareW+a.DenialW != chartBarW || a.ShareW != chartBarW/2 || b.ShareW != chartBarW/20 || b.DenialW != 0 || b.Y != chartRowH {
		t.Fatalf("layout a=%+v b=%+v", a, b)
	}
	if e := newChart("e", "E", nil, 10); !e.Empty {
		t.Fatal("an empty chart is not marked empty")
	}
}
