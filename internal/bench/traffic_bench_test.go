//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/procfs"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/childrens-trust/trustgate/policies"
)

// The load generator of this benchmark is its own, independent of the
// tests' (internal/decision/decisiontest): it speaks HTTP to the gateway
// as agency systems do, records real consent records through
// POST /v1/consents first, and sends OPA's server the very inputs the
// gateway's policy sees.

// spec is one request: who asks (a token of partner with role), the body,
// and OPA's input for it.
type spec struct {
	partner, role string
	body          []byte
	opa           []byte
}

// child is a synthetic child and the consent records the gateway holds
// for them (as the policy sees them).
type child struct {
	nhs      string
	consents []policy.Consent
}

// roleOf is a realistic role for a partner's practitioners, by type.
var rolesByType = map[registry.PartnerType][]string{
	"local_authority": {"social_worker", "team_manager", "early_help_worker", "education_welfare_officer"},
	"health":          {"health_visitor", "school_nurse", "paediatrician", "camhs_clinician", "sexual_health_nurse"},
	"gp":              {"gp"}, "police": {"police_officer"}, "probation": {"probation_officer"},
	"youth_offending": {"yot_officer"}, "school": {"teacher", "designated_safeguarding_lead"},
	"further_education": {"teacher"}, "connexions": {"connexions_adviser"}, "learning_skills": {"connexions_adviser"},
	"district_council": {"housing_officer"}, "jobcentre_plus": {"work_coach"}, "voluntary": {"support_worker"},
}

// consentForms are the Trust's standard consent forms.
var consentForms = []struct{ purposes, categories []string }{
	{[]string{"early_help"}, []string{"identity", "school_attendance", "sen", "immunisations", "health_summary", "household", "early_help_assessment", "involvement"}},
	{[]string{"early_help", "safeguarding"}, []string{"identity", "health_summary", "immunisations"}},
	{[]string{"health_assessment"}, []string{"health_summary", "immunisations", "gp_registration"}},
	{[]string{"youth_justice", "education_welfare"}, []string{"school_attendance", "exclusions", "sen", "involvement"}},
}

