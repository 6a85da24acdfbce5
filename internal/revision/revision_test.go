package revision_test

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/revision"
	"github.com/childrens-trust/trustgate/policies"
)

// now is inside every demo protocol's period.
var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

var (
	demoOnce sync.Once
	demoDir  string
	demoErr  error
)

// trust copies a demo Trust (prepared once per test binary) and the
// embedded policies into a fresh directory the test may edit.
func trust(t *testing.T) (revision.Sources, string) {
	t.Helper()
	demoOnce.Do(func() {
		demoDir, demoErr = os.MkdirTemp("", "trustgate-revision-demo-")
		if demoErr == nil {
			demoErr = demo.Init(demoDir, demo.Options{})
		}
	})
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "protocols"), os.DirFS(filepath.Join(demoDir, "protocols"))); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "policies"), policies.FS); err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			err = os.Chmod(p, 0o755)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return revision.Sources{
		ProtocolsDir: filepath.Join(dir, "protocols"),
		PoliciesDir:  filepath.Join(dir, "policies"),
		Settings:     policy.Settings{OverrideReviewDays: 5},
	}, dir
}

func load(t *testing.T, src revision.Sources, prev *revision.Revision) (*revision.Revision, *revision.Report) {
	t.Helper()
	return revision.Load(context.Background(), src, now, "test", revision.Options{Previous: prev})
}

func mustLoad(t *testing.T, src revision.Sources) *revision.Revision {
	t.Helper()
	rev, rep := load(t, src, nil)
	if !rep.OK {
		t.Fatalf("the demo Trust does not load: %v", rep.Err())
	}
	return rev
}

