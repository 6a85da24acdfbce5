package identity_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/identity"
)

func TestReplayKeyIsUnambiguous(t *testing.T) {
	pairs := [][2]string{{"a", "b:c"}, {"a:b", "c"}, {"a:", "b"}, {"a", ":b"}, {"", "1:a:b"}, {"1:a", "b"}}
	seen := map[string][2]string{}
	for _, p := range pairs {
		k := identity.ReplayKey(p[0], p[1])
		if prev, dup := seen[k]; dup {
			t.Errorf("ReplayKey(%q, %q) = ReplayKey(%q, %q) = %q", p[0], p[1], prev[0], prev[1], k)
		}
		seen[k] = p
	}
}

func TestMemoryReplayCacheClaim(t *testing.T) {
	clk := newClock(t0)
	c := identity.NewMemoryReplayCache(clk.Now, 10)
	exp := t0.Add(time.Minute)
	steps := []struct {
		key  string
		exp  time.Time
		want error
	}{
		{"k1", exp, nil},
		{"k1", exp, identity.ErrReplayed},
		{"k1", exp.Add(time.Hour), identity.ErrReplayed}, // a later exp does not make it new
		{"k2", exp, nil},
		{"past", t0.Add(-time.Second), nil}, // already expired: nothing to remember
		{"past", t0.Add(-time.Second), nil},
	}
	for i, s := range steps {
		if err := c.Claim(s.key, s.exp); !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Errorf("step %d: Claim(%q) = %v, want %v", i, s.key, err, s.want)
		}
	}
	if n := c.Len(); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
}