// seedConsents records 1–3 consent records (given or refused, by a parent
// or the competent child, some withdrawn) for each of n children through
// the gateway's API, as an early help worker of exley-csc would.
func seedConsents(t *testing.T, g *gatewayProcess, subjects []string, rng *rand.Rand) []child {
	key, _, err := protocol.ReadPrivateKey(filepath.Join(g.dir, "keys", "exley-csc.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]child, len(subjects))
	type job struct {
		i    int
		body []byte
		c    policy.Consent
		wd   bool
	}
	var jobs []job
	now := time.Now().UTC()
	for i, s := range subjects {
		out[i].nhs = s
		for range 1 + rng.IntN(3) {
			f := consentForms[rng.IntN(len(consentForms))]
			c := policy.Consent{Outcome: "given", GivenBy: "parent", Purposes: f.purposes, Categories: f.categories,
				Recipients:  policy.Recipients{Partners: []string{}, Types: []string{"local_authority", "school", "health"}, Protocols: []string{}},
				ValidFromNS: now.Add(-time.Duration(1+rng.IntN(200)) * time.Hour).Truncate(time.Second).UnixNano()}
			if rng.IntN(6) == 0 {
				c.Outcome = "refused"
			}
			req := map[string]any{"subject": s, "outcome": c.Outcome, "given_by": "parent", "purposes": c.Purposes, "categories": c.Categories,
				"recipients": map[string]any{"types": c.Recipients.Types}, "valid_from": time.Unix(0, c.ValidFromNS).UTC().Format(time.RFC3339),
				"obtained": "written", "evidence_ref": fmt.Sprintf("BENCH-%d", i)}
			if rng.IntN(4) == 0 {
				c.GivenBy, c.Competent = "self", true
				req["given_by"] = "self"
				req["competence"] = map[string]any{"assessed_competent": true, "assessed_by": "school nurse SN-12 (Fraser guidance)"}
			}
			if c.Outcome == "refused" {
				// A refusal stands from when it is recorded (the gateway
				// sets the time; a refusal's status does not depend on it).
				delete(req, "valid_from")
				c.ValidFromNS = now.UnixNano()
			} else if rng.IntN(3) == 0 {
				c.ValidUntilNS = now.Add(time.Duration(24+rng.IntN(24*300)) * time.Hour).Truncate(time.Second).UnixNano()
				req["valid_until"] = time.Unix(0, c.ValidUntilNS).UTC().Format(time.RFC3339)
			}
			body, _ := json.Marshal(req)
			jobs = append(jobs, job{i: i, body: body, c: c, wd: rng.IntN(8) == 0})
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := atomic.Int64{}
	hc := &http.Client{Timeout: 30 * time.Second}
	post := func(path string, body []byte) map[string]any {
		tok, err := identity.Mint(key, identity.MintClaims{Issuer: "exley-csc", Subject: "bench-ew", Role: "early_help_worker", IssuedAt: time.Now(), Lifetime: 5 * time.Minute})
		if err != nil {
			t.Error(err)
			return nil
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+g.addr+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode/100 != 2 {
			t.Errorf("POST %s: %d %v", path, resp.StatusCode, m)
			return nil
		}
		return m
	}
	for range 8 {
		wg.Go(func() {
			for {
				n := int(next.Add(1)) - 1
				if n >= len(jobs) || t.Failed() {
					return
				}
				j := jobs[n]
				m := post("/v1/consents", j.body)
				if m == nil {
					return
				}
				j.c.ID, _ = m["consent_id"].(string)
				if j.wd {
					// Withdrawn now (the policy reads only that it was).
					wb, _ := json.Marshal(map[string]any{"withdrawn_by": j.c.GivenBy, "obtained": "verbal"})
					if post("/v1/consents/"+j.c.ID+"/withdraw", wb) == nil {
						return
					}
					j.c.WithdrawnNS = time.Now().UnixNano()
				}
				mu.Lock()
				out[j.i].consents = append(out[j.i].consents, j.c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// trafficGen makes requests for the demo Trust.
type trafficGen struct {
	rng      *rand.Rand
	reg      *registry.Registry
	partners []*registry.Partner
	roles    map[string][]string // by partner: the roles it asks with
	cats     []string
	purposes []string
}

func newTrafficGen(reg *registry.Registry, seed uint64) *trafficGen {
	g := &trafficGen{rng: rand.New(rand.NewPCG(seed, seed*7+1)), reg: reg}
	g.roles = map[string][]string{}
	for _, p := range reg.Partners() {
		// The roles of its kind that the registry lets it assert (held_by).
		for _, r := range rolesByType[p.Type] {
			if reg.MayHold(p.ID, r) {
				g.roles[p.ID] = append(g.roles[p.ID], r)
			}
		}
		if len(g.roles[p.ID]) > 0 {
			g.partners = append(g.partners, p)
		}
	}
	for _, c := range reg.Categories() {
		g.cats = append(g.cats, c.ID)
	}
	for _, p := range reg.Purposes() {
		g.purposes = append(g.purposes, p.ID)
	}
	return g
}

// make builds the spec of one request by requester rq (role) to provider
// pv about c, at the time the gateway will decide it (OPA's input time is
// taken when it is sent; only the time's place among the protocols'
// dates matters, and that does not change during a run).
func (g *trafficGen) make(rq *registry.Partner, role string, pv *registry.Partner, purpose string, cats []string, c child) spec {
	body, _ := json.Marshal(map[string]any{"subject": c.nhs, "provider": pv.ID, "purpose": purpose, "categories": cats})
	cs := c.consents
	if cs == nil {
		cs = []policy.Consent{}
	}
	in := policy.Input{TimeNS: time.Now().UnixNano(),
		Requester: policy.Requester{Partner: rq.ID, Type: string(rq.Type), Practitioner: "bench-" + role, Role: role},
		Provider:  policy.Provider{Partner: pv.ID, Type: string(pv.Type), Sensitive: pv.Sensitive},
		Purpose:   purpose, Categories: cats, Consents: cs}
	opa, _ := json.Marshal(map[string]any{"input": in})
	return spec{partner: rq.ID, role: role, body: body, opa: opa}
}

func (g *trafficGen) someCats(n int) []string {
	c := slices.Clone(g.cats)
	g.rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
	c = c[:n]
	slices.Sort(c)
	return c
}

// distinct returns n requests all different in everything any memo of the
// gateway keys on (requester, role, provider, purpose, categories and the
// child's consent records; the time's place is the same for all): half
// about children with consent records (each such child asked about in
// different ways), half about children with none; every partner asks
// every other, so that most are denied and many allowed.
func (g *trafficGen) distinct(n int, withConsents []child, fresh []string) []spec {
	seen := map[string]bool{}
	out := make([]spec, 0, n)
	for len(out) < n {
		rq := g.partners[g.rng.IntN(len(g.partners))]
		pv := g.partners[g.rng.IntN(len(g.partners))]
		if pv.ID == rq.ID {
			continue
		}
		role := g.roles[rq.ID][g.rng.IntN(len(g.roles[rq.ID]))]
		purpose := g.purposes[g.rng.IntN(len(g.purposes))]
		cats := g.someCats(1 + g.rng.IntN(3))
		var c child
		key := ""
		if len(out)%2 == 0 {
			c = withConsents[g.rng.IntN(len(withConsents))]
			key = c.nhs
		} else {
			c = child{nhs: fresh[len(out)/2%len(fresh)]}
		}
		k := strings.Join(append([]string{rq.ID, role, pv.ID, purpose, key}, cats...), "|")
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, g.make(rq, role, pv, purpose, cats, c))
	}
	return out
}

// month returns n requests as a month of the Trust's traffic might hold
// them (docs/performance.md): the kinds of request partners really make
// (social care asking police and health, early help asking health, schools
// and housing, schools asking social care, youth justice, education
// welfare; a few that the protocols do not allow), about children drawn
// with a skew (a child on a plan is asked about again and again), where
// early help requests are mostly about children with consent histories.
func (g *trafficGen) month(n int, withConsents []child, fresh []string) []spec {
	type kind struct {
		rq, role, pv, purpose string
		cats                  [][]string
		consent               bool // early help: about children with consent histories (9 in 10)
		weight                int
	}
	kinds := []kind{
		{"exley-csc", "social_worker", "exley-police", "safeguarding", [][]string{{"police_concerns", "household"}, {"police_concerns"}}, false, 20},
		{"exley-csc", "team_manager", "exley-police", "child_protection", [][]string{{"police_concerns"}, {"household"}}, false, 6},
		{"exley-csc", "social_worker", "riverside-gp", "safeguarding", [][]string{{"health_summary"}, {"identity", "health_summary", "immunisations"}}, false, 10},
		{"exley-csc", "early_help_worker", "exley-community-health", "early_help", [][]string{{"immunisations"}, {"identity", "health_summary"}}, true, 14},
		{"exley-csc", "early_help_worker", "st-annes-primary", "early_help", [][]string{{"school_attendance", "sen"}, {"identity"}}, true, 10},
		{"exley-csc", "early_help_worker", "exley-district", "early_help", [][]string{{"household"}}, true, 5},
		{"st-annes-primary", "designated_safeguarding_lead", "exley-csc", "safeguarding", [][]string{{"cp_status", "involvement"}, {"cp_status"}}, false, 8},
		{"exley-yos", "yot_officer", "exley-police", "youth_justice", [][]string{{"offending"}, {"identity", "offending", "police_concerns"}}, false, 6},
		{"exley-education", "education_welfare_officer", "st-annes-primary", "education_welfare", [][]string{{"school_attendance"}}, false, 5},
		{"exley-academy", "teacher", "riverside-gp", "safeguarding", [][]string{{"health_summary"}}, false, 3},
		{"safe-families", "support_worker", "exley-academy", "early_help", [][]string{{"school_attendance"}}, true, 3},
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	// The month's children: every seeded child and as many again without
	// records, asked about with a skew.
	pool := len(withConsents) + len(fresh)
	out := make([]spec, 0, n)
	for len(out) < n {
		w := g.rng.IntN(total)
		var k kind
		for _, k = range kinds {
			if w < k.weight {
				break
			}
			w -= k.weight
		}
		rq, _ := g.reg.Partner(k.rq)
		pv, _ := g.reg.Partner(k.pv)
		var c child
		if k.consent && g.rng.IntN(10) != 0 {
			c = withConsents[int(float64(len(withConsents))*g.rng.Float64()*g.rng.Float64())]
		} else if i := int(float64(pool) * g.rng.Float64() * g.rng.Float64()); i < len(withConsents) {
			c = withConsents[i]
		} else {
			c = child{nhs: fresh[i-len(withConsents)]}
		}
		out = append(out, g.make(rq, k.role, pv, k.purpose, k.cats[g.rng.IntN(len(k.cats))], c))
	}
	return out
}

// specRequests are request factories over specs, one each for the gateway
// (with a pre-minted token per spec) and for OPA's server, each taking the
// next spec in order.
func specRequests(t *testing.T, g *gatewayProcess, specs []spec, opaURL string) (gw, opa Request, gwUsed, opaUsed *atomic.Int64) {
	keys := map[string]jwk.Key{}
	tokens := make([]string, len(specs))
	for i, s := range specs {
		k, ok := keys[s.partner]
		if !ok {
			key, _, err := protocol.ReadPrivateKey(filepath.Join(g.dir, "keys", s.partner+".jwk"))
			if err != nil {
				t.Fatal(err)
			}
			keys[s.partner], k = key, key
		}
		tok, err := identity.Mint(k, identity.MintClaims{Issuer: s.partner, Subject: "bench-" + s.role, Role: s.role, IssuedAt: time.Now(), Lifetime: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		tokens[i] = tok
	}
	gwUsed, opaUsed = new(atomic.Int64), new(atomic.Int64)
	url := "http://" + g.addr + "/v1/decisions"
	gw = func(int64) (*http.Request, error) {
		i := int(gwUsed.Add(1)) - 1
		if i >= len(specs) {
			return nil, fmt.Errorf("out of requests: raise BENCH_REQUESTS")
		}
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(specs[i].body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tokens[i])
		return req, nil
	}
	opa = func(int64) (*http.Request, error) {
		i := int(opaUsed.Add(1)) - 1
		if i >= len(specs) {
			return nil, fmt.Errorf("out of requests: raise BENCH_REQUESTS")
		}
		req, err := http.NewRequest(http.MethodPost, opaURL, bytes.NewReader(specs[i].opa))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		return req, nil
	}
	return gw, opa, gwUsed, opaUsed
}

// startOPA starts `opa run --server` with the same policy and the data of
// the gateway's revision.
func startOPA(t *testing.T, dir string) (*exec.Cmd, string) {
	work := t.TempDir()
	src, err := policy.LoadFS(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for name, body := range src.Modules {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	raw, _ := json.Marshal(map[string]any{"trustgate": revisionData(t, dir)})
	dataPath := filepath.Join(work, "data.json")
	if err := os.WriteFile(dataPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(opaBinary(t), append([]string{"run", "--server", "--addr", addr, "--log-level", "error", "--skip-version-check", "--optimize-store-for-read-speed", dataPath}, args...)...)
	logf, err := os.Create(filepath.Join(work, "opa.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitHealthy(t, "http://"+addr+"/health", 3*time.Minute)
	return cmd, "http://" + addr + "/v1/data/trustgate/sharing/decision"
}

// waitPrefill waits (at most two minutes) for the gateway's log to say
// that it has computed the Trust-level parts of its revision ahead, and
// prints that line.
func waitPrefill(t *testing.T, logPath string) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logPath)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "Trust-level parts") {
				fmt.Println("gateway:", l)
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Log("the gateway did not report its Trust-level parts computed ahead within two minutes; measuring anyway")
}

// loadavg is /proc/loadavg (the 1, 5 and 15 minute load averages, ...).
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return string(b)
}

// procStatusMiB are the memory figures of /proc/PID/status, by name
// (VmRSS, VmHWM, RssAnon, RssFile, ...), in MiB.
func procStatusMiB(t *testing.T, pid int) map[string]float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			out[strings.TrimSuffix(f[0], ":")] = kb / 1024
		}
	}
	return out
}

// rssMiB is a process's resident set now and at its peak (VmRSS, VmHWM).
func rssMiB(t *testing.T, pid int) (now, peak float64) {
	m := procStatusMiB(t, pid)
	return m["VmRSS"], m["VmHWM"]
}

// rssParts is a process's resident set by kind: anonymous memory (the
// heap, stacks) and pages of mapped files (the bbolt files), those by
// file (/proc/PID/smaps: the executable and each database).
func rssParts(t *testing.T, pid int) string {
	m := procStatusMiB(t, pid)
	return fmt.Sprintf("%.0f MiB anonymous, %.0f MiB of mapped files: %s", m["RssAnon"], m["RssFile"], mappedFiles(pid))
}

// mappedFiles is the resident set of each file pid maps (the executable,
// the bbolt files), largest first, from /proc/PID/smaps.
func mappedFiles(pid int) string {
	rss, err := procfs.MappedFiles(pid)
	if err != nil {
		return "?"
	}
	kb := map[string]float64{}
	for path, n := range rss {
		kb[filepath.Base(path)] += float64(n) / 1024
	}
	names := make([]string, 0, len(kb))
	for n := range kb {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return int(kb[b] - kb[a]) })
	var out []string
	for _, n := range names {
		if kb[n] >= 512 {
			out = append(out, fmt.Sprintf("%s %.0f", n, kb[n]/1024))
		}
	}
	return strings.Join(out, ", ") + " MiB"
}

// TestBenchTrafficVsOPA measures the gateway (`trustgate serve`, default
// configuration) against `opa run --server` with the same policy, data
// and inputs, in alternating rounds in the same run, on three loads: (1)
// distinct requests — every one unlike any before in what the gateway's
// memos key on, half about children with consent records; (2) a month
// of the Trust's traffic; (3) open loop at 500 and 1,000 requests a
// second (distinct requests). It reports throughput, each server's CPU
// per request, the tails, and the gateway's resident memory.
func TestBenchTrafficVsOPA(t *testing.T) {
	d := envDuration("BENCH_DURATION", 10*time.Second)
	rounds := envInt("BENCH_ROUNDS", 4)
	clients := envInt("BENCH_CLIENTS", 32)
	nreq := envInt("BENCH_REQUESTS", 60_000)
	openFor := envDuration("BENCH_OPEN_DURATION", 6*time.Second)
	fmt.Printf("load average at start: %s", loadavg())
	defer func() { fmt.Printf("load average at end: %s", loadavg()) }()
	g := startGatewayProcess(t, "")
	opaCmd, opaURL := startOPA(t, g.dir)
	gwLog := filepath.Join(filepath.Dir(g.dir), "gateway.log")

	reg := revisionRegistry(t, g.dir)
	subjects := syntheticSubjects(envInt("BENCH_CONSENT_CHILDREN", 600) + nreq)
	nc := envInt("BENCH_CONSENT_CHILDREN", 600)
	seeded := seedConsents(t, g, subjects[:nc], rand.New(rand.NewPCG(1, 2)))
	fresh := subjects[nc:]
	gen := newTrafficGen(reg, 42)

	perReq := func(cpu time.Duration, n int64) float64 { return float64(cpu.Microseconds()) / float64(n) }
	closed := func(name string, specs []spec) {
		gwReq, opaReq, gwUsed, opaUsed := specRequests(t, g, specs, opaURL)
		settleDisk()
		var gwRuns, opaRuns []Result
		var gwCPU, opaCPU time.Duration
		stopProfile := perfRecord(t, g.cmd.Process.Pid, name)
		stopPprof := pprofRecord(t, g, name, 2*d)
		for r := range rounds {
			warm := time.Duration(0)
			if r == 0 {
				warm = time.Second
			}
			gwRuns = append(gwRuns, Drive(context.Background(), "trustgate /v1/decisions", clients, d/time.Duration(rounds), warm, http.StatusOK, gwReq, cpuOf(t, g.cmd.Process.Pid, &gwCPU)))
			opaRuns = append(opaRuns, Drive(context.Background(), "opa run --server data API", clients, d/time.Duration(rounds), warm, http.StatusOK, opaReq, cpuOf(t, opaCmd.Process.Pid, &opaCPU)))
		}
		stopProfile()
		stopPprof()
		gw, op := Combine(gwRuns...), Combine(opaRuns...)
		if gw.Errors+op.Errors != 0 {
			t.Fatalf("%s: errors (trustgate %d: %s; OPA %d: %s)", name, gw.Errors, gw.FirstError, op.Errors, op.FirstError)
		}
		var byRound []string
		for i := range gwRuns {
			byRound = append(byRound, fmt.Sprintf("%.2f", gwRuns[i].PerSecond()/opaRuns[i].PerSecond()))
		}
		rss, peak := rssMiB(t, g.cmd.Process.Pid)
		fmt.Printf("\n== %s: %d requests prepared (%d sent to trustgate, %d to OPA), %d clients, %s each in %d alternating rounds ==\n",
			name, len(specs), gwUsed.Load(), opaUsed.Load(), clients, d, rounds)
		fmt.Printf("%s  server CPU %4.0f µs/request\n", gw, perReq(gwCPU, gw.Requests))
		fmt.Printf("%s  server CPU %4.0f µs/request\n", op, perReq(opaCPU, op.Requests))
		fmt.Printf("ratio trustgate/OPA = %.2fx (rounds: %s); CPU per request %.2fx; trustgate resident memory %.0f MiB (peak %.0f MiB; %s)\n",
			gw.PerSecond()/op.PerSecond(), strings.Join(byRound, " "), perReq(gwCPU, gw.Requests)/perReq(opaCPU, op.Requests), rss, peak, rssParts(t, g.cmd.Process.Pid))
		fmt.Printf("trustgate: %s\n", goMemory(gwLog))
	}
	// BENCH_ONLY (a comma-separated list of distinct, month, open) runs
	// only those loads; all three by default.
	only := func(load string) bool {
		v := os.Getenv("BENCH_ONLY")
		return v == "" || slices.Contains(strings.Split(v, ","), load)
	}
	distinct := gen.distinct(nreq, seeded, fresh)
	// A revision is active long before most of its traffic: wait until the
	// gateway has computed its Trust-level parts ahead
	// (policy.trust_prefill), and say how long that took.
	waitPrefill(t, gwLog)
	if only("distinct") {
		closed("distinct requests", distinct)
	}
	if only("month") {
		closed("a month of Trust traffic", gen.month(nreq, seeded, fresh))
	}
	for _, rate := range []int{500, 1000} {
		if !only("open") {
			break
		}
		specs := gen.distinct(2*rate*int(openFor.Seconds())+rate, seeded, fresh)
		gwReq, opaReq, _, _ := specRequests(t, g, specs, opaURL)
		settleDisk()
		// Alternating halves, each server warmed by the other's first.
		stopTrace := traceRecord(t, g, fmt.Sprintf("open-%d", rate), openFor/2)
		gwRes := DriveOpen(context.Background(), "trustgate /v1/decisions", rate, openFor, http.StatusOK, gwReq)
		stopTrace()
		opRes := DriveOpen(context.Background(), "opa run --server data API", rate, openFor, http.StatusOK, opaReq)
		// Errors are reported, not fatal: a server that cannot keep up with
		// the rate fails requests (the gateway answers 503 when the audit
		// append cannot be made in time), and that is a result.
		if gwRes.Errors+opRes.Errors != 0 {
			fmt.Printf("open loop %d/s: errors: trustgate %d (first: %.200s); OPA %d (first: %.200s)\n", rate, gwRes.Errors, gwRes.FirstError, opRes.Errors, opRes.FirstError)
		}
		rss, peak := rssMiB(t, g.cmd.Process.Pid)
		fmt.Printf("\n== open loop, distinct requests ==\n%s\n%s\np99 trustgate/OPA = %.2fx; trustgate resident memory %.0f MiB (peak %.0f MiB; %s)\n",
			gwRes, opRes, float64(gwRes.P99)/float64(opRes.P99), rss, peak, rssParts(t, g.cmd.Process.Pid))
		fmt.Printf("trustgate: %s\n", goMemory(gwLog))
	}
}

// perfRecord, when BENCH_PROFILE_DIR names a directory, samples the
// gateway process pid with Linux perf (call graphs) until the returned
// function is called, into DIR/<load>.perf (read it with `perf report
// -i FILE --no-children`); without it, or without perf, it does nothing.
func perfRecord(t *testing.T, pid int, load string) func() {
	dir := os.Getenv("BENCH_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	out := filepath.Join(dir, strings.ReplaceAll(load, " ", "-")+".perf")
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", out)
	if err := cmd.Start(); err != nil {
		t.Logf("perf: %v (no profile)", err)
		return func() {}
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		fmt.Printf("profile of the gateway under %s: %s\n", load, out)
	}
}

// pprofRecord, when BENCH_PPROF_DIR names a directory (the gateway then
// runs a binary built with -tags pprof), takes the gateway's Go CPU
// profile for about d and its allocations during the load (the allocs
// profile at the end, with the one at the start as its base: `go tool
// pprof -base DIR/<load>.allocs.0 DIR/<load>.allocs.1`).
func pprofRecord(t *testing.T, g *gatewayProcess, load string, d time.Duration) func() {
	dir := os.Getenv("BENCH_PPROF_DIR")
	if dir == "" || g.pprof == "" {
		return func() {}
	}
	base := filepath.Join(dir, strings.ReplaceAll(load, " ", "-"))
	pprofGet(t, g, "/debug/pprof/allocs", base+".allocs.0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		pprofGet(t, g, fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(d.Seconds()))), base+".cpu")
	}()
	return func() {
		pprofGet(t, g, "/debug/pprof/allocs", base+".allocs.1")
		<-done
		fmt.Printf("Go profiles of the gateway under %s: %s.{cpu,allocs.0,allocs.1}\n", load, base)
	}
}

// lastMetrics is the gateway's metrics at the last goMemory.
var lastMetrics map[string]float64

// traceRecord, with BENCH_PPROF_DIR, takes a Go execution trace of the
// gateway for d (from a second into the load) into DIR/<load>.trace
// (`go tool trace -pprof=sched FILE` says where goroutines waited to run)
// and its allocations during the load, as pprofRecord does.
func traceRecord(t *testing.T, g *gatewayProcess, load string, d time.Duration) func() {
	dir := os.Getenv("BENCH_PPROF_DIR")
	if dir == "" || g.pprof == "" {
		return func() {}
	}
	base := filepath.Join(dir, load)
	pprofGet(t, g, "/debug/pprof/allocs", base+".allocs.0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Second)
		pprofGet(t, g, fmt.Sprintf("/debug/pprof/trace?seconds=%d", max(1, int(d.Seconds()))), base+".trace")
	}()
	return func() {
		<-done
		pprofGet(t, g, "/debug/pprof/allocs", base+".allocs.1")
		fmt.Printf("execution trace and allocations of the gateway under %s: %s.{trace,allocs.0,allocs.1}\n", load, base)
	}
}

// pprofGet writes the gateway's profile at path (its pprof address) into out.
func pprofGet(t *testing.T, g *gatewayProcess, path, out string) {
	resp, err := http.Get("http://" + g.pprof + path)
	if err != nil {
		t.Logf("pprof %s: %v", path, err)
		return
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err == nil {
		_ = os.WriteFile(out, b.Bytes(), 0o644)
	}
}

// goMemory is what the gateway's Go runtime says of its memory and
// collector (its Prometheus endpoint, whose address its log names): the
// heap in use and where the rest of its memory is, the heap size at which
// the next collection starts and how many collections have run; "" when
// it cannot be read. It also prints, since its last call, each request
// stage's mean time and how many took over 5 ms, and what the gateway
// allocated a request.
func goMemory(logPath string) string {
	b, _ := os.ReadFile(logPath)
	addr := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "metrics listening") {
			if _, a, ok := strings.Cut(l, "addr="); ok {
				addr = strings.Trim(strings.Fields(a)[0], `"`)
			}
		}
	}
	if addr == "" {
		return ""
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	v := map[string]float64{}
	for _, l := range strings.Split(body.String(), "\n") {
		if f := strings.Fields(l); len(f) == 2 && !strings.HasPrefix(l, "#") {
			x, _ := strconv.ParseFloat(f[1], 64)
			v[f[0]] = x
		}
	}
	// The mean time of each stage of a request since the last call.
	var stages []string
	for _, st := range []string{"token", "key_store", "policy", "audit_append"} {
		sum, n := `trustgate_stage_duration_seconds_sum{stage="`+st+`"}`, `trustgate_stage_duration_seconds_count{stage="`+st+`"}`
		if dn := v[n] - lastMetrics[n]; dn > 0 {
			// and how many took longer than 5 ms (the histogram's bucket)
			le := `trustgate_stage_duration_seconds_bucket{stage="` + st + `",le="0.005"}`
			slow := dn - (v[le] - lastMetrics[le])
			stages = append(stages, fmt.Sprintf("%s %.0f µs (%.0f over 5 ms)", st, (v[sum]-lastMetrics[sum])/dn*1e6, slow))
		}
	}
	// and of whole decision requests
	le, n := `trustgate_request_duration_seconds_bucket{route="/v1/decisions",le="0.005"}`, `trustgate_request_duration_seconds_count{route="/v1/decisions"}`
	if dn := v[n] - lastMetrics[n]; dn > 0 {
		stages = append(stages, fmt.Sprintf("whole request: %.0f of %.0f over 5 ms", dn-(v[le]-lastMetrics[le]), dn))
		// and what the gateway allocated in the meantime, per request
		const alloc = "go_memstats_alloc_bytes_total"
		stages = append(stages, fmt.Sprintf("%.0f KB allocated a request", (v[alloc]-lastMetrics[alloc])/dn/1e3))
	}
	lastMetrics = v
	defer func() {
		fmt.Printf("trustgate: mean stage times since the last report: %s\n", strings.Join(stages, ", "))
	}()
	mib := func(name string) float64 { return v["go_memstats_"+name+"_bytes"] / (1 << 20) }
	return fmt.Sprintf("Go heap in use %.0f MiB (allocated %.0f, idle %.0f, released %.0f; stacks %.0f, GC metadata %.0f, other %.0f), next collection at %.0f MiB, %.0f collections so far, scannable heap %.1f MiB (the live heap and what was allocated since the last collection); %.0f audit commits so far, %.1f entries each",
		mib("heap_inuse"), mib("heap_alloc"), mib("heap_idle"), mib("heap_released"), mib("stack_sys"), mib("gc_sys"), mib("other_sys")+mib("mspan_sys")+mib("mcache_sys")+mib("buck_hash_sys"),
		mib("next_gc"), v["go_gc_duration_seconds_count"], v["go_gc_scan_heap_bytes"]/(1<<20),
		v["trustgate_audit_commit_batch_entries_count"], v["trustgate_audit_commit_batch_entries_sum"]/max(1, v["trustgate_audit_commit_batch_entries_count"]))
}

// revisionRegistry is the registry of the demo Trust in dir.
func revisionRegistry(t *testing.T, dir string) *registry.Registry {
	reg, err := registry.Load(context.Background(), filepath.Join(dir, "protocols", "trust.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// settleDisk writes every dirty page of the machine to disk before a load
// is measured. The benchmark has just built the gateway and the test
// binary (about 90 MB of files), which the kernel would otherwise write
// back 30 seconds later (vm.dirty_expire_centisecs), in the middle of a
// later load: the audit log's fsyncs then wait behind that writeback for
// 50 to 150 ms (seen in the first open loop after a short closed one).
// The measurements are of the gateway, not of the harness's own files.
func settleDisk() { syscall.Sync() }
