package app_test

import (
	"net/http"
	"os"
	"testing"

	"github.com/childrens-trust/trustgate/internal/app"
)

// The replay state kept across restarts: a clean stop writes it, a start
// restores it and reads the audit log only after the seq it covers; a
// stale state (as after a crash) is completed from the log, and a state
// that does not match the log is ignored. In every case a used token
// stays used.
func TestReplayStateAcrossRestarts(t *testing.T) {
	g := startGateway(t, nil)
	state := app.ReplayStatePath(g.cfg.DataDir)
	use := func(tok string) {
		t.Helper()
		if r := g.do(http.MethodPost, "/v1/decisions", tok, mustJSON(policeShare())); r.Status != 200 {
			t.Fatalf("first use: %d %s", r.Status, r.Raw)
		}
	}
	refused := func(tok, when string) {
		t.Helper()
		r := g.do(http.MethodPost, "/v1/decisions", tok, mustJSON(policeShare()))
		if r.Status != http.StatusUnauthorized || errorOf(t, r)["reason"] != "replayed" {
			t.Fatalf("replay %s: %d %s", when, r.Status, r.Raw)
		}
	}
	tok1 := g.token("exley-csc", "social_worker")
	use(tok1)
	g.stop()
	stale, err := os.ReadFile(state)
	if err != nil {
		t.Fatalf("no replay state written at shutdown: %v", err)
	}
	g.start()
	refused(tok1, "after a clean restart")
	tok2 := g.token("exley-csc", "social_worker")
	use(tok2)
	g.stop()
	// A crash: the state on disk predates tok2's use.
	if err := os.WriteFile(state, stale, 0o600); err != nil {
		t.Fatal(err)
	}
	g.start()
	refused(tok1, "with a stale state")
	refused(tok2, "with a stale state (read from the log after it)")
	g.stop()
	// A state that does not match this log (its head hash altered).
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len("trustgate-replay-2\n")+8] ^= 1
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	g.start()
	refused(tok1, "with a state from another log")
	refused(tok2, "with a state from another log")
}
