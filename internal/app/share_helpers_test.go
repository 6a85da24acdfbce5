package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/provider"
)

// trustgateBin is the trustgate binary, built once by TestMain: the
// reference providers in these tests are real processes.
var trustgateBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "trustgate-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	trustgateBin = filepath.Join(dir, "trustgate")
	build := exec.Command("go", "build", "-o", trustgateBin, "github.com/childrens-trust/trustgate/cmd/trustgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build trustgate:", err)
		return 1
	}
	code := m.Run()
	if demoDir != "" {
		os.RemoveAll(demoDir)
	}
	// A whole run (no -run filter) must have validated, against the served
	// OpenAPI document, every documented operation's success and error
	// answers, and the fail-closed 503s (contract_test.go).
	if f := flag.Lookup("test.run"); code == 0 && f != nil && f.Value.String() == "" {
		if missing := contractCoverage(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "contract coverage: %d documented answers were never validated against the served OpenAPI document:\n  %s\n",
				len(missing), strings.Join(missing, "\n  "))
			return 1
		}
	}
	return code
}

// providerProc is a `trustgate provider` process.
type providerProc struct {
	partner string
	url     string
	cmd     *exec.Cmd
	log     *syncBuffer
	done    chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startProvider starts the reference provider for partner on a free
// loopback port, trusting the gateway's published key set, and stops it
// at the end of the test.
func startProvider(t *testing.T, partner string, g *gateway, extra ...string) *providerProc {
	t.Helper()
	args := append([]string{"provider", "--partner", partner,
		"--records", demo.RecordsDir(preparedDemo(t)),
		"--gateway-jwks", g.base + "/.well-known/jwks.json",
		"--gateway-id", g.cfg.GatewayID,
		"--listen", "127.0.0.1:0", "--log-level", "info"}, extra...)
	cmd := exec.Command(trustgateBin, args...)
	p := &providerProc{partner: partner, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.log
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-lines:
		_, rest, ok := strings.Cut(line, " listening on ")
		url, _, _ := strings.Cut(rest, " ")
		if !ok || !(strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasPrefix(url, "https://127.0.0.1:")) {
			t.Fatalf("provider %s: unexpected first line %q; log:\n%s", partner, line, p.log)
		}
		p.url = url
	case <-time.After(30 * time.Second):
		t.Fatalf("provider %s did not start; log:\n%s", partner, p.log)
	}
	return p
}

// stop ends the process (SIGTERM, then SIGKILL after 5s) and waits.
func (p *providerProc) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// shareEnv is a gateway whose registry file the test rewrites (provider
// endpoints, webhooks) and reloads.
type shareEnv struct {
	t         *testing.T
	g         *gateway
	reg       string
	endpoints map[string]string
	webhooks  map[string]string
}

// startShareGateway starts a gateway on a copy of the demo registry in
// which no partner has an endpoint or a webhook until route gives one.
// Fetches time out after a second; notification retries are quick.
func startShareGateway(t *testing.T, mutate func(*config.Config)) *shareEnv {
	t.Helper()
	e := &shareEnv{t: t, reg: filepath.Join(t.TempDir(), "trust.yaml"), endpoints: map[string]string{}, webhooks: map[string]string{}}
	e.writeRegistry()
	e.g = startGateway(t, func(c *config.Config) {
		c.Registry = e.reg
		c.Providers.Timeout = config.Duration{Duration: time.Second}
		c.Notifications.RetryMin = config.Duration{Duration: 20 * time.Millisecond}
		c.Notifications.RetryMax = config.Duration{Duration: 200 * time.Millisecond}
		if mutate != nil {
			mutate(c)
		}
	})
	return e
}

// route sets endpoints and webhooks (partner → URL; "" removes) and
// reloads the gateway's registry.
func (e *shareEnv) route(endpoints, webhooks map[string]string) {
	e.t.Helper()
	for k, v := range endpoints {
		e.endpoints[k] = v
	}
	for k, v := range webhooks {
		e.webhooks[k] = v
	}
	e.writeRegistry()
	if _, err := e.g.app.Reload(context.Background(), "test"); err != nil {
		e.t.Fatal(err)
	}
}

// writeRegistry writes the demo registry with absolute key paths and
// only the endpoints and webhooks routed.
func (e *shareEnv) writeRegistry() {
	e.t.Helper()
	dir := preparedDemo(e.t)
	src := filepath.Join(dir, "protocols", "trust.yaml")
	b, err := os.ReadFile(src)
	if err != nil {
		e.t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		e.t.Fatal(err)
	}
	doc := root.Content[0]
	var partners *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "partners" {
			partners = doc.Content[i+1]
		}
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "jwks_file" { // the Trust's own keys
			doc.Content[i+1].Value = filepath.Join(dir, "protocols", doc.Content[i+1].Value)
		}
	}
	for _, p := range partners.Content {
		var id string
		var kept []*yaml.Node
		for i := 0; i+1 < len(p.Content); i += 2 {
			k, v := p.Content[i], p.Content[i+1]
			switch k.Value {
			case "id":
				id = v.Value
			case "endpoint", "webhook":
				continue
			case "jwks_file":
				v.Value = filepath.Join(dir, "protocols", v.Value)
			}
			kept = append(kept, k, v)
		}
		for name, m := range map[string]map[string]string{"endpoint": e.endpoints, "webhook": e.webhooks} {
			if u := m[id]; u != "" {
				kept = append(kept, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, &yaml.Node{Kind: yaml.ScalarNode, Value: u})
			}
		}
		p.Content = kept
	}
	out, err := yaml.Marshal(&root)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.reg, out, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// share posts a share request as partner's practitioner with role.
func (e *shareEnv) share(partner, role string, body map[string]any) response {
	e.t.Helper()
	b, _ := json.Marshal(body)
	return e.g.do(http.MethodPost, "/v1/share-requests", e.g.token(partner, role), b)
}

// entry finds the audit entry of a request.
func (e *shareEnv) entry(requestID any) *audit.Entry {
	e.t.Helper()
	var found *audit.Entry
	err := e.g.app.Audit().Scan(context.Background(), 1, func(en *audit.Entry) error {
		if en.RequestID == requestID {
			found = en
		}
		return nil
	})
	if err != nil || found == nil {
		e.t.Fatalf("no audit entry for %v (%v)", requestID, err)
	}
	return found
}

// gatewaySigner opens the running gateway's own key store: tests sign
// decision tokens exactly as the gateway does, with crafted claims.
func (e *shareEnv) gatewaySigner() *keys.Local {
	e.t.Helper()
	k, err := keys.OpenLocal(filepath.Join(e.g.cfg.DataDir, "keys"))
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

// rawRecord returns the record exactly as the answer carried it.
func rawRecord(t *testing.T, r response) (json.RawMessage, string) {
	t.Helper()
	var m struct {
		Record json.RawMessage `json:"record"`
		SHA    string          `json:"record_sha256"`
	}
	if err := json.Unmarshal(r.Raw, &m); err != nil || m.Record == nil {
		t.Fatalf("no record in %s", r.Raw)
	}
	return m.Record, m.SHA
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fixture returns the demo record of subject held by partner.
func fixture(t *testing.T, partner, subject string) *provider.Record {
	t.Helper()
	rs, err := provider.LoadRecords(demo.RecordsDir(preparedDemo(t)), partner)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := rs.Get(subject)
	if !ok {
		t.Fatalf("%s holds no record for %s", partner, subject)
	}
	return r
}

// freePort reserves a loopback address and releases it: a webhook that
// is down until the test listens there.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
