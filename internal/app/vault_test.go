package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/keys/vault"
	"github.com/childrens-trust/trustgate/internal/keys/vault/vaulttest"
	"github.com/childrens-trust/trustgate/internal/nhs"
)

// syntheticNHS returns n valid NHS numbers in the 999 range, from offset.
func syntheticNHS(offset, n int) []string {
	var out []string
	for i := offset; len(out) < n; i++ {
		nine := fmt.Sprintf("999%06d", i)
		if d, ok := nhs.CheckDigit(nine); ok {
			out = append(out, nine+string(rune(d)))
		}
	}
	return out
}

// vaultGateway starts a real Vault, runs the operator setup on it and
// starts the gateway with keys.backend: vault.
func vaultGateway(t *testing.T, mutate ...func(*config.Config)) (*gateway, *vaulttest.Server) {
	t.Helper()
	srv := vaulttest.Start(t)
	res, sid := srv.Setup(vault.SetupOptions{})
	g := startGateway(t, func(c *config.Config) {
		c.Keys.Backend = "vault"
		c.Keys.Timeout = config.Duration{Duration: time.Second}
		c.Keys.Vault.Address = srv.Addr()
		c.Keys.Vault.RoleID = res.RoleID
		c.Keys.Vault.SecretIDFile = sid
		for _, m := range mutate {
			m(c)
		}
	})
	return g, srv
}

type answer struct {
	started time.Time
	ended   time.Time
	status  int
	body    map[string]any
	raw     []byte
	err     error
}

func (g *gateway) post(hc *http.Client, token string, body []byte) answer {
	a := answer{started: time.Now()}
	req, _ := http.NewRequest(http.MethodPost, g.base+"/v1/decisions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		a.err = err
		return a
	}
	defer resp.Body.Close()
	a.raw, _ = io.ReadAll(resp.Body)
	a.ended = time.Now()
	a.status = resp.StatusCode
	_ = json.Unmarshal(a.raw, &a.body)
	return a
}

