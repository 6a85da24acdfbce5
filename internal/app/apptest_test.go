package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// testNow is the fixed clock of the integration tests: every demo protocol
// but the unsigned one is in force then, and tests never depend on the
// wall clock.
var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// demoTrust is a demo Trust prepared once per test binary: preparing it
// generates 18 key pairs and signs five protocols.
var (
	demoOnce sync.Once
	demoDir  string
	demoErr  error
)

func preparedDemo(t *testing.T) string {
	t.Helper()
	demoOnce.Do(func() {
		demoDir, demoErr = os.MkdirTemp("", "trustgate-demo-")
		if demoErr == nil {
			demoErr = demo.Init(demoDir, demo.Options{Listen: "127.0.0.1:0"})
		}
	})
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	return demoDir
}

// gateway is a real gateway on loopback with its own data directory.
type gateway struct {
	t      *testing.T
	cfg    config.Config
	app    *app.App
	base   string
	cancel context.CancelFunc
	done   chan error
	clock  *clock
	keysMu sync.Mutex // key is called from concurrent requests
	keys   map[string]jwk.Key
	// contract is the OpenAPI document this gateway serves (contract_test.go).
	contractMu sync.Mutex
	contract   *servedContract
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// startGateway starts a gateway on the demo Trust; mutate adjusts config.
func startGateway(t *testing.T, mutate func(*config.Config)) *gateway {
	t.Helper()
	dir := preparedDemo(t)
	cfg, err := config.Load(filepath.Join(dir, "trustgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Log.Level = "error"
	// Computing every Trust-level part ahead takes seconds of CPU per
	// gateway; the tests that need it turn it on (memo_e2e_test.go).
	cfg.Policy.TrustPrefill = false
	if mutate != nil {
		mutate(&cfg)
	}
	g := &gateway{t: t, cfg: cfg, clock: &clock{t: testNow}, keys: map[string]jwk.Key{}}
	g.start()
	t.Cleanup(g.stop)
	return g
}

func (g *gateway) start() {
	g.t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.New(context.Background(), g.cfg, log, app.WithClock(g.clock.Now))
	if err != nil {
		g.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.app, g.cancel, g.done = a, cancel, make(chan error, 1)
	go func() { g.done <- a.Run(ctx) }()
	g.base = "http://" + a.Addr()
}

func (g *gateway) stop() {
	if g.app == nil {
		return
	}
	g.cancel()
	if err := <-g.done; err != nil {
		g.t.Errorf("run: %v", err)
	}
	if err := g.app.Close(); err != nil {
		g.t.Errorf("close: %v", err)
	}
	g.app = nil
}

func (g *gateway) restart() {
	g.stop()
	g.start()
}

// key returns a demo agency's private key.
func (g *gateway) key(partner string) jwk.Key {
	g.t.Helper()
	g.keysMu.Lock()
	defer g.keysMu.Unlock()
	if k, ok := g.keys[partner]; ok {
		return k
	}
	k, _, err := protocol.ReadPrivateKey(filepath.Join(demoDir, "keys", partner+".jwk"))
	if err != nil {
		g.t.Fatal(err)
	}
	g.keys[partner] = k
	return k
}

// token mints a fresh token for partner's practitioner with role.
func (g *gateway) token(partner, role string) string {
	g.t.Helper()
	tok, err := identity.Mint(g.key(partner), identity.MintClaims{
		Issuer: partner, Subject: "prac-" + role, Role: role, IssuedAt: g.clock.Now(), Lifetime: 2 * time.Minute,
	})
	if err != nil {
		g.t.Fatal(err)
	}
	return tok
}

type response struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

func (g *gateway) do(method, path, token string, body []byte) response {
	g.t.Helper()
	return g.doHeader(method, path, token, body, nil)
}

// doHeader is do with headers of its own (set after the defaults).
func (g *gateway) doHeader(method, path, token string, body []byte, h http.Header) response {
	g.t.Helper()
	req, err := http.NewRequest(method, g.base+path, bytes.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	g.checkAnswer(req, resp.StatusCode, resp.Header, raw)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return response{Status: resp.StatusCode, Body: m, Raw: raw}
}

func (g *gateway) decide(partner, role string, body any) response {
	g.t.Helper()
	b, _ := json.Marshal(body)
	return g.do(http.MethodPost, "/v1/decisions", g.token(partner, role), b)
}

func decisionOf(t *testing.T, r response) map[string]any {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Raw)
	}
	d, ok := r.Body["decision"].(map[string]any)
	if !ok {
		t.Fatalf("no decision in %s", r.Raw)
	}
	return d
}

func errorOf(t *testing.T, r response) map[string]any {
	t.Helper()
	e, ok := r.Body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error in %s", r.Raw)
	}
	return e
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