func edit(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantProblem asserts the report rejects the revision with a problem of
// check whose fields contain the given text.
func wantProblem(t *testing.T, rev *revision.Revision, rep *revision.Report, check string, match func(revision.Problem) bool) revision.Problem {
	t.Helper()
	if rev != nil || rep.OK {
		t.Fatalf("the revision was accepted: %+v", rep.Steps)
	}
	for _, p := range rep.Problems {
		if p.Check == check && match(p) {
			return p
		}
	}
	t.Fatalf("no %s problem as expected; problems:\n%v", check, rep.Err())
	return revision.Problem{}
}

func TestDemoTrustPassesEveryCheck(t *testing.T) {
	src, _ := trust(t)
	rev, rep := load(t, src, nil)
	if !rep.OK || rev == nil {
		t.Fatalf("rejected: %v", rep.Err())
	}
	var checks []string
	for _, s := range rep.Steps {
		checks = append(checks, s.Check)
	}
	want := []string{revision.CheckLoad, revision.CheckCompile, revision.CheckProtocols, revision.CheckSignatures, revision.CheckAppointments, revision.CheckTests, revision.CheckSamples, revision.CheckProbes}
	if !slices.Equal(checks, want) {
		t.Fatalf("steps %q, want %q", checks, want)
	}
	if rep.Tests == nil || rep.Tests.Passed < 50 || rep.Tests.Failed != 0 {
		t.Fatalf("tests %+v", rep.Tests)
	}
	for _, s := range rep.Samples {
		if s.Outcome != "pass" {
			t.Errorf("sample %q: %s %s", s.Name, s.Outcome, s.Detail)
		}
	}
	if len(rep.Samples) != len(rev.Samples) || len(rev.Samples) < 5 {
		t.Fatalf("samples %d of %d", len(rep.Samples), len(rev.Samples))
	}
	if rep.Revision != rev.Hash() || len(rev.PolicyFiles) < 4 {
		t.Fatalf("revision %s files %+v", rep.Revision, rev.PolicyFiles)
	}
}

func TestBrokenEditsAreRejectedPrecisely(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(t *testing.T, dir string)
		check string
		match func(p revision.Problem) bool
	}{
		{
			name: "syntax error names file and line",
			edit: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "policies", "extra.rego"), "package trustgate.extra\n\nimport rego.v1\n\nx := {\n")
			},
			check: revision.CheckCompile,
			match: func(p revision.Problem) bool { return p.File == "extra.rego" && p.Line > 0 },
		},
		{
			name: "strict compile: an unused import",
			edit: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "policies", "extra.rego"), "package trustgate.extra\n\nimport rego.v1\n\nimport data.trustgate.partners\n\nx := 1\n")
			},
			check: revision.CheckCompile,
			match: func(p revision.Problem) bool { return p.File == "extra.rego" && p.Line == 5 },
		},
		{
			name: "a failing Rego test names the test",
			edit: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "policies", "extra_test.rego"), "package trustgate.extra_test\n\nimport rego.v1\n\ntest_always_fails if {\n\t1 == 2\n}\n")
			},
			check: revision.CheckTests,
			match: func(p revision.Problem) bool {
				return p.File == "extra_test.rego" && p.Line == 5 && strings.HasSuffix(p.Name, "test_always_fails")
			},
		},
		{
			name: "a conflict that only shows at evaluation",
			edit: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "policies", "conflict.rego"), conflictRego)
			},
			check: revision.CheckProbes,
			match: func(p revision.Problem) bool {
				return strings.Contains(p.Message, "policy evaluation failed") && strings.Contains(p.Name, "isp-safeguarding")
			},
		},
		{
			name: "a sample that gets another answer",
			edit: func(t *testing.T, dir string) {
				edit(t, filepath.Join(dir, "policies", "samples.yaml"), "  - name: a teacher may not receive GP data\n", "  - name: a teacher may not receive GP data\n    at: 2026-06-01\n")
				edit(t, filepath.Join(dir, "policies", "samples.yaml"), "    categories: [health_summary]\n    expect: {allow: false}", "    categories: [health_summary]\n    expect: {allow: true}")
			},
			check: revision.CheckSamples,
			match: func(p revision.Problem) bool {
				return p.Name == "a teacher may not receive GP data" && p.Line == 27 && strings.HasPrefix(p.Message, "expected allow, got deny")
			},
		},
		{
			name: "a samples file with an unknown key",
			edit: func(t *testing.T, dir string) {
				edit(t, filepath.Join(dir, "policies", "samples.yaml"), "    provider: riverside-gp\n", "    provider: riverside-gp\n    provder: x\n")
			},
			check: revision.CheckSamples,
			match: func(p revision.Problem) bool { return p.Line == 30 && strings.Contains(p.Message, "provder") },
		},
		{
			name: "a bad signature names the file, the signatory and the key",
			edit: func(t *testing.T, dir string) {
				edit(t, filepath.Join(dir, "protocols", "youth-justice.yaml"), "title: Exley youth justice", "title: Exley Youth Justice")
			},
			check: revision.CheckSignatures,
			match: func(p revision.Problem) bool {
				return strings.HasSuffix(p.File, "youth-justice.yaml.jws") && p.Partner == "exley-police" &&
					strings.HasPrefix(p.KeyID, "exley-police-") && strings.Contains(p.Message, "does not verify")
			},
		},
		{
			name: "a protocol that does not parse names the line",
			edit: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "protocols", "draft.yaml"), "id: isp-draft\nversion: 1\ntitle: Draft\nsignatories: [exley-csc, exley-police]\neffective_from: 2026-01-01\nreview_by: 2026-06-01\nexpires: 2027-01-01\npurposes: [safeguarding]\nrules:\n  - id: r1\n    providers: {types: [police]}\n    requesters: {partners: [exley-csc]}\n    purposes: [safeguarding]\n    categories: [police_concerns]\n    lawful_basis: x\n    consent: sometimes\n")
			},
			check: revision.CheckProtocols,
			match: func(p revision.Problem) bool {
				return strings.HasSuffix(p.File, "draft.yaml") && p.Line == 16 && strings.Contains(p.Message, "rules[0].consent")
			},
		},
		{
			name: "a protocol in force losing its signatures",
			edit: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "protocols", "safeguarding.yaml.jws")); err != nil {
					t.Fatal(err)
				}
			},
			check: revision.CheckContinuity,
			match: func(p revision.Problem) bool {
				return strings.HasSuffix(p.File, "safeguarding.yaml") && strings.Contains(p.Message, "isp-safeguarding is in force now and would not be")
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dir := trust(t)
			prev := mustLoad(t, src)
			c.edit(t, dir)
			rev, rep := load(t, src, prev)
			p := wantProblem(t, rev, rep, c.check, c.match)
			if rep.Previous != prev.Hash() || p.String() == "" {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// conflictRego gives a second, different decision for requests about one
// real partner: it compiles (strict), the Rego tests (which use their own
// partners) pass, and only an evaluation about exley-police fails.
const conflictRego = `package trustgate.sharing

import rego.v1

decision := {"allow": false, "categories": [], "reasons": ["conflict"], "protocol": null, "lawful_basis": "", "basis": "", "override": false, "consents": [], "obligations": []} if {
	input.provider.partner == "exley-police"
}
`

func TestRetiringAndWithdrawingAreOrdinary(t *testing.T) {
	src, dir := trust(t)
	prev := mustLoad(t, src)

	// Removing a protocol's file retires it.
	for _, f := range []string{"youth-justice.yaml", "youth-justice.yaml.jws"} {
		if err := os.Remove(filepath.Join(dir, "protocols", f)); err != nil {
			t.Fatal(err)
		}
	}
	rev, rep := load(t, src, prev)
	if !rep.OK {
		t.Fatalf("retiring a protocol rejected: %v", rep.Err())
	}
	if rev.Hash() == prev.Hash() {
		t.Fatal("retiring a protocol did not change the revision hash")
	}

	// A signatory's withdrawal takes the protocol out of the policy's data
	// from its effective time: later, the protocol's end moves; at once, it
	// is gone.
	key, partner, err := protocol.ReadPrivateKey(filepath.Join(demoDir, "keys", "exley-police.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "protocols", "safeguarding.yaml")
	later := now.Add(72 * time.Hour)
	if err := protocol.WithdrawFile(path, key, partner, later, now); err != nil {
		t.Fatal(err)
	}
	rev2, rep := load(t, src, rev)
	if !rep.OK {
		t.Fatalf("a future withdrawal rejected: %v", rep.Err())
	}
	pd := findProtocol(rev2, "isp-safeguarding")
	if pd == nil || pd.ExpiresNS != later.UnixNano() {
		t.Fatalf("isp-safeguarding in data: %+v", pd)
	}
	if err := protocol.WithdrawFile(path, key, partner, now.Add(-time.Minute), now); err != nil {
		t.Fatal(err)
	}
	rev3, rep := load(t, src, rev2)
	if !rep.OK {
		t.Fatalf("an effective withdrawal rejected: %v", rep.Err())
	}
	if findProtocol(rev3, "isp-safeguarding") != nil {
		t.Fatal("a withdrawn protocol is still in the policy's data")
	}
}

func findProtocol(rev *revision.Revision, id string) *policy.ProtocolData {
	for _, p := range rev.Policy.Data().Protocols {
		if p.ID == id {
			return &p
		}
	}
	return nil
}

func TestLoaderKeepsServingOnRejection(t *testing.T) {
	src, dir := trust(t)
	h := &revision.Holder{}
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	l := revision.NewLoader(h, src, revision.LoaderOptions{Now: func() time.Time { return now }, Log: log})
	first, err := l.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Current() != first || first.Source != "start-up" {
		t.Fatal("start-up revision not published")
	}
	// Unchanged sources: the statuses are refreshed, the identity kept.
	rep := l.Reload(context.Background(), "SIGHUP")
	if !rep.OK || rep.Activated || !rep.Unchanged || h.Current().Source != "start-up" {
		t.Fatalf("unchanged reload: %+v", rep)
	}
	write(t, filepath.Join(dir, "policies", "extra.rego"), "package trustgate.extra\n\nx := \n")
	rep = l.Reload(context.Background(), "api")
	if rep.OK || h.Current().Hash() != first.Hash() {
		t.Fatal("a broken policy was published")
	}
	// The log says the previous revision keeps serving, and where the
	// problem is.
	if !strings.Contains(logged.String(), "revision rejected; the previous revision keeps serving") ||
		!strings.Contains(logged.String(), "msg=\"revision problem\" check=compile file=extra.rego line=4") {
		t.Fatalf("log:\n%s", logged.String())
	}
	st := l.Status()
	if st.Revision != first.Hash() || st.Rejected != 1 || st.Reloads != 2 || st.LastRejected != rep || st.LastReload != rep {
		t.Fatalf("status %+v", st)
	}
	if err := os.Remove(filepath.Join(dir, "policies", "extra.rego")); err != nil {
		t.Fatal(err)
	}
	edit(t, filepath.Join(dir, "policies", "sharing.rego"), "# The decision.", "# The decision (edited).")
	rep = l.Reload(context.Background(), "api")
	if !rep.OK || !rep.Activated || h.Current().Hash() == first.Hash() || h.Current().Source != "api" {
		t.Fatalf("a good edit was not published: %+v", rep)
	}
}

func TestWatchReloadsAfterChanges(t *testing.T) {
	src, dir := trust(t)
	h, l, first := watching(t, src)
	if got := l.Status().Watch.Dirs; len(got) < 3 {
		t.Fatalf("watched dirs %q", got)
	}
	// A burst of writes to the policy makes one new revision.
	for i := range 5 {
		edit(t, filepath.Join(dir, "policies", "sharing.rego"), "# The decision", "# The decision"+strings.Repeat("!", i+1)+" ")
	}
	waitFor(t, func() bool { return h.Current().Hash() != first.Hash() })
	if src := h.Current().Source; !strings.HasPrefix(src, "file watch: sharing.rego") {
		t.Fatalf("source %q", src)
	}
	second := h.Current()
	// A broken protocol edit is seen, rejected, and the revision stays.
	edit(t, filepath.Join(dir, "protocols", "early-help.yaml"), "title: Exley early help", "title: Exley Early Help")
	waitFor(t, func() bool { st := l.Status(); return st.LastRejected != nil })
	if h.Current() != second {
		t.Fatal("a rejected revision replaced the serving one")
	}
}

// watching starts a loader on src and its file watch (20 ms debounce),
// stopped when the test ends.
func watching(t *testing.T, src revision.Sources) (*revision.Holder, *revision.Loader, *revision.Revision) {
	t.Helper()
	h := &revision.Holder{}
	l := revision.NewLoader(h, src, revision.LoaderOptions{Now: func() time.Time { return now }})
	first, err := l.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Watch(ctx, 20*time.Millisecond) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	waitFor(t, func() bool { return l.Status().Watch != nil })
	return h, l, first
}

// waitFor polls cond for up to 10s (the watcher runs on real time).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A load that runs out of time is refused as such, not blamed on what it
// was checking when the time ran out.
func TestLoadOutOfTime(t *testing.T) {
	src, _ := trust(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	rev, rep := revision.Load(ctx, src, now, "test", revision.Options{})
	if rev != nil || rep.OK {
		t.Fatal("accepted")
	}
	last := rep.Problems[len(rep.Problems)-1]
	if last.Check != revision.CheckLoad || !strings.Contains(last.Message, "did not finish in time") {
		t.Fatalf("problems %+v", rep.Problems)
	}
	for _, p := range rep.Problems {
		if strings.Contains(p.Message, "deadline") && p.Check != revision.CheckLoad {
			t.Fatalf("a timeout blamed on %+v", p)
		}
	}
}

// A deploy that replaces the watched directories instead of editing them
// (`rm -rf policies && mv new policies`, a fresh copy of protocols/):
// the watch follows the new directories, reloads from them, and still
// sees later edits; while a directory is missing, the status says so.
func TestWatchSurvivesReplacedDirectories(t *testing.T) {
	src, dir := trust(t)
	h, l, first := watching(t, src)
	pols := filepath.Join(dir, "policies")
	replace := func(name string, edit func(tmp string)) {
		t.Helper()
		tmp := filepath.Join(dir, name+".new")
		if err := os.CopyFS(tmp, os.DirFS(filepath.Join(dir, name))); err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(tmp)
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// 1. rm -rf policies && mv new policies: reloaded from the new one.
	replace("policies", func(tmp string) {
		edit(t, filepath.Join(tmp, "sharing.rego"), "# The decision", "# The decision (deploy 1)")
	})
	waitFor(t, func() bool { return h.Current().Hash() != first.Hash() })
	second := h.Current()
	// 2. A later edit inside the new directory is still seen.
	edit(t, filepath.Join(pols, "sharing.rego"), "# The decision (deploy 1)", "# The decision (edit after deploy)")
	waitFor(t, func() bool { return h.Current().Hash() != second.Hash() })
	third := h.Current()
	// 3. protocols/ replaced by a fresh copy; a later edit in it is seen
	// (an unsigned edit is rejected, which is how it shows).
	replace("protocols", nil)
	waitFor(t, func() bool { return l.Status().Watch.Resyncs >= 2 })
	edit(t, filepath.Join(dir, "protocols", "early-help.yaml"), "title: Exley early help", "title: Exley Early Help")
	waitFor(t, func() bool { return l.Status().LastRejected != nil })
	if h.Current() != third {
		t.Fatal("a rejected revision replaced the serving one")
	}
	edit(t, filepath.Join(dir, "protocols", "early-help.yaml"), "title: Exley Early Help", "title: Exley early help")
	// 4. A directory removed and not replaced: the status says so.
	if err := os.Rename(pols, pols+".gone"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		w := l.Status().Watch
		return len(w.NotWatching) == 1 && strings.Contains(w.Error, "not watching")
	})
	if err := os.Rename(pols+".gone", pols); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { w := l.Status().Watch; return len(w.NotWatching) == 0 && w.Error == "" })
	edit(t, filepath.Join(pols, "sharing.rego"), "# The decision (edit after deploy)", "# The decision (back)")
	waitFor(t, func() bool { return h.Current().Hash() != third.Hash() })
}
