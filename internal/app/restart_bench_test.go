//go:build bench

package app_test

import (
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/audit"
)

// TestBenchRestart (make bench): how long after start /readyz answers 200
// when the audit log holds 200,000 requests with tokens from the last 7
// minutes (BENCH_RESTART_TOKENS). The peer, in the same run: the same
// restart without the replay state (every token read back from the audit
// log, as before issue 15). Target: within 1 s with the state.
func TestBenchRestart(t *testing.T) {
	n := 200_000
	if v := os.Getenv("BENCH_RESTART_TOKENS"); v != "" {
		fmt.Sscan(v, &n)
	}
	g := startGateway(t, nil)
	ready := func(label string, dropState bool) time.Duration {
		g.stop()
		if dropState {
			_ = os.Remove(app.ReplayStatePath(g.cfg.DataDir))
		}
		t0 := time.Now()
		g.start()
		for {
			if r := g.do(http.MethodGet, "/readyz", "", nil); r.Status == 200 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		d := time.Since(t0)
		t.Logf("%s: /readyz 200 after %v", label, d.Round(time.Millisecond))
		return d
	}
	empty := ready("empty audit log (the fixed cost: policy compile, tests and samples, keys, listeners)", false)
	l := g.app.Audit()
	var wg sync.WaitGroup
	const workers = 64
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				e := audit.Entry{Kind: audit.KindDecision, Method: "POST", Path: "/v1/decisions", Status: 200,
					RequestID: fmt.Sprintf("%032x", i), Requester: "exley-csc", Practitioner: fmt.Sprintf("sw-%04d", i%500), Role: "social_worker",
					Provider: "exley-police", Purpose: "safeguarding", Categories: []string{"police_concerns", "household"},
					Subject: fmt.Sprintf("%064x", uint64(i%20000+1)*0x9e3779b97f4a7c15), Decision: "allow",
					Protocol: "isp-safeguarding", ProtocolVersion: "3", Rule: "police-to-social-care",
					AllowedCategories: []string{"household", "police_concerns"},
					Reasons:           []string{"allowed by isp-safeguarding v3 rule police-to-social-care (consent not required by the rule)"},
					// The residual of the decision input, as the gateway records it
					// (partner types, no consent on file): revision checks replay it.
					InputResidual: audit.Residual(`["local_authority","police",[]]`)}
				e.Time = testNow.Add(-7 * time.Minute).Add(time.Duration(i) * (7 * time.Minute / time.Duration(n)))
				e.TokenID = fmt.Sprintf("bench-%d", i)
				if _, _, err := l.Append(t.Context(), &e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d entries with tokens appended in %v", n, time.Since(start).Round(time.Millisecond))
	// Peer: no replay state, every token read back from the log.
	peer := ready("without the replay state (the whole horizon read from the audit log)", true)
	if p := os.Getenv("BENCH_RESTART_PROFILE"); p != "" { // a CPU profile of the restart with the state
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	with := ready("with the replay state", false)
	t.Logf("BENCH restart: %d recent tokens: with state %v, without %v; empty log %v; the replay part: with state %v, without %v; target: /readyz within 1 s",
		n, with.Round(time.Millisecond), peer.Round(time.Millisecond), empty.Round(time.Millisecond),
		(with - empty).Round(time.Millisecond), (peer - empty).Round(time.Millisecond))
}
