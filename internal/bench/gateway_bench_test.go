//go:build bench

package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// startDemoGateway starts a real gateway on the demo Trust.
func startDemoGateway(t *testing.T, mutate func(*config.Config)) (*app.App, string) {
	t.Helper()
	dir := t.TempDir()
	if err := demo.Init(dir, demo.Options{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "trustgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Log.Level = "error"
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		a.Close()
	})
	return a, dir
}

// mintTokens pre-mints n single-use tokens so that signing them does not
// compete with the server during the measured run.
func mintTokens(t *testing.T, dir, partner, role string, n int) []string {
	key, _, err := protocol.ReadPrivateKey(filepath.Join(dir, "keys", partner+".jwk"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, n)
	now := time.Now()
	for i := range out {
		out[i], err = identity.Mint(key, identity.MintClaims{Issuer: partner, Subject: "bench-" + role, Role: role, IssuedAt: now, Lifetime: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

var shareBody = []byte(`{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["police_concerns","household"]}`)

// TestBenchDecisionsVsOPA measures the whole decision path (JWT verify,
// validation, pseudonym, policy, durable audit append) against OPA's own
// server answering the same policy, data and input through its data API.
// Both servers are processes of their own — the trustgate binary as
// `trustgate serve` runs it, OPA as `opa run --server` — driven by the
// same load generator in this process, one after the other; for each the
// run reports the server process's CPU time per request as well.
func TestBenchDecisionsVsOPA(t *testing.T) {
	d := envDuration("BENCH_DURATION", 10*time.Second)
	rounds := envInt("BENCH_ROUNDS", 5)
	warm := 2 * time.Second
	clients := envInt("BENCH_CLIENTS", 32)
	// Two gateways: as configured by default (the decision memo on: this
	// benchmark repeats one request, so every decision after the first is
	// answered from it) and with policy.decision_memo: 0 (every decision
	// evaluated, as for requests that are each unlike any before).
	type gw struct {
		name string
		p    *gatewayProcess
		req  Request
		used *atomic.Int64
		n    int
		runs []Result
		cpu  time.Duration
	}
	ntok := envInt("BENCH_TOKENS", 120000)
	gws := []*gw{
		{name: "trustgate /v1/decisions", p: startGatewayProcess(t, "")},
		{name: "trustgate, memo off", p: startGatewayProcess(t, "policy:\n  decision_memo: 0\n")},
	}
	for _, w := range gws {
		tokens := mintTokens(t, w.p.dir, "exley-csc", "social_worker", ntok)
		used := new(atomic.Int64) // each token is single-use: one counter across all rounds
		w.used, w.n = used, len(tokens)
		w.req = JSONPost("http://"+w.p.addr+"/v1/decisions", shareBody, func(int64) http.Header {
			i := int(used.Add(1)) - 1
			if i >= len(tokens) {
				return http.Header{} // answered 401: counted as an error below
			}
			return http.Header{"Authorization": {"Bearer " + tokens[i]}}
		})
	}
	g := gws[0].p

	// The peer: OPA's server with the same policy and data.
	cmd, opaURL := startOPA(t, g.dir)

	in := policy.Input{
		TimeNS:     time.Now().UnixNano(),
		Requester:  policy.Requester{Partner: "exley-csc", Type: "local_authority", Practitioner: "bench-social_worker", Role: "social_worker"},
		Provider:   policy.Provider{Partner: "exley-police", Type: "police"},
		Purpose:    "safeguarding",
		Categories: []string{"police_concerns", "household"},
		Consents:   []policy.Consent{},
	}
	opaBody, _ := json.Marshal(map[string]any{"input": in.Map()})
	checkOPAAllows(t, opaURL, opaBody)
	opaReq := JSONPost(opaURL, opaBody, nil)

	// Alternating rounds (each gateway, then OPA, and again), each server
	// warmed up once first, so that a drift in the machine's speed during
	// the run weighs on all alike.
	const peerName = "opa run --server data API"
	var peerRuns []Result
	var peerCPU time.Duration
	for r := range rounds {
		w := time.Duration(0)
		if r == 0 {
			w = warm
		}
		for _, g := range gws {
			g.runs = append(g.runs, Drive(context.Background(), g.name, clients, d/time.Duration(rounds), w, http.StatusOK, g.req,
				cpuOf(t, g.p.cmd.Process.Pid, &g.cpu)))
		}
		peerRuns = append(peerRuns, Drive(context.Background(), peerName, clients, d/time.Duration(rounds), w, http.StatusOK, opaReq,
			cpuOf(t, cmd.Process.Pid, &peerCPU)))
	}
	peer := Combine(peerRuns...)
	if peer.Errors != 0 {
		t.Fatalf("%d errors in the OPA run; the first: %s", peer.Errors, peer.FirstError)
	}
	perReq := func(cpu time.Duration, r Result) float64 { return float64(cpu.Microseconds()) / float64(r.Requests) }
	fmt.Printf("\n== decisions: %d clients, %s each in %d alternating rounds, same machine, same run ==\n", clients, d, rounds)
	var ratios []string
	for _, g := range gws {
		res := Combine(g.runs...)
		if int(g.used.Load()) > g.n {
			t.Fatalf("%s: ran out of pre-minted tokens (%d); raise BENCH_TOKENS", g.name, g.n)
		}
		if res.Errors != 0 {
			t.Fatalf("%d errors in the %s run; the first: %s", res.Errors, g.name, res.FirstError)
		}
		var byRound []string
		for i := range g.runs {
			byRound = append(byRound, fmt.Sprintf("%.2f", g.runs[i].PerSecond()/peerRuns[i].PerSecond()))
		}
		fmt.Printf("%s  server CPU %4.0f µs/request\n", res, perReq(g.cpu, res))
		ratios = append(ratios, fmt.Sprintf("ratio %s/OPA = %.2fx (rounds: %s)", g.name, res.PerSecond()/peer.PerSecond(), strings.Join(byRound, " ")))
	}
	fmt.Printf("%s  server CPU %4.0f µs/request\n%s\n\n", peer, perReq(peerCPU, peer), strings.Join(ratios, "\n"))
}

// gatewayProcess is a `trustgate serve` process on the demo Trust.
type gatewayProcess struct {
	dir, addr string
	cmd       *exec.Cmd
	pprof     string // the Go profiles' address (BENCH_PPROF_DIR), or ""
}

// startGatewayProcess builds the trustgate binary, prepares the demo Trust
// in a temporary directory and starts `trustgate serve` on it, as an
// operator would, waiting until /readyz answers 200.
func startGatewayProcess(t *testing.T, extraConfig string) *gatewayProcess {
	t.Helper()
	work := t.TempDir()
	bin := filepath.Join(work, "trustgate")
	args := []string{"build", "-o", bin}
	if os.Getenv("BENCH_PPROF_DIR") != "" {
		args = append(args, "-tags", "pprof")
	}
	build := exec.Command("go", append(args, "github.com/childrens-trust/trustgate/cmd/trustgate")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(work, "demo")
	addr := freeAddr(t)
	if err := demo.Init(dir, demo.Options{Listen: addr}); err != nil {
		t.Fatal(err)
	}
	if extraConfig != "" {
		f, err := os.OpenFile(filepath.Join(dir, "trustgate.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString(extraConfig)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "trustgate.yaml"))
	// BENCH_GATEWAY_ENV (space-separated NAME=VALUE) is added to the
	// gateway's environment only (GOGC=200 TRUSTGATE_…=…), not the load
	// generator's.
	cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("BENCH_GATEWAY_ENV"))...)
	pprofAddr := ""
	if os.Getenv("BENCH_PPROF_DIR") != "" {
		pprofAddr = freeAddr(t)
		cmd.Env = append(cmd.Env, "TRUSTGATE_PPROF_ADDR="+pprofAddr)
	}
	logf, err := os.Create(filepath.Join(work, "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logf.Close()
		// The gateway's log is kept in BENCH_LOG_DIR, or with the profiles
		// in BENCH_PPROF_DIR (run it with BENCH_GATEWAY_ENV=GODEBUG=gctrace=1
		// to see each collection).
		if dir := cmp.Or(os.Getenv("BENCH_LOG_DIR"), os.Getenv("BENCH_PPROF_DIR")); dir != "" {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				_ = os.WriteFile(filepath.Join(dir, "gateway.log"), b, 0o644)
			}
		}
	})
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	waitHealthy(t, "http://"+addr+"/readyz", time.Minute)
	return &gatewayProcess{dir: dir, addr: addr, cmd: cmd, pprof: pprofAddr}
}

// revisionData is the data document the demo Trust's revision gives the
// policy (registry and protocols in force), built in this process from
// the same directory the gateway process serves.
func revisionData(t *testing.T, dir string) policy.Data {
	t.Helper()
	cfg, err := config.Load(filepath.Join(dir, "trustgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
	cfg.Log.Level = "error"
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	return a.Revisions().Current().Policy.Data()
}

// cpuOf returns a measurement hook for Drive that adds the CPU time (user
// and system) process pid spends during the measured run to *total.
func cpuOf(t *testing.T, pid int, total *time.Duration) func() func() {
	return func() func() {
		start := processCPU(t, pid)
		return func() { *total += processCPU(t, pid) - start }
	}
}

// processCPU reads a process's user plus system CPU time from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
func processCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func checkOPAAllows(t *testing.T, url string, body []byte) {
	resp, err := http.Post(url, "application/json", bytesReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Result policy.Decision `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if !out.Result.Allow || out.Result.Protocol == nil || out.Result.Protocol.Rule != "police-to-social-care" {
		t.Fatalf("OPA's decision differs from the gateway's: %+v", out.Result)
	}
}

// opaBinary is OPA's CLI as the module's tool dependency (`go tool opa`),
// resolved to its built binary so that the server is one process we own.
func opaBinary(t *testing.T) string {
	out, err := exec.Command("go", "tool", "-n", "opa").Output()
	if err != nil {
		t.Fatalf("go tool -n opa: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func waitHealthy(t *testing.T, url string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s not healthy after %s", url, limit)
}
