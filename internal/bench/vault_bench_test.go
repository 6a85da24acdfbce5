//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/keys/vault"
	"github.com/childrens-trust/trustgate/internal/keys/vault/vaulttest"
	"github.com/childrens-trust/trustgate/internal/nhs"
)

// syntheticSubjects returns n valid NHS numbers in the 999 range.
func syntheticSubjects(n int) []string {
	out := make([]string, 0, n)
	for i := 0; len(out) < n; i++ {
		nine := fmt.Sprintf("999%06d", i)
		if d, ok := nhs.CheckDigit(nine); ok {
			out = append(out, nine+string(rune(d)))
		}
	}
	return out
}

// decisions is a request factory over a gateway: every request uses the
// next unused token; the subject is subjects[i % pool] (pool 0: every
// request a new subject).
type decisions struct {
	url      string
	tokens   []string
	next     *atomic.Int64 // shared by the runs against one gateway (tokens are single-use)
	subjects []string
	pool     int
}

func (d decisions) request(i int64) (*http.Request, error) {
	n := d.next.Add(1) - 1
	if int(n) >= len(d.tokens) {
		return nil, fmt.Errorf("out of tokens")
	}
	subj := d.subjects[int(n)%len(d.subjects)]
	if d.pool > 0 {
		subj = d.subjects[int(n)%d.pool]
	}
	body, _ := json.Marshal(map[string]any{"subject": subj, "provider": "exley-police", "purpose": "safeguarding", "categories": []string{"police_concerns", "household"}})
	req, err := http.NewRequest(http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+d.tokens[n])
	return req, nil
}

// TestBenchKeysLocalVsVault measures the decision path (where the key
// store is asked for a pseudonym on every request) with the local key
// store and with a real Vault server on loopback, in the same run: once
// with children seen again (a pool of 1000 subjects: the pseudonym cache
// answers), once with every request a new child (every request needs an
// HMAC from Vault, batched), and once with batching and the cache turned
// off (one transit call per request) to show what they buy.
func TestBenchKeysLocalVsVault(t *testing.T) {
	d := envDuration("BENCH_DURATION", 10*time.Second)
	warm := 2 * time.Second
	clients := envInt("BENCH_CLIENTS", 32)
	ntok := envInt("BENCH_TOKENS", 100000) // per measured target
	subjects := syntheticSubjects(2 * ntok)

	srv := vaulttest.Start(t)
	res, sid := srv.Setup(vault.SetupOptions{})
	withVault := func(batchMax, cache int) func(*config.Config) {
		return func(c *config.Config) {
			c.Keys.Backend = "vault"
			c.Keys.Vault.Address = srv.Addr()
			c.Keys.Vault.RoleID = res.RoleID
			c.Keys.Vault.SecretIDFile = sid
			c.Keys.Vault.BatchMax = batchMax
			c.Keys.Vault.PseudonymCacheSize = cache
		}
	}
	def := config.DefaultVault()

	type run struct {
		name   string
		mutate func(*config.Config)
		pools  []int
	}
	runs := []run{
		{"local", nil, []int{1000, 0}},
		{"vault", withVault(def.BatchMax, def.PseudonymCacheSize), []int{1000, 0}},
		{"vault, no batch, no cache", withVault(1, 0), []int{0}},
	}
	// All three gateways run throughout; the measurements alternate
	// between them, round after round, so that a change in the machine's
	// load falls on all of them alike.
	type target struct {
		label string
		f     decisions
	}
	var targets []target
	for _, r := range runs {
		a, dir := startDemoGateway(t, r.mutate)
		tokens := mintTokens(t, dir, "exley-csc", "social_worker", ntok*len(r.pools))
		next := &atomic.Int64{}
		for _, pool := range r.pools {
			label := r.name + ", repeat children"
			if pool == 0 {
				label = r.name + ", new child each"
			}
			targets = append(targets, target{label, decisions{url: "http://" + a.Addr() + "/v1/decisions", tokens: tokens, next: next, subjects: subjects, pool: pool}})
		}
	}
	rounds := envInt("BENCH_ROUNDS", 2)
	results := map[string]Result{}
	var order []string
	for round := 0; round < rounds; round++ {
		for _, tg := range targets {
			res := Drive(context.Background(), tg.label, clients, d, warm, http.StatusOK, tg.f.request)
			if res.Errors != 0 {
				t.Fatalf("%s: %d errors (out of tokens? raise BENCH_TOKENS); the first: %s", tg.label, res.Errors, res.FirstError)
			}
			fmt.Printf("round %d: %s\n", round+1, res)
			sum, ok := results[tg.label]
			if !ok {
				order = append(order, tg.label)
				sum = Result{Name: tg.label}
			}
			sum.Requests += res.Requests
			sum.Elapsed += res.Elapsed
			sum.P50 += res.P50 / time.Duration(rounds)
			sum.P99 += res.P99 / time.Duration(rounds)
			results[tg.label] = sum
		}
	}
	fmt.Printf("\n== key store in the decision path: %d clients, %d rounds of %s each, same machine, same run (latencies: mean of rounds) ==\n", clients, rounds, d)
	for _, l := range order {
		fmt.Println(results[l])
	}
	ratio := func(a, b string) float64 { return results[a].PerSecond() / results[b].PerSecond() }
	fmt.Printf("ratio vault/local, repeat children   = %.2fx\n", ratio("vault, repeat children", "local, repeat children"))
	fmt.Printf("ratio vault/local, new child each    = %.2fx\n", ratio("vault, new child each", "local, new child each"))
	fmt.Printf("ratio unbatched/batched, new child   = %.2fx\n\n", ratio("vault, no batch, no cache, new child each", "vault, new child each"))
}

// TestBenchKeysSignLocalVsVault measures signing alone (consent receipts,
// provider tokens, notifications and checkpoints sign on their request
// paths): signatures per second from concurrent callers, with the local
// store and with Vault transit, batched and unbatched, in the same run.
func TestBenchKeysSignLocalVsVault(t *testing.T) {
	d := envDuration("BENCH_DURATION", 10*time.Second)
	clients := envInt("BENCH_CLIENTS", 32)
	srv := vaulttest.Start(t)
	o := vault.SetupOptions{}
	res, sid := srv.Setup(o)
	local, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	open := func(batchMax int) keys.Store {
		opts := srv.AppRole(o, res, sid)
		opts.BatchMax = batchMax
		s, err := vault.Open(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	stores := []struct {
		name string
		s    keys.Store
	}{{"local", local}, {"vault", open(config.DefaultVault().BatchMax)}, {"vault, no batch", open(1)}}
	payload := []byte(`{"receipt":"r-0001","subject":"0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"}`)
	rate := map[string]float64{}
	fmt.Printf("\n== signatures: %d concurrent callers, %s each, same run ==\n", clients, d)
	for _, st := range stores {
		var n, errs atomic.Int64
		end := time.Now().Add(d)
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					if _, err := st.s.Sign(context.Background(), payload, "trustgate-receipt+jws"); err != nil {
						errs.Add(1)
						continue
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		if errs.Load() != 0 {
			t.Fatalf("%s: %d errors", st.name, errs.Load())
		}
		rate[st.name] = float64(n.Load()) / time.Since(start).Seconds()
		fmt.Printf("%-18s %8.0f signatures/s\n", st.name, rate[st.name])
	}
	fmt.Printf("ratio vault/local = %.2fx; unbatched/batched = %.2fx\n\n", rate["vault"]/rate["local"], rate["vault, no batch"]/rate["vault"])
}
