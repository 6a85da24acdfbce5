package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/decision"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/revision"
	"github.com/childrens-trust/trustgate/internal/whatif"
	"github.com/childrens-trust/trustgate/policies"
)

// editableTrust copies the demo Trust's protocols (with the registry and
// the partners' public keys) and the embedded policies into directories
// the test may edit, and points the gateway at them. The file watch is
// off unless the test turns it on: reloads happen when the test says.
func editableTrust(t *testing.T) (protocols, pols string, mutate func(*config.Config)) {
	t.Helper()
	demo := preparedDemo(t)
	dir := t.TempDir()
	protocols, pols = filepath.Join(dir, "protocols"), filepath.Join(dir, "policies")
	if err := os.CopyFS(protocols, os.DirFS(filepath.Join(demo, "protocols"))); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(pols, policies.FS); err != nil {
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
	return protocols, pols, func(c *config.Config) {
		c.ProtocolsDir, c.PoliciesDir, c.Policy.Watch = protocols, pols, false
	}
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func replaceIn(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// publishUnchecked publishes, bypassing every check, a revision whose
// policies are those in dir: only for proving that decisions fail closed
// whatever the serving policy does.
func (g *gateway) publishUnchecked(dir string) {
	g.t.Helper()
	rev, err := revision.Build(context.Background(), revision.Sources{
		ProtocolsDir: g.cfg.ProtocolsDir, PoliciesDir: dir,
		Settings: policy.Settings{OverrideReviewDays: g.cfg.Policy.OverrideReviewDays},
	}, g.clock.Now(), "test: unchecked")
	if err != nil {
		g.t.Fatal(err)
	}
	g.app.Revisions().Publish(rev)
}

func (g *gateway) reload() response {
	g.t.Helper()
	return g.do(http.MethodPost, "/v1/admin/reload", g.token("exley-csc", "ig_lead"), nil)
}

func (g *gateway) serving() string {
	return g.app.Revisions().Current().Hash()
}

// TestReloadUnderLoad reloads new revisions while hundreds of decision
// requests are in flight: no request fails, every answer names a revision
// that was activated, and the audit entry of every answer records the
// revision the answer names.
func TestReloadUnderLoad(t *testing.T) {
	_, pols, mutate := editableTrust(t)
	g := startGateway(t, func(c *config.Config) {
		mutate(c)
		// A reload competes with hundreds of requests for two cores (and,
		// under the race detector, takes far longer): let it take its time.
		c.HTTP.WriteTimeout = config.Duration{Duration: 5 * time.Minute}
		c.Policy.ReloadTimeout = config.Duration{Duration: 5 * time.Minute}
		c.Policy.RecheckRecent = 20
	})
	activated := map[string]bool{g.serving(): true}

	// 200 workers keep requests in flight until the reloads are done; each
	// makes at least 2 requests.
	const workers, reloads = 200, 4
	key := g.key("exley-csc")
	token := func() (string, error) {
		return identity.Mint(key, identity.MintClaims{Issuer: "exley-csc", Subject: "prac-social_worker", Role: "social_worker", IssuedAt: testNow, Lifetime: 2 * time.Minute})
	}
	reloadTokens := make([]string, reloads)
	for i := range reloadTokens {
		reloadTokens[i] = g.token("exley-csc", "ig_lead")
	}
	body := mustJSON(policeShare())
	client := &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	post := func(path, token string, body []byte) (int, map[string]any, error) {
		req, err := http.NewRequest(http.MethodPost, g.base+path, bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return resp.StatusCode, nil, fmt.Errorf("%w: %s", err, raw)
		}
		return resp.StatusCode, m, nil
	}

	type answer struct {
		status   int
		revision string
		seq      uint64
		err      error
	}
	answers := make(chan answer, 1024)
	start, reloaded := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	var collected []answer
	collectorDone := make(chan struct{})
	go func() {
		defer close(collectorDone)
		for a := range answers {
			collected = append(collected, a)
		}
	}()
	for range workers {
		wg.Go(func() {
			<-start
			for i := 0; ; i++ {
				if i >= 2 {
					select {
					case <-reloaded:
						return
					default:
					}
				}
				tok, err := token()
				if err != nil {
					answers <- answer{err: err}
					return
				}
				status, m, err := post("/v1/decisions", tok, body)
				a := answer{status: status, err: err}
				if m != nil {
					a.revision, _ = m["policy_revision"].(string)
					seq, _ := m["audit_seq"].(float64)
					a.seq = uint64(seq)
				}
				answers <- a
			}
		})
	}
	close(start)
	// Reload while the requests are in flight: each reload changes the
	// policy's text, so each activates a new revision.
	for i := range reloads {
		appendTo(t, filepath.Join(pols, "sharing.rego"), fmt.Sprintf("\n# Reloaded under load (%d).\n", i))
		status, m, err := post("/v1/admin/reload", reloadTokens[i], nil)
		if err != nil || status != http.StatusOK || m["activated"] != true {
			t.Fatalf("reload %d: %d %v %v", i, status, m, err)
		}
		activated[m["policy_revision"].(string)] = true
	}
	close(reloaded)
	wg.Wait()
	close(answers)
	<-collectorDone

	seen := map[string]int{}
	n := 0
	for _, a := range collected {
		n++
		if a.err != nil || a.status != http.StatusOK {
			t.Fatalf("a request failed during the reloads: status %d err %v", a.status, a.err)
		}
		if !activated[a.revision] {
			t.Fatalf("an answer names revision %s that was never activated", a.revision)
		}
		seen[a.revision]++
		e, err := g.app.Audit().Get(context.Background(), a.seq)
		if err != nil {
			t.Fatal(err)
		}
		if e.PolicyRevision != a.revision {
			t.Fatalf("audit seq %d records revision %s, the answer said %s", a.seq, e.PolicyRevision, a.revision)
		}
	}
	if n < 2*workers || len(activated) != reloads+1 {
		t.Fatalf("%d answers, %d revisions activated", n, len(activated))
	}
	if len(seen) < 3 {
		t.Fatalf("every answer came from one revision (%v): the reloads did not happen under load", seen)
	}
	t.Logf("%d decisions answered by %d revisions during %d reloads", n, len(seen), reloads)
}

// TestBrokenEditsLeaveThePreviousRevisionServing: a policy with a syntax
// error, one whose tests fail, one with a conflict that only shows at
// evaluation, and a protocol with a bad signature are each refused, with
// the file, the line or the signature named in the reload's answer and in
// the status; the previous revision keeps deciding.
func TestBrokenEditsLeaveThePreviousRevisionServing(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(t *testing.T, protocols, pols string)
		check string
		file  string // suffix of the problem's file
		line  int    // 0: not checked
		part  string // in the problem's message, partner or name
	}{
		{
			name: "a syntax error",
			edit: func(t *testing.T, _, pols string) {
				replaceIn(t, filepath.Join(pols, "sharing.rego"), "in_force_ix contains i if {", "in_force_ix contains i if {{")
			},
			check: revision.CheckCompile, file: "sharing.rego", part: "rego_parse_error",
		},
		{
			name: "a failing test",
			edit: func(t *testing.T, _, pols string) {
				replaceIn(t, filepath.Join(pols, "sharing.rego"), `"no_shared_protocol: no protocol in force is signed by both "`, `"no protocol in force is signed by both "`)
			},
			check: revision.CheckTests, file: "sharing_test.rego", part: "test_",
		},
		{
			name: "a conflict that only shows at evaluation",
			edit: func(t *testing.T, _, pols string) {
				if err := os.WriteFile(filepath.Join(pols, "override.rego"), []byte(`package trustgate.sharing

import rego.v1

decision := {"allow": false, "categories": [], "reasons": ["closed"], "protocol": null, "lawful_basis": "", "basis": "", "override": false, "consents": [], "obligations": []} if {
	input.requester.partner == "exley-csc"
}
`), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			check: revision.CheckProbes, part: "eval_conflict_error",
		},
		{
			name: "a protocol with a bad signature",
			edit: func(t *testing.T, protocols, _ string) {
				replaceIn(t, filepath.Join(protocols, "safeguarding.yaml"), "purposes: [safeguarding, child_protection]", "purposes: [child_protection, safeguarding]")
			},
			check: revision.CheckSignatures, file: "safeguarding.yaml.jws", part: "exley-police",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			protocols, pols, mutate := editableTrust(t)
			g := startGateway(t, mutate)
			before := g.serving()
			c.edit(t, protocols, pols)

			r := g.reload()
			if r.Status != http.StatusUnprocessableEntity || r.Body["activated"] != false || r.Body["policy_revision"] != before {
				t.Fatalf("reload answered %d: %s", r.Status, r.Raw)
			}
			if errorOf(t, r)["code"] != "reload_rejected" {
				t.Fatalf("error %s", r.Raw)
			}
			var answer struct {
				Report revision.Report `json:"report"`
			}
			if err := json.Unmarshal(r.Raw, &answer); err != nil {
				t.Fatal(err)
			}
			p := findProblem(t, answer.Report.Problems, c.check, c.file, c.part)
			if c.check == revision.CheckCompile && p.Line == 0 {
				t.Fatalf("a compile problem without a line: %+v", p)
			}
			if c.check == revision.CheckSignatures && (p.Partner != "exley-police" || !strings.HasPrefix(p.KeyID, "exley-police-")) {
				t.Fatalf("a signature problem that does not name the signature: %+v", p)
			}

			// The previous revision keeps deciding.
			if g.serving() != before {
				t.Fatal("the serving revision changed")
			}
			d := g.decide("exley-csc", "social_worker", policeShare())
			if decisionOf(t, d)["allow"] != true || d.Body["policy_revision"] != before {
				t.Fatalf("after the rejected reload: %s", d.Raw)
			}
			// The status says what was rejected and why.
			st := g.do(http.MethodGet, "/v1/admin/status", g.token("exley-csc", "ig_lead"), nil)
			var status struct {
				Status revision.Status `json:"status"`
			}
			if err := json.Unmarshal(st.Raw, &status); err != nil || st.Status != 200 {
				t.Fatalf("status %d %s", st.Status, st.Raw)
			}
			if status.Status.Revision != before || status.Status.LastRejected == nil || status.Status.Rejected != 1 {
				t.Fatalf("status %s", st.Raw)
			}
			findProblem(t, status.Status.LastRejected.Problems, c.check, c.file, c.part)
			// The reload itself is in the audit trail, with what was wrong.
			head, _ := g.app.Audit().Head()
			for seq := head; seq > 0; seq-- {
				e, err := g.app.Audit().Get(context.Background(), seq)
				if err != nil {
					t.Fatal(err)
				}
				if e.Path == "/v1/admin/reload" {
					if e.Status != 422 || e.Error == "" || len(e.Reasons) == 0 || e.Role != "ig_lead" {
						t.Fatalf("reload audit entry %+v", e)
					}
					return
				}
			}
			t.Fatal("the reload was not audited")
		})
	}
}

func findProblem(t *testing.T, ps []revision.Problem, check, file, part string) revision.Problem {
	t.Helper()
	for _, p := range ps {
		if p.Check == check && strings.HasSuffix(p.File, file) &&
			(strings.Contains(p.Message, part) || strings.Contains(p.Name, part) || p.Partner == part) {
			return p
		}
	}
	t.Fatalf("no %s problem in %s mentioning %q: %+v", check, file, part, ps)
	return revision.Problem{}
}

func TestReloadAndStatusAreForTheIGLead(t *testing.T) {
	_, _, mutate := editableTrust(t)
	g := startGateway(t, mutate)
	for _, c := range []struct{ method, path string }{{http.MethodPost, "/v1/admin/reload"}, {http.MethodGet, "/v1/admin/status"}} {
		r := g.do(c.method, c.path, g.token("exley-csc", "social_worker"), nil)
		if r.Status != http.StatusForbidden {
			t.Fatalf("%s %s as a social worker: %d %s", c.method, c.path, r.Status, r.Raw)
		}
	}
	r := g.do(http.MethodPost, "/v1/admin/reload", g.token("exley-csc", "ig_lead"), []byte(`{"dir": "/etc"}`))
	if r.Status != http.StatusBadRequest || errorOf(t, r)["field"] != "body" {
		t.Fatalf("a reload with parameters: %d %s", r.Status, r.Raw)
	}
	r = g.reload()
	if r.Status != http.StatusOK || r.Body["unchanged"] != true || r.Body["activated"] != false {
		t.Fatalf("a reload of unchanged sources: %d %s", r.Status, r.Raw)
	}
}

// TestWithdrawalTakesAProtocolOutOfForce: a signatory's signed withdrawal,
// once loaded, takes the protocol out of force for everyone from its
// effective time, and the listings say who withdrew from when.
func TestWithdrawalTakesAProtocolOutOfForce(t *testing.T) {
	protocols, _, mutate := editableTrust(t)
	g := startGateway(t, mutate)
	if d := decisionOf(t, g.decide("exley-csc", "social_worker", policeShare())); d["allow"] != true {
		t.Fatalf("before: %v", d)
	}
	effective := testNow.Add(2 * time.Hour)
	path := filepath.Join(protocols, "safeguarding.yaml")
	if err := protocol.WithdrawFile(path, g.key("exley-police"), "", effective, testNow); err != nil {
		t.Fatal(err)
	}
	r := g.reload()
	if r.Status != 200 || r.Body["activated"] != true {
		t.Fatalf("reload: %d %s", r.Status, r.Raw)
	}
	rev := r.Body["policy_revision"]
	// Until the effective time the protocol stays in force ...
	if d := decisionOf(t, g.decide("exley-csc", "social_worker", policeShare())); d["allow"] != true {
		t.Fatalf("before the withdrawal takes effect: %v", d)
	}
	pol := g.do(http.MethodGet, "/v1/policies", g.token("exley-csc", "social_worker"), nil)
	up := upcomingOf(t, pol, "isp-safeguarding", "withdrawal")
	if up == nil || up["partner"] != "exley-police" || up["days"] != float64(1) {
		t.Fatalf("upcoming withdrawal: %s", pol.Raw)
	}
	// ... and from it, no one may share under it; no reload is needed.
	g.clock.Set(effective)
	d := g.decide("exley-csc", "social_worker", policeShare())
	if decisionOf(t, d)["allow"] != false || d.Body["policy_revision"] != rev {
		t.Fatalf("after the withdrawal took effect: %s", d.Raw)
	}
	// The next reload lists it as not in force, saying who withdrew when.
	if r := g.reload(); r.Status != 200 {
		t.Fatalf("reload: %d %s", r.Status, r.Raw)
	}
	pl := g.do(http.MethodGet, "/v1/protocols", g.token("exley-csc", "social_worker"), nil)
	type listed struct {
		ID          string   `json:"id"`
		InForce     bool     `json:"in_force"`
		Reasons     []string `json:"reasons"`
		Withdrawals []struct {
			Partner   string    `json:"partner"`
			Effective time.Time `json:"effective"`
		} `json:"withdrawals"`
	}
	var list struct {
		Protocols []listed `json:"protocols"`
	}
	if err := json.Unmarshal(pl.Raw, &list); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list.Protocols, func(p listed) bool { return p.ID == "isp-safeguarding" })
	if i < 0 {
		t.Fatalf("listing %s", pl.Raw)
	}
	p := list.Protocols[i]
	want := "withdrawn by exley-police from " + protocol.NewDate(effective).String()
	if p.InForce || !slices.Contains(p.Reasons, want) || len(p.Withdrawals) != 1 ||
		p.Withdrawals[0].Partner != "exley-police" || !p.Withdrawals[0].Effective.Equal(effective) {
		t.Fatalf("isp-safeguarding listed as %+v", p)
	}
}

func upcomingOf(t *testing.T, r response, protocolID, event string) map[string]any {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("GET /v1/policies: %d %s", r.Status, r.Raw)
	}
	for _, u := range r.Body["upcoming"].([]any) {
		m := u.(map[string]any)
		if m["protocol"] == protocolID && m["event"] == event {
			return m
		}
	}
	return nil
}

// TestExpiryAtTheInstantWithoutReload: a protocol past its expires stops
// being in force at that instant, in the same revision.
func TestExpiryAtTheInstantWithoutReload(t *testing.T) {
	g := startGateway(t, nil)
	d, err := protocol.ReadDocument(filepath.Join(preparedDemo(t), "protocols", "safeguarding.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := protocol.Parse(d.Doc)
	if err != nil {
		t.Fatal(err)
	}
	expires := p.Expires.Time()
	rev := g.serving()

	g.clock.Set(expires.Add(-time.Nanosecond))
	r := g.decide("exley-csc", "social_worker", policeShare())
	if decisionOf(t, r)["allow"] != true || r.Body["policy_revision"] != rev {
		t.Fatalf("a nanosecond before expiry: %s", r.Raw)
	}
	g.clock.Set(expires)
	r = g.decide("exley-csc", "social_worker", policeShare())
	dec := decisionOf(t, r)
	if dec["allow"] != false || r.Body["policy_revision"] != rev || g.serving() != rev {
		t.Fatalf("at expiry: %s", r.Raw)
	}
	// The reason names the protocol that expired, not another the pair shares.
	if rs := strs(dec["reasons"]); len(rs) != 1 || !strings.HasPrefix(rs[0], "protocol_expired: isp-safeguarding v3 is no longer in force: expired on ") {
		t.Fatalf("reasons %v", dec["reasons"])
	}
}

// TestPoliciesListing: GET /v1/policies names the active revision, when and
// by what it was activated, its files, the protocols in force with their
// signatories, those not in force with the reasons, and what falls due
// within 30 days.
func TestPoliciesListing(t *testing.T) {
	_, pols, mutate := editableTrust(t)
	g := startGateway(t, mutate)
	r := g.do(http.MethodGet, "/v1/policies", g.token("exley-police", "police_officer"), nil)
	if r.Status != 200 || r.Body["policy_revision"] != g.serving() || r.Body["activated_by"] != "start-up" {
		t.Fatalf("listing %d %s", r.Status, r.Raw)
	}
	if at, _ := time.Parse(time.RFC3339, r.Body["activated_at"].(string)); !at.Equal(testNow) {
		t.Fatalf("activated_at %v", r.Body["activated_at"])
	}
	var names []string
	for _, f := range r.Body["files"].([]any) {
		m := f.(map[string]any)
		if len(m["sha256"].(string)) != 64 {
			t.Fatalf("file %v", m)
		}
		names = append(names, m["name"].(string))
	}
	if !slices.Contains(names, "sharing.rego") || !slices.Contains(names, "sharing_test.rego") {
		t.Fatalf("files %v", names)
	}
	var safeguarding map[string]any
	for _, p := range r.Body["protocols_in_force"].([]any) {
		if m := p.(map[string]any); m["id"] == "isp-safeguarding" {
			safeguarding = m
		}
	}
	if safeguarding == nil || !slices.ContainsFunc(safeguarding["signatories"].([]any), func(s any) bool {
		return s.(map[string]any)["partner"] == "exley-police"
	}) {
		t.Fatalf("isp-safeguarding in force: %v", safeguarding)
	}
	sig := safeguarding["signatories"].([]any)[0].(map[string]any)
	if !strings.HasPrefix(sig["kid"].(string), sig["partner"].(string)+"-") {
		t.Fatalf("signatory %v", sig)
	}
	var edu map[string]any
	for _, p := range r.Body["protocols_not_in_force"].([]any) {
		if m := p.(map[string]any); m["id"] == "isp-education-welfare" {
			edu = m
		}
	}
	if edu == nil || !slices.Contains(strs(edu["reasons"]), "no signature from exley-district") {
		t.Fatalf("isp-education-welfare not in force: %v", edu)
	}
	// The sensitive services protocol's review falls due on 2026-12-15.
	if up := upcomingOf(t, r, "isp-sensitive-services", "review_due"); up == nil || up["days"] != float64(23) {
		t.Fatalf("upcoming %v", r.Body["upcoming"])
	}
	if up := upcomingOf(t, r, "isp-early-help", "review_due"); up != nil {
		t.Fatalf("a review 70 days away listed: %v", up)
	}

	// After a reload the listing says by what.
	replaceIn(t, filepath.Join(pols, "sharing.rego"), "# The decision.", "# The decision, reviewed.")
	g.clock.Set(testNow.Add(time.Hour))
	if rr := g.reload(); rr.Status != 200 || rr.Body["activated"] != true {
		t.Fatalf("reload %d %s", rr.Status, rr.Raw)
	}
	r = g.do(http.MethodGet, "/v1/policies", g.token("exley-police", "police_officer"), nil)
	if r.Body["activated_by"] != "api: exley-csc/prac-ig_lead" || r.Body["policy_revision"] != g.serving() {
		t.Fatalf("after reload: %s", r.Raw)
	}
}

// TestFileWatchReloads: an edit to a watched file is picked up without any
// signal or call, and a broken one is refused.
func TestFileWatchReloads(t *testing.T) {
	protocols, pols, mutate := editableTrust(t)
	g := startGateway(t, func(c *config.Config) {
		mutate(c)
		c.Policy.Watch, c.Policy.WatchDebounce = true, config.Duration{Duration: 20 * time.Millisecond}
	})
	before := g.serving()
	pollUntil(t, func() bool { return g.app.Loader().Status().Watch != nil })
	replaceIn(t, filepath.Join(pols, "sharing.rego"), "# The decision.", "# The decision, watched.")
	pollUntil(t, func() bool { return g.serving() != before })
	after := g.serving()
	if src := g.app.Revisions().Current().Source; src != "file watch: sharing.rego" {
		t.Fatalf("source %q", src)
	}
	replaceIn(t, filepath.Join(protocols, "early-help.yaml"), "title: Exley early help", "title: Exley Early Help")
	pollUntil(t, func() bool { return g.app.Loader().Status().LastRejected != nil })
	if g.serving() != after {
		t.Fatal("a broken protocol edit was activated")
	}
}

// pollUntil polls cond for up to 10s: the file watch runs on real time.
func pollUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWhatIfOverTheRecordedLog records decisions through the gateway, then
// asks what a proposed edit would have changed, and checks the answer
// against evaluating every recorded input against the proposal.
func TestWhatIfOverTheRecordedLog(t *testing.T) {
	protocols, _, mutate := editableTrust(t)
	g := startGateway(t, mutate)
	asks := []struct {
		partner, role string
		body          map[string]any
	}{
		{"exley-csc", "social_worker", policeShare()},
		{"exley-csc", "social_worker", map[string]any{"subject": child, "provider": "exley-police", "purpose": "safeguarding", "categories": []string{"household"}}},
		{"exley-csc", "early_help_worker", map[string]any{"subject": child, "provider": "exley-community-health", "purpose": "early_help", "categories": []string{"immunisations"}}},
		{"exley-yos", "yot_officer", map[string]any{"subject": child, "provider": "exley-police", "purpose": "youth_justice", "categories": []string{"offending"}}},
		{"exley-academy", "teacher", map[string]any{"subject": child, "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"}}},
	}
	for day := range 4 {
		g.clock.Set(testNow.Add(time.Duration(day) * 24 * time.Hour))
		for _, a := range asks {
			decisionOf(t, g.decide(a.partner, a.role, a.body))
		}
	}
	g.clock.Set(testNow.Add(4 * 24 * time.Hour))

	// The proposal: household is no longer shared by the police rule.
	doc, err := os.ReadFile(filepath.Join(protocols, "safeguarding.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	proposed := strings.Replace(strings.Replace(string(doc), "categories: [police_concerns, household]", "categories: [police_concerns]", 1), "      household: [members, risks]\n", "", 1)
	if proposed == string(doc) {
		t.Fatal("the edit did not apply")
	}
	body := mustJSON(map[string]any{"since": "7d", "protocols": map[string]string{"safeguarding.yaml": proposed}})
	r := g.do(http.MethodPost, "/v1/admin/whatif", g.token("exley-csc", "ig_lead"), body)
	if r.Status != 200 {
		t.Fatalf("what-if: %d %s", r.Status, r.Raw)
	}
	var answer struct {
		WhatIf whatif.Result `json:"whatif"`
	}
	if err := json.Unmarshal(r.Raw, &answer); err != nil {
		t.Fatal(err)
	}
	got := answer.WhatIf

	// Brute force: the proposal written out, every recorded decision
	// evaluated against it.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(protocols)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "safeguarding.yaml"), []byte(proposed), 0o644); err != nil {
		t.Fatal(err)
	}
	prop, err := revision.Proposal(context.Background(), revision.Sources{ProtocolsDir: dir, PoliciesDir: g.cfg.PoliciesDir, Settings: policy.Settings{OverrideReviewDays: 5}}, g.clock.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]uint64{}
	decisions := 0
	head, _ := g.app.Audit().Head()
	for seq := uint64(1); seq <= head; seq++ {
		e, err := g.app.Audit().Get(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind != "decision" {
			continue
		}
		decisions++
		in, err := decision.InputOf(e)
		if err != nil {
			t.Fatalf("seq %d: no recorded input: %v", seq, err)
		}
		if strings.Contains(string(e.InputResidual), child) {
			t.Fatalf("the recorded input holds the NHS number: %s", e.InputResidual)
		}
		d, err := prop.Policy.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		was := whatif.Outcome{Allow: e.Decision == "allow", Protocol: e.Protocol, Version: e.ProtocolVersion, Rule: e.Rule}
		if was.Allow {
			was.Categories = slices.Sorted(slices.Values(e.AllowedCategories))
		}
		if kind, rule := whatif.Change(was, whatif.OutcomeOf(d)); kind != "" {
			k := kind + "|" + rule + "|" + in.Purpose
			want[k] = append(want[k], seq)
		}
	}
	gotGroups := map[string][]uint64{}
	for _, grp := range got.Groups {
		if len(grp.Examples) != min(grp.Count, 5) {
			t.Fatalf("group %+v", grp)
		}
		gotGroups[grp.Change+"|"+grp.Rule+"|"+grp.Purpose] = grp.Examples
	}
	for k, seqs := range want {
		if len(seqs) > 5 {
			want[k] = seqs[:5]
		}
	}
	if got.Decisions != decisions || decisions != 4*len(asks) || !reflect.DeepEqual(gotGroups, want) {
		t.Fatalf("what-if: %d decisions, groups %v; brute force: %d decisions, groups %v", got.Decisions, gotGroups, decisions, want)
	}
	if got.ByChange[whatif.Narrowed] != 4 || got.ByChange[whatif.AllowToDeny] != 4 {
		t.Fatalf("what-if: %s", got.Summary())
	}

	// Bad proposals are refused, and the role is checked.
	r = g.do(http.MethodPost, "/v1/admin/whatif", g.token("exley-csc", "ig_lead"), mustJSON(map[string]any{"since": "7d", "policies": map[string]string{"../evil.rego": "x"}}))
	if r.Status != 400 || errorOf(t, r)["field"] != "policies.../evil.rego" {
		t.Fatalf("a path in a file name: %d %s", r.Status, r.Raw)
	}
	r = g.do(http.MethodPost, "/v1/admin/whatif", g.token("exley-csc", "ig_lead"), mustJSON(map[string]any{"since": "7d", "policies": map[string]string{"extra.rego": "package x\n\nx := \n"}}))
	if r.Status != 422 || !strings.Contains(string(r.Raw), `"file":"extra.rego"`) {
		t.Fatalf("a proposal that does not compile: %d %s", r.Status, r.Raw)
	}
	r = g.do(http.MethodPost, "/v1/admin/whatif", g.token("exley-csc", "ig_lead"), mustJSON(map[string]any{"since": "7 days"}))
	if r.Status != 400 || errorOf(t, r)["field"] != "since" {
		t.Fatalf("a bad period: %d %s", r.Status, r.Raw)
	}
	if r := g.do(http.MethodPost, "/v1/admin/whatif", g.token("exley-csc", "social_worker"), body); r.Status != 403 {
		t.Fatalf("a social worker's what-if: %d", r.Status)
	}
}
