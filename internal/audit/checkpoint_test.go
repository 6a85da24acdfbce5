package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/keys"
)

var cpNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// gatewayKeys is a real local key store in a temporary directory.
func gatewayKeys(t testing.TB) (*keys.Local, jwk.Set) {
	t.Helper()
	k, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set, err := k.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return k, set
}

func newCheckpointer(t *testing.T, l *audit.Log, s audit.Signer, o audit.CheckpointOptions) *audit.Checkpointer {
	t.Helper()
	if o.LogID == "" {
		o.LogID = "trustgate"
	}
	if o.Now == nil {
		o.Now = func() time.Time { return cpNow }
	}
	c, err := audit.NewCheckpointer(t.Context(), l, s, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckpointFormat(t *testing.T) {
	l := openLog(t, tempPath(t), audit.Options{})
	k, set := gatewayKeys(t)
	c := newCheckpointer(t, l, k, audit.CheckpointOptions{})
	if _, err := c.Checkpoint(t.Context()); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("checkpoint of an empty log: err = %v", err)
	}
	appendN(t, l, 0, 42)
	cp, err := c.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	th := l.TreeHead()
	if cp.Size != 42 || cp.Root != th.Root || cp.Head != th.Head || !cp.Time.Equal(cpNow) || cp.Log != "trustgate" {
		t.Fatalf("checkpoint %+v, tree head %+v", cp, th)
	}

	// Any JOSE library verifies it against the JWKS: here jwx directly,
	// looking the key up by kid, as docs/auditing.md describes.
	msg, err := jws.Parse([]byte(cp.JWS))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.Type() != audit.CheckpointType || h.Algorithm() != jwa.ES256 || h.KeyID() == "" {
		t.Fatalf("header typ %q alg %q kid %q", h.Type(), h.Algorithm(), h.KeyID())
	}
	key, ok := set.LookupKeyID(h.KeyID())
	if !ok {
		t.Fatalf("kid %s not in the JWKS", h.KeyID())
	}
	payload, err := jws.Verify([]byte(cp.JWS), jws.WithKey(jwa.ES256, key))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"log": "trustgate", "size": float64(42), "root": th.Root, "head": th.Head, "time": "2026-11-22T12:00:00Z"}
	if len(p) != len(want) {
		t.Fatalf("payload %v", p)
	}
	for k, v := range want {
		if p[k] != v {
			t.Fatalf("payload %s = %v, want %v", k, p[k], v)
		}
	}
	// The root and head are those an auditor recomputes.
	if root, _ := l.RootAt(t.Context(), 42); root != cp.Root {
		t.Fatal("root")
	}

	// Stored, and a second call without growth returns the same one.
	again, err := c.Checkpoint(t.Context())
	if err != nil || again.JWS != cp.JWS {
		t.Fatalf("second checkpoint without growth: %v %v", again, err)
	}
	latest, err := l.LatestCheckpoint(t.Context())
	if err != nil || latest.JWS != cp.JWS {
		t.Fatalf("LatestCheckpoint = %v, %v", latest, err)
	}
	if _, err := audit.ParseCheckpoint([]byte(cp.JWS), set); err != nil {
		t.Fatalf("ParseCheckpoint with the gateway's keys: %v", err)
	}
}

// forger signs with its own key but claims the gateway's kid.
type forger struct {
	key jwk.Key
	kid string
}

func newForger(t *testing.T, kid string) *forger {
	t.Helper()
	dir := t.TempDir()
	if _, err := keys.OpenLocal(dir); err != nil { // generates the forger's own key
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "signing.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Set(jwk.KeyIDKey, kid); err != nil { // jws.Sign names the key's own kid
		t.Fatal(err)
	}
	return &forger{key: key, kid: kid}
}

func (f *forger) Sign(_ context.Context, payload []byte, typ string) (string, error) {
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, typ)
	_ = hdr.Set(jws.KeyIDKey, f.kid)
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256, f.key, jws.WithProtectedHeaders(hdr)))
	return string(out), err
}

