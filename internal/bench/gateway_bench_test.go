//go:build bench

package bench

import (
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
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/policies"
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
func TestBenchDecisionsVsOPA(t *testing.T) {
	d := envDuration("BENCH_DURATION", 10*time.Second)
	warm := 2 * time.Second
	clients := envInt("BENCH_CLIENTS", 32)
	a, dir := startDemoGateway(t, nil)
	tokens := mintTokens(t, dir, "exley-csc", "social_worker", envInt("BENCH_TOKENS", 120000))
	url := "http://" + a.Addr() + "/v1/decisions"
	ours := Drive(context.Background(), "trustgate /v1/decisions", clients, d, warm, http.StatusOK,
		JSONPost(url, shareBody, func(i int64) http.Header {
			return http.Header{"Authorization": {"Bearer " + tokens[int(i-1)%len(tokens)]}}
		}))
	if int(ours.Requests+ours.Errors) > len(tokens) {
		t.Fatalf("ran out of pre-minted tokens (%d); raise BENCH_TOKENS", len(tokens))
	}
	if ours.Errors != 0 {
		t.Fatalf("%d errors in the trustgate run", ours.Errors)
	}

	// The peer: OPA's server with the same policy and data.
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
	data := a.Revisions().Current().Policy.Data()
	raw, _ := json.Marshal(map[string]any{"trustgate": data})
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
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitHealthy(t, "http://"+addr+"/health", 3*time.Minute)

	in := policy.Input{
		TimeNS:     time.Now().UnixNano(),
		Requester:  policy.Requester{Partner: "exley-csc", Type: "local_authority", Practitioner: "bench-social_worker", Role: "social_worker"},
		Provider:   policy.Provider{Partner: "exley-police", Type: "police"},
		Purpose:    "safeguarding",
		Categories: []string{"police_concerns", "household"},
		Consents:   []policy.Consent{},
	}
	opaBody, _ := json.Marshal(map[string]any{"input": in.Map()})
	opaURL := "http://" + addr + "/v1/data/trustgate/sharing/decision"
	checkOPAAllows(t, opaURL, opaBody)
	peer := Drive(context.Background(), "opa run --server data API", clients, d, warm, http.StatusOK, JSONPost(opaURL, opaBody, nil))
	if peer.Errors != 0 {
		t.Fatalf("%d errors in the OPA run", peer.Errors)
	}
	fmt.Printf("\n== decisions: %d clients, %s each, same machine, same run ==\n%s\n%s\nratio trustgate/OPA = %.2fx\n\n",
		clients, d, ours, peer, ours.PerSecond()/peer.PerSecond())
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