func TestVaultBackendSealUnderLoadDisclosesNothingAndRecovers(t *testing.T) {
	g, srv := vaultGateway(t)

	// Decisions work; the key set names key and version.
	d := decisionOf(t, g.decide("exley-csc", "social_worker", policeShare()))
	if d["allow"] != true {
		t.Fatalf("want allow: %v", d)
	}
	r := g.do(http.MethodGet, "/.well-known/jwks.json", "", nil)
	if r.Status != 200 || !strings.Contains(string(r.Raw), `"kid":"trustgate-signing:1"`) {
		t.Fatalf("jwks: %d %s", r.Status, r.Raw)
	}
	if r := g.do(http.MethodGet, "/readyz", "", nil); r.Status != 200 {
		t.Fatalf("readyz: %d %s", r.Status, r.Raw)
	}

	// Load: 4 clients, every request a child the gateway has not seen
	// (so no answer can come from the pseudonym cache).
	const clients = 4
	subjects := syntheticNHS(100, 3000)
	tokens := make([]string, len(subjects))
	for i := range tokens {
		tokens[i] = g.token("exley-csc", "social_worker")
	}
	var (
		next    atomic.Int64
		mu      sync.Mutex
		answers []answer
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	hc := &http.Client{Timeout: 10 * time.Second}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := int(next.Add(1)) - 1
				if i >= len(subjects) {
					return
				}
				body, _ := json.Marshal(map[string]any{"subject": subjects[i], "provider": "exley-police", "purpose": "safeguarding", "categories": []string{"police_concerns"}})
				a := g.post(hc, tokens[i], body)
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
			}
		}()
	}
	count := func(since time.Time, status int) (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range answers {
			if a.started.After(since) && (status == 0 || a.status == status) {
				n++
			}
		}
		return n
	}
	eventually := func(what string, limit time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > limit {
				close(stop)
				wg.Wait()
				mu.Lock()
				for i, a := range answers {
					if i < 3 || i >= len(answers)-3 {
						t.Logf("answer %d: %d %s %v", i, a.status, a.raw, a.err)
					}
				}
				mu.Unlock()
				t.Fatalf("%s: not within %s (%d answers)", what, limit, len(answers))
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	t0 := time.Now()
	eventually("decisions under load", 20*time.Second, func() bool { return count(t0, 200) >= 20 })

	srv.Seal()
	sealed := time.Now()
	eventually("answers while sealed", 20*time.Second, func() bool { return count(sealed, 0) >= 40 })
	rz := g.do(http.MethodGet, "/readyz", "", nil)
	if rz.Status != http.StatusServiceUnavailable || rz.Body["ready"] != false {
		t.Fatalf("readyz while sealed: %d %s", rz.Status, rz.Raw)
	}
	checks, _ := rz.Body["checks"].(map[string]any)
	if ks, _ := checks["keys"].(string); !strings.Contains(ks, "sealed") {
		t.Fatalf("readyz does not say the keys are sealed: %s", rz.Raw)
	}

	unsealing := time.Now()
	srv.Unseal()
	unsealed := time.Now()
	took := eventually("decisions after unseal", 30*time.Second, func() bool { return count(unsealed, 200) >= 10 })
	close(stop)
	wg.Wait()
	t.Logf("decisions again %s after unseal", took.Round(time.Millisecond))
	if r := g.do(http.MethodGet, "/readyz", "", nil); r.Status != 200 {
		t.Fatalf("readyz after unseal: %d %s", r.Status, r.Raw)
	}

	// Every answer: a decision (200) or 503 with nothing disclosed; every
	// request made while Vault was sealed (started after the seal, answered
	// before the unseal began): 503.
	n503, inSealed := 0, 0
	for _, a := range answers {
		if a.started.After(sealed) && a.ended.Before(unsealing) {
			inSealed++
		}
		if a.err != nil {
			t.Fatalf("transport error: %v", a.err)
		}
		_, hasDecision := a.body["decision"]
		switch a.status {
		case 200:
			if !hasDecision {
				t.Fatalf("200 without a decision: %s", a.raw)
			}
			if a.started.After(sealed) && a.ended.Before(unsealing) {
				t.Fatalf("a request made while Vault was sealed was answered 200: %s", a.raw)
			}
		case 503:
			n503++
			e, _ := a.body["error"].(map[string]any)
			if hasDecision || e["code"] != "keys_unavailable" || strings.Contains(string(a.raw), "allow") {
				t.Fatalf("503 discloses or is not keys_unavailable: %s", a.raw)
			}
		default:
			t.Fatalf("status %d: %s", a.status, a.raw)
		}
	}
	if inSealed < 40 || n503 < inSealed {
		t.Fatalf("%d requests made while sealed, %d answers 503", inSealed, n503)
	}
	t.Logf("%d answers; %d requests made while Vault was sealed, all 503; %d answers 503 in all", len(answers), inSealed, n503)

	// The audit log holds the refusals, and no subject in clear.
	clear := map[string]bool{}
	for _, s := range subjects[:int(min(next.Load(), int64(len(subjects))))] {
		clear[s] = true
	}
	unavailable := 0
	digits := func(r rune) bool { return r < '0' || r > '9' }
	err := g.app.Audit().ReverseScan(context.Background(), func(e *audit.Entry) (bool, error) {
		b, _ := json.Marshal(e)
		for _, w := range strings.FieldsFunc(string(b), digits) {
			if clear[w] {
				return false, fmt.Errorf("audit entry holds subject %s in clear: %s", w, b)
			}
		}
		if e.Kind == audit.KindUnavailable {
			unavailable++
			// An unavailable entry is still indexed under the child when
			// the pseudonym could be had (issue 17's complete access
			// reports), but only ever by the pseudonym, never in clear.
			if e.Subject != "" && len(e.Subject) != 64 {
				return false, fmt.Errorf("an unavailable entry's subject is not a pseudonym: %s", b)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if unavailable < n503 {
		t.Fatalf("%d 503 answers but %d unavailable audit entries", n503, unavailable)
	}
}

func TestVaultBackendUnreachableAtStartFailsWithOneMessage(t *testing.T) {
	dir := preparedDemo(t)
	cfg, err := config.Load(filepath.Join(dir, "trustgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	sid := filepath.Join(t.TempDir(), "secret-id")
	os.WriteFile(sid, []byte("s"), 0o600)
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Keys.Backend = "vault"
	cfg.Keys.Vault.Address = addr
	cfg.Keys.Vault.RoleID = "role"
	cfg.Keys.Vault.SecretIDFile = sid
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		a.Close()
		t.Fatal("the gateway started with Vault unreachable")
	}
	msg := err.Error()
	if !errors.Is(err, keys.ErrUnavailable) || strings.Contains(msg, "\n") || !strings.Contains(msg, addr) ||
		!strings.Contains(msg, "unreachable") || !strings.Contains(msg, "VAULT_ADDR") {
		t.Fatalf("not one clear message: %q", msg)
	}
	t.Logf("trustgate: %s", msg)
}