func TestParseCheckpointRejects(t *testing.T) {
	l := openLog(t, tempPath(t), audit.Options{})
	k, set := gatewayKeys(t)
	appendN(t, l, 0, 5)
	cp, err := newCheckpointer(t, l, k, audit.CheckpointOptions{}).Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	forged, err := newForger(t, cp.KeyID).Sign(t.Context(), []byte(`{"log":"trustgate","size":5,"root":"`+cp.Root+`","head":"`+cp.Head+`","time":"2026-11-22T13:00:00Z"}`), audit.CheckpointType)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(cp.JWS, ".")
	tests := map[string]string{
		"forged signature, gateway's kid": forged,
		"signature of another checkpoint": parts[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2],
		"not a JWS":                       "hello",
		"truncated":                       cp.JWS[:len(cp.JWS)-10],
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := audit.ParseCheckpoint([]byte(in), set); !errors.Is(err, audit.ErrBadCheckpoint) {
				t.Fatalf("err = %v, want ErrBadCheckpoint", err)
			}
		})
	}
	t.Run("wrong typ", func(t *testing.T) {
		other, err := k.Sign(t.Context(), []byte(`{"log":"trustgate","size":5,"root":"`+cp.Root+`","head":"`+cp.Head+`","time":"2026-11-22T12:00:00Z"}`), "trustgate-receipt+json")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := audit.ParseCheckpoint([]byte(other), set); !errors.Is(err, audit.ErrBadCheckpoint) {
			t.Fatalf("a receipt passed for a checkpoint: %v", err)
		}
	})
	t.Run("the log refuses a checkpoint that does not describe it", func(t *testing.T) {
		payload := `{"log":"trustgate","size":5,"root":"` + strings.Repeat("ab", 32) + `","head":"` + cp.Head + `","time":"2026-11-22T12:00:01Z"}`
		bad, err := k.Sign(t.Context(), []byte(payload), audit.CheckpointType)
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, l, 5, 1) // so size 5 is not the last stored size either way
		if _, err := l.AddCheckpoint(t.Context(), bad); !errors.Is(err, audit.ErrBadCheckpoint) {
			t.Fatalf("AddCheckpoint with a wrong root: %v", err)
		}
		if err := l.Err(); err != nil {
			t.Fatalf("a refused checkpoint made the log unavailable: %v", err)
		}
	})
}

// waitFor polls cond for up to 5 s (the checkpointer runs in its own
// goroutine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestCheckpointerRun(t *testing.T) {
	l := openLog(t, tempPath(t), audit.Options{})
	k, set := gatewayKeys(t)
	dir := filepath.Join(t.TempDir(), "witness")

	var mu sync.Mutex
	var received []string
	failing := true
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/jose" {
			http.Error(w, "type", http.StatusBadRequest)
			return
		}
		received = append(received, string(b))
	}))
	defer hook.Close()

	ticks := make(chan time.Time)
	c := newCheckpointer(t, l, k, audit.CheckpointOptions{Every: 10, Dir: dir, Webhook: hook.URL, Ticks: ticks})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	latestSize := func() uint64 {
		cp, err := l.LatestCheckpoint(t.Context())
		if err != nil {
			return 0
		}
		return cp.Size
	}
	// Every 10 entries.
	appendN(t, l, 0, 12)
	waitFor(t, "a checkpoint after 10 entries", func() bool { return latestSize() >= 10 })
	// The directory got it; the webhook is down, so it is retried.
	waitFor(t, "the directory copy", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "latest.jws"))
		return err == nil && len(b) > 0
	})
	waitFor(t, "the webhook failure in the status", func() bool {
		st := c.Status()
		return len(st.Destinations) == 2 && st.Destinations[0].Published >= 10 && st.Destinations[1].Name == "webhook" && st.Destinations[1].Error != ""
	})
	// Fewer than 10 new entries: no checkpoint until the interval ticks.
	appendN(t, l, 12, 3)
	if s := latestSize(); s >= 15 {
		t.Fatalf("checkpoint at %d before 10 new entries or a tick", s)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	ticks <- cpNow
	waitFor(t, "a checkpoint on the tick", func() bool { return latestSize() == 15 })
	waitFor(t, "the webhook push after the retry", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) > 0 && strings.Contains(received[len(received)-1], ".")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Shutdown: a last checkpoint covering everything, pushed.
	appendN(t, l, 15, 4)
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if latestSize() != 19 {
		t.Fatalf("shutdown checkpoint at %d, want 19", latestSize())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*.jws"))
	if len(files) < 3 {
		t.Fatalf("directory holds %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := audit.ParseCheckpoint(b, set)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if filepath.Base(f) != audit.CheckpointFileName(cp.Size) {
			t.Fatalf("%s holds the checkpoint of size %d", f, cp.Size)
		}
	}
	mu.Lock()
	last := received[len(received)-1]
	mu.Unlock()
	if cp, err := audit.ParseCheckpoint([]byte(last), set); err != nil || cp.Size != 19 {
		t.Fatalf("webhook's last checkpoint: %v %v", cp, err)
	}
}

// failingSigner is a key store that is down.
type failingSigner struct{}

func (failingSigner) Sign(context.Context, []byte, string) (string, error) {
	return "", keys.ErrUnavailable
}

func TestCheckpointSignerDown(t *testing.T) {
	l := openLog(t, tempPath(t), audit.Options{})
	appendN(t, l, 0, 3)
	c := newCheckpointer(t, l, failingSigner{}, audit.CheckpointOptions{})
	if _, err := c.Checkpoint(t.Context()); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("err = %v, want keys.ErrUnavailable", err)
	}
	if _, err := l.LatestCheckpoint(t.Context()); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("a checkpoint was stored without a signature: %v", err)
	}
	if st := c.Status(); st.SignError == "" {
		t.Fatal("sign error not reported")
	}
	// Appends are not affected.
	appendN(t, l, 3, 1)
}