func TestMemoryReplayCacheConcurrentClaims(t *testing.T) {
	clk := newClock(t0)
	c := identity.NewMemoryReplayCache(clk.Now, 1000)
	const workers, keys = 64, 8
	var won [keys]atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for k := range keys {
				key := fmt.Sprintf("key-%d", (k+w)%keys)
				switch err := c.Claim(key, t0.Add(time.Minute)); {
				case err == nil:
					won[(k+w)%keys].Add(1)
				case !errors.Is(err, identity.ErrReplayed):
					t.Errorf("Claim: %v", err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for k := range won {
		if n := won[k].Load(); n != 1 {
			t.Errorf("key-%d claimed successfully %d times, want exactly once", k, n)
		}
	}
}

func TestMemoryReplayCacheExpiry(t *testing.T) {
	clk := newClock(t0)
	c := identity.NewMemoryReplayCache(clk.Now, 10)
	exp := t0.Add(time.Minute)
	if err := c.Claim("k", exp); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute) // now == exp: still remembered
	if err := c.Claim("k", exp); !errors.Is(err, identity.ErrReplayed) {
		t.Fatalf("at exp: %v, want ErrReplayed", err)
	}
	clk.Advance(time.Nanosecond)
	if n := c.Len(); n != 0 {
		t.Errorf("after exp: Len = %d, want 0", n)
	}
	if err := c.Claim("k", clk.Now().Add(time.Minute)); err != nil {
		t.Errorf("after exp: %v, want the key claimable again", err)
	}
}

// Keys that expire give their memory back: Go maps never shrink, so the
// cache must reallocate once it has emptied.
func TestMemoryReplayCacheReclaimsMemory(t *testing.T) {
	clk := newClock(t0)
	const n = 200_000
	c := identity.NewMemoryReplayCache(clk.Now, n)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	for i := range n {
		if err := c.Claim(fmt.Sprintf("issuer-%d:jti-%d", i%7, i), t0.Add(time.Duration(i%300)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	full := heap()
	if full-base < 8<<20 {
		t.Fatalf("%d keys took only %d bytes; the test cannot tell reclaimed memory", n, full-base)
	}
	clk.Advance(time.Hour)
	if err := c.Claim("fresh", clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := c.Len(); got != 1 {
		t.Errorf("Len = %d, want 1", got)
	}
	after := heap()
	if after > base+(full-base)/10 {
		t.Errorf("heap %d bytes above baseline after expiry, was %d when full: memory not reclaimed", after-base, full-base)
	}
	runtime.KeepAlive(c)
}

func TestMemoryReplayCacheFull(t *testing.T) {
	clk := newClock(t0)
	c := identity.NewMemoryReplayCache(clk.Now, 3)
	for i, exp := range []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute} {
		if err := c.Claim(fmt.Sprint(i), t0.Add(exp)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Claim("3", t0.Add(time.Minute)); !errors.Is(err, identity.ErrReplayCacheFull) {
		t.Errorf("fourth key: %v, want ErrReplayCacheFull", err)
	}
	if err := c.Claim("0", t0.Add(time.Minute)); !errors.Is(err, identity.ErrReplayed) {
		t.Errorf("known key while full: %v, want ErrReplayed", err)
	}
	clk.Advance(time.Minute + time.Second) // key 0 expires, making room
	if err := c.Claim("3", clk.Now().Add(time.Minute)); err != nil {
		t.Errorf("after one expired: %v", err)
	}
	if err := c.Claim("4", clk.Now().Add(time.Minute)); !errors.Is(err, identity.ErrReplayCacheFull) {
		t.Errorf("full again: %v, want ErrReplayCacheFull", err)
	}
}

func TestMemoryReplayCacheSeed(t *testing.T) {
	clk := newClock(t0)
	c := identity.NewMemoryReplayCache(clk.Now, 2)
	c.Seed("used", t0.Add(time.Minute))
	c.Seed("used", t0.Add(3*time.Minute)) // a later audit entry extends
	c.Seed("used", t0.Add(time.Second))   // an earlier one does not shorten
	c.Seed("long-gone", t0.Add(-time.Minute))
	c.Seed("a", t0.Add(time.Minute))
	c.Seed("b", t0.Add(time.Minute)) // beyond max: seeding never forgets

	if n := c.Len(); n != 3 {
		t.Errorf("Len = %d, want 3 (seeding is not bounded by max)", n)
	}
	if err := c.Claim("long-gone", t0.Add(time.Minute)); err == nil || !errors.Is(err, identity.ErrReplayCacheFull) {
		// over max after seeding: new keys are refused, fail closed
		t.Errorf("new key over max: %v, want ErrReplayCacheFull", err)
	}
	clk.Advance(2 * time.Minute) // a and b expire, used does not
	if err := c.Claim("used", clk.Now().Add(time.Minute)); !errors.Is(err, identity.ErrReplayed) {
		t.Errorf("seeded key: %v, want ErrReplayed", err)
	}
	if err := c.Claim("long-gone", clk.Now().Add(time.Minute)); err != nil {
		t.Errorf("key seeded already expired: %v, want nil", err)
	}
	clk.Advance(time.Minute + time.Second)
	if err := c.Claim("used", clk.Now().Add(time.Minute)); err != nil {
		t.Errorf("seeded key after its extended expiry: %v, want nil", err)
	}
}

// Seeding from the audit log through the verifier's keys: a token accepted
// before a restart is refused after it.
func TestVerifyRefusesTokenUsedBeforeRestart(t *testing.T) {
	f := newFixture(t)
	tok := mint(t, f.keys.la, func(c *identity.MintClaims) { c.JTI = "before-restart" })
	cl, err := f.v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	// Restart: a new cache seeded from the audit entry (issuer, jti, time).
	cfg := identity.Config{Now: f.clock.Now}
	cache := identity.NewMemoryReplayCache(f.clock.Now, 10)
	cache.Seed(identity.ReplayKey(cl.Partner, cl.JTI), t0.Add(cfg.ReplayHorizon()))
	v := identity.NewVerifier(cfg, identity.StaticDirectory(f.reg), cache)
	_, err = v.Verify(t.Context(), tok)
	authError(t, err, identity.CodeReplayed)
}

func BenchmarkMemoryReplayCacheClaim(b *testing.B) {
	clk := newClock(t0)
	c := identity.NewMemoryReplayCache(clk.Now, b.N+1)
	var seq atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Claim(identity.ReplayKey("la-social-care", fmt.Sprint(seq.Add(1))), t0.Add(time.Minute)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A snapshot restores every unexpired key (a restored key is a replay, an
// expired one is forgotten) and holds no key in clear; a snapshot whose
// length does not match its count is refused.
func TestMemoryReplayCacheSnapshot(t *testing.T) {
	clk := newClock(t0)
	c := identity.NewMemoryReplayCache(clk.Now, 100)
	for i := range 20 {
		if err := c.Claim(identity.ReplayKey("exley-csc", fmt.Sprintf("jti-%d", i)), t0.Add(time.Duration(i+1)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if n, err := c.Snapshot(&buf); n != 20 || err != nil {
		t.Fatalf("Snapshot: %d, %v", n, err)
	}
	if bytes.Contains(buf.Bytes(), []byte("jti-")) || bytes.Contains(buf.Bytes(), []byte("exley-csc")) {
		t.Fatal("the snapshot holds a key in clear")
	}
	clk.Advance(10*time.Minute + time.Second) // the first ten have expired
	r := identity.NewMemoryReplayCache(clk.Now, 100)
	if n, err := r.Restore(buf.Bytes()); n != 20 || err != nil {
		t.Fatalf("Restore: %d, %v", n, err)
	}
	if r.Len() != 10 {
		t.Fatalf("restored %d unexpired keys, want 10", r.Len())
	}
	for i := range 20 {
		err := r.Claim(identity.ReplayKey("exley-csc", fmt.Sprintf("jti-%d", i)), t0.Add(time.Hour))
		if want := i >= 10; errors.Is(err, identity.ErrReplayed) != want {
			t.Fatalf("jti-%d after restore: %v (a replay: %t)", i, err, want)
		}
	}
	for _, bad := range [][]byte{buf.Bytes()[:buf.Len()-1], append(bytes.Clone(buf.Bytes()), 0), {1, 0, 0, 0, 0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0}} {
		if _, err := identity.NewMemoryReplayCache(clk.Now, 100).Restore(bad); err == nil {
			t.Fatalf("a malformed snapshot of %d bytes was restored", len(bad))
		}
	}
}
