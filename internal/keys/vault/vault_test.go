package vault_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/keys/keystest"
	"github.com/childrens-trust/trustgate/internal/keys/vault"
	"github.com/childrens-trust/trustgate/internal/keys/vault/vaulttest"
)

var bg = context.Background()

// fixture is one gateway's worth of Vault setup on a shared server: its
// own keys, policy and AppRole, made by the operator setup.
type fixture struct {
	srv   *vaulttest.Server
	setup vault.SetupOptions
	res   *vault.SetupResult
	sid   string
	opts  vault.Options
}

func newFixture(t *testing.T, srv *vaulttest.Server, name, keyType string) *fixture {
	t.Helper()
	o := vault.SetupOptions{
		Mount:          "transit",
		SigningKey:     name + "-signing",
		SigningKeyType: keyType,
		PseudonymKey:   name + "-pseudonym",
		Policy:         name + "-gateway",
		AppRoleMount:   "approle-" + name,
		Role:           name + "-gateway",
	}
	res, sid := srv.Setup(o)
	f := &fixture{srv: srv, setup: o, res: res, sid: sid, opts: srv.AppRole(o, res, sid)}
	f.opts.Timeout = time.Second
	return f
}

func (f *fixture) open(t *testing.T) *vault.Store {
	t.Helper()
	s, err := vault.Open(bg, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func verifies(t *testing.T, s keys.Store, tok string) {
	t.Helper()
	set, err := s.PublicKeys(bg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify([]byte(tok), jws.WithKeySet(set, jws.WithRequireKid(true))); err != nil {
		t.Fatalf("does not verify against the published keys: %v", err)
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	m, err := jws.Parse([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	return m.Signatures()[0].ProtectedHeaders().KeyID()
}

func algOf(t *testing.T, tok string) string {
	t.Helper()
	m, err := jws.Parse([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	return m.Signatures()[0].ProtectedHeaders().Algorithm().String()
}

// eventually polls cond every 50ms for up to limit (bounded polling for a
// recovery that happens in other processes).
func eventually(t *testing.T, limit time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, limit, err)
	return 0
}

func mustUnavailable(t *testing.T, what string, err error, kinds ...vault.Kind) {
	t.Helper()
	if !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("%s: err = %v, want keys.ErrUnavailable", what, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("%s: error spans lines: %q", what, err)
	}
	if len(kinds) == 0 {
		return
	}
	for _, k := range kinds {
		if vault.KindOf(err) == k {
			return
		}
	}
	t.Fatalf("%s: kind %q (%v), want one of %v", what, vault.KindOf(err), err, kinds)
}

// TestVault runs everything that can share one Vault server: each subtest
// has its own keys, policy and AppRole mount.
func TestVault(t *testing.T) {
	srv := vaulttest.Start(t)

	for _, kt := range []string{"ecdsa-p256", "ed25519"} {
		t.Run("Conformance/"+kt, func(t *testing.T) {
			f := newFixture(t, srv, "conf-"+kt, kt)
			open := func(t *testing.T) keys.Store { return f.open(t) }
			keystest.Run(t, open, open)
			tok, err := f.open(t).Sign(bg, []byte("{}"), "")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"ecdsa-p256": "ES256", "ed25519": "EdDSA"}[kt]
			if algOf(t, tok) != want || kidOf(t, tok) != f.setup.SigningKey+":1" {
				t.Fatalf("alg %s kid %s, want %s and %s:1", algOf(t, tok), kidOf(t, tok), want, f.setup.SigningKey)
			}
		})
	}

	t.Run("PseudonymIsTransitHMACOfThePinnedVersionInHex", func(t *testing.T) {
		f := newFixture(t, srv, "hex", "ecdsa-p256")
		s := f.open(t)
		got, err := s.Pseudonym(bg, "9990000026")
		if err != nil {
			t.Fatal(err)
		}
		sec := srv.Write("transit/hmac/"+f.setup.PseudonymKey, map[string]any{
			"input": base64.StdEncoding.EncodeToString([]byte("9990000026")), "key_version": 1, "algorithm": "sha2-256"})
		mac := strings.TrimPrefix(sec.Data["hmac"].(string), "vault:v1:")
		raw, err := base64.StdEncoding.DecodeString(mac)
		if err != nil || got != hex.EncodeToString(raw) {
			t.Fatalf("pseudonym %s, transit says %s (%v)", got, mac, err)
		}
	})

	t.Run("RotationMidRun", func(t *testing.T) {
		f := newFixture(t, srv, "rot", "ecdsa-p256")
		s := f.open(t)
		p1, err := s.Pseudonym(bg, "9990000018")
		if err != nil {
			t.Fatal(err)
		}
		// Signers run throughout the rotation.
		var (
			mu    sync.Mutex
			toks  []string
			stop  = make(chan struct{})
			wg    sync.WaitGroup
			fails atomic.Int64
		)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					tok, err := s.Sign(bg, []byte(fmt.Sprintf(`{"i":%d}`, i)), "trustgate-receipt+jws")
					if err != nil {
						fails.Add(1)
						continue
					}
					mu.Lock()
					toks = append(toks, tok)
					mu.Unlock()
				}
			}()
		}
		before, err := s.Sign(bg, []byte(`{"before":true}`), "")
		if err != nil {
			t.Fatal(err)
		}
		if kidOf(t, before) != f.setup.SigningKey+":1" {
			t.Fatalf("kid %s", kidOf(t, before))
		}
		// The operator rotates both keys.
		srv.Write("transit/keys/"+f.setup.SigningKey+"/rotate", nil)
		srv.Write("transit/keys/"+f.setup.PseudonymKey+"/rotate", nil)
		if err := s.Refresh(bg); err != nil {
			t.Fatal(err)
		}
		after, err := s.Sign(bg, []byte(`{"after":true}`), "")
		if err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		if fails.Load() != 0 {
			t.Fatalf("%d signatures failed during the rotation", fails.Load())
		}
		if kidOf(t, after) != f.setup.SigningKey+":2" {
			t.Fatalf("after rotation kid %s, want version 2", kidOf(t, after))
		}
		set, _ := s.PublicKeys(bg)
		if set.Len() != 2 {
			t.Fatalf("%d public keys after one rotation, want 2", set.Len())
		}
		verifies(t, s, before)
		verifies(t, s, after)
		mu.Lock()
		for _, tok := range toks {
			verifies(t, s, tok)
		}
		t.Logf("%d signatures made during the rotation all verify", len(toks))
		mu.Unlock()
		// Pseudonyms do not move: not in this store, not in a new one
		// (no cache), not for a subject first seen after the rotation.
		p2, _ := s.Pseudonym(bg, "9990000018")
		fresh := f.opts
		fresh.CacheSize = -1
		s2, err := vault.Open(bg, fresh)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		p3, _ := s2.Pseudonym(bg, "9990000018")
		if p1 != p2 || p1 != p3 {
			t.Fatalf("pseudonym changed across rotation: %s %s %s", p1, p2, p3)
		}
		// The background check finds a rotation by itself, too.
		srv.Write("transit/keys/"+f.setup.SigningKey+"/rotate", nil)
		quick := f.opts
		quick.CheckInterval = 100 * time.Millisecond
		s3, err := vault.Open(bg, quick)
		if err != nil {
			t.Fatal(err)
		}
		defer s3.Close()
		srv.Write("transit/keys/"+f.setup.SigningKey+"/rotate", nil)
		eventually(t, 10*time.Second, "background check picks up version 4", func() error {
			tok, err := s3.Sign(bg, nil, "")
			if err != nil {
				return err
			}
			if k := kidOf(t, tok); k != f.setup.SigningKey+":4" {
				return fmt.Errorf("kid %s", k)
			}
			return nil
		})
		// Raising min_decryption_version retires old versions from the
		// key set: what they signed no longer verifies (the operator's
		// deliberate act; docs/operations.md).
		srv.Write("transit/keys/"+f.setup.SigningKey+"/config", map[string]any{"min_decryption_version": 2})
		if err := s.Refresh(bg); err != nil {
			t.Fatal(err)
		}
		set, _ = s.PublicKeys(bg)
		if _, ok := set.LookupKeyID(f.setup.SigningKey + ":1"); ok || set.Len() != 3 {
			t.Fatalf("after min_decryption_version 2: %d keys, version 1 still there: %v", set.Len(), ok)
		}
	})

	t.Run("PinnedPseudonymVersionMadeUnusableFailsClosed", func(t *testing.T) {
		f := newFixture(t, srv, "pin", "ecdsa-p256")
		s := f.open(t)
		p1, _ := s.Pseudonym(bg, "9990000034")
		srv.Write("transit/keys/"+f.setup.PseudonymKey+"/rotate", nil)
		srv.Write("transit/keys/"+f.setup.PseudonymKey+"/rotate", nil)
		srv.Write("transit/keys/"+f.setup.PseudonymKey+"/config", map[string]any{"min_decryption_version": 2, "min_encryption_version": 2})
		err := s.Ready(bg)
		mustUnavailable(t, "ready", err, vault.KindConfig)
		if !strings.Contains(err.Error(), "min_encryption_version") {
			t.Fatalf("the message does not name the cause: %v", err)
		}
		_, err = s.Pseudonym(bg, "9990000034")
		mustUnavailable(t, "pseudonym", err)
		// Opening refuses, with the same one-line reason.
		_, err = vault.Open(bg, f.opts)
		mustUnavailable(t, "open", err, vault.KindConfig)
		// The operator puts it back: the same pseudonyms again.
		srv.Write("transit/keys/"+f.setup.PseudonymKey+"/config", map[string]any{"min_encryption_version": 0, "min_decryption_version": 1})
		if err := s.Ready(bg); err != nil {
			t.Fatal(err)
		}
		if p2, err := s.Pseudonym(bg, "9990000034"); err != nil || p2 != p1 {
			t.Fatalf("after repair: %s %v, want %s", p2, err, p1)
		}
	})

	t.Run("BatchesAndCache", func(t *testing.T) {
		f := newFixture(t, srv, "batch", "ecdsa-p256")
		var hmacs, signs atomic.Int64
		target, _ := url.Parse(srv.Addr())
		rp := httputil.NewSingleHostReverseProxy(target)
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasPrefix(r.URL.Path, "/v1/transit/hmac/"):
				hmacs.Add(1)
			case strings.HasPrefix(r.URL.Path, "/v1/transit/sign/"):
				signs.Add(1)
			}
			rp.ServeHTTP(w, r)
		}))
		defer proxy.Close()
		o := f.opts
		o.Address = proxy.URL
		o.BatchWindow = 5 * time.Millisecond
		o.CheckInterval = time.Minute
		s, err := vault.Open(bg, o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		hmacs.Store(0)
		signs.Store(0)
		const n = 200
		first := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(2)
			go func() {
				defer wg.Done()
				var err error
				if first[i], err = s.Pseudonym(bg, fmt.Sprintf("999%07d", i)); err != nil {
					t.Error(err)
				}
			}()
			go func() {
				defer wg.Done()
				if _, err := s.Sign(bg, []byte("{}"), ""); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		h, g := hmacs.Load(), signs.Load()
		t.Logf("%d pseudonyms in %d HMAC calls, %d signatures in %d sign calls", n, h, n, g)
		if h > n/8 || g > n/8 {
			t.Fatalf("%d pseudonyms took %d HMAC calls and %d signatures %d sign calls: not batched", n, h, n, g)
		}
		// The same subjects again: all from the cache.
		for i := range n {
			p, err := s.Pseudonym(bg, fmt.Sprintf("999%07d", i))
			if err != nil || p != first[i] {
				t.Fatalf("cached pseudonym %d: %s %v", i, p, err)
			}
		}
		if hmacs.Load() != h {
			t.Fatalf("cached pseudonyms still called Vault (%d more calls)", hmacs.Load()-h)
		}
	})

	t.Run("PolicyIsLeastPrivilege", func(t *testing.T) {
		f := newFixture(t, srv, "lp", "ecdsa-p256")
		c := srv.Client()
		c.ClearToken()
		sec, err := c.Logical().Write("auth/"+f.setup.AppRoleMount+"/login", map[string]any{"role_id": f.res.RoleID, "secret_id": f.res.SecretID})
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(sec.Auth.ClientToken)
		if pols := sec.Auth.TokenPolicies; len(pols) != 1 || pols[0] != f.setup.Policy {
			t.Fatalf("token policies %v, want only %s", pols, f.setup.Policy)
		}
		sk, pk := f.setup.SigningKey, f.setup.PseudonymKey
		allowed := []struct{ op, path string }{
			{"write", "transit/sign/" + sk}, {"write", "transit/hmac/" + pk}, {"read", "transit/keys/" + sk}, {"read", "transit/keys/" + pk},
		}
		for _, a := range allowed {
			if err := try(c, a.op, a.path); err != nil {
				t.Errorf("%s %s: %v, want allowed", a.op, a.path, err)
			}
		}
		denied := []struct{ op, path string }{
			{"read", "transit/export/signing-key/" + sk},
			{"read", "transit/export/hmac-key/" + pk},
			{"read", "transit/backup/" + sk},
			{"write", "transit/keys/" + sk + "/rotate"},
			{"write", "transit/keys/" + pk + "/rotate"},
			{"write", "transit/keys/" + sk + "/config"},
			{"write", "transit/keys/" + pk + "/trim"},
			{"delete", "transit/keys/" + sk},
			{"delete", "transit/keys/" + pk},
			{"write", "transit/keys/another"},
			{"write", "transit/sign/" + pk},
			{"write", "transit/hmac/" + sk},
			{"read", "transit/keys/conf-ecdsa-p256-signing"},
			{"read", "sys/mounts"},
			{"write", "sys/policies/acl/" + f.setup.Policy},
			{"read", "cubbyhole/x"},
		}
		for _, d := range denied {
			err := try(c, d.op, d.path)
			var re *api.ResponseError
			if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %v, want 403", d.op, d.path, err)
			}
		}
		if !strings.Contains(f.res.Policy, `"transit/sign/`+sk+`"`) || strings.Contains(f.res.Policy, "transit/export") {
			t.Fatalf("policy:\n%s", f.res.Policy)
		}
	})

	t.Run("PermissionDeniedMidRun", func(t *testing.T) {
		f := newFixture(t, srv, "deny", "ecdsa-p256")
		s := f.open(t)
		// The operator takes HMAC away from the gateway's policy.
		narrowed := strings.Replace(f.res.Policy, `path "transit/hmac/`+f.setup.PseudonymKey+`"`, `path "transit/hmac/nothing"`, 1)
		if err := srv.Client().Sys().PutPolicy(f.setup.Policy, narrowed); err != nil {
			t.Fatal(err)
		}
		_, err := s.Pseudonym(bg, "9990000018")
		mustUnavailable(t, "pseudonym", err, vault.KindDenied)
		mustUnavailable(t, "ready", s.Ready(bg), vault.KindDenied)
		// Opening with that policy fails with one clear message.
		_, err = vault.Open(bg, f.opts)
		mustUnavailable(t, "open", err, vault.KindDenied)
		if !strings.Contains(err.Error(), "hmac") || !strings.Contains(err.Error(), srv.Addr()) {
			t.Fatalf("open error does not say what and where: %v", err)
		}
		if err := srv.Client().Sys().PutPolicy(f.setup.Policy, f.res.Policy); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "recovers once the policy is restored", func() error { return s.Ready(bg) })
		if _, err := s.Pseudonym(bg, "9990000018"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("TokenRevokedAppRoleLogsInAgain", func(t *testing.T) {
		f := newFixture(t, srv, "revoke", "ecdsa-p256")
		s := f.open(t)
		if _, err := s.Pseudonym(bg, "9990000018"); err != nil {
			t.Fatal(err)
		}
		// `vault token revoke -mode=path auth/approle-revoke`: every token
		// that role mount ever issued.
		srv.Write("sys/leases/revoke-prefix/auth/"+f.setup.AppRoleMount, nil)
		_, err := s.Sign(bg, []byte("{}"), "")
		mustUnavailable(t, "sign with a revoked token", err, vault.KindDenied)
		took := eventually(t, 30*time.Second, "ready again after re-login", func() error { return s.Ready(bg) })
		t.Logf("recovered %s after the revocation", took.Round(time.Millisecond))
		tok, err := s.Sign(bg, []byte("{}"), "")
		if err != nil {
			t.Fatal(err)
		}
		verifies(t, s, tok)
	})

	t.Run("TokenRenewedThenReplacedAtItsMaxTTL", func(t *testing.T) {
		o := vault.SetupOptions{
			SigningKey: "ttl-signing", PseudonymKey: "ttl-pseudonym", Policy: "ttl-gateway",
			AppRoleMount: "approle-ttl", Role: "ttl-gateway", TokenTTL: 2 * time.Second, TokenMaxTTL: 5 * time.Second,
		}
		res, sid := srv.Setup(o)
		opts := srv.AppRole(o, res, sid)
		var logs syncBuffer
		opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		s, err := vault.Open(bg, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// Past the token's TTL and its max TTL: renewed, then replaced by
		// a new login, and every request in between answered.
		start := time.Now()
		for time.Since(start) < 7*time.Second {
			if err := s.Ready(bg); err != nil {
				t.Fatalf("%s after open: %v\n%s", time.Since(start).Round(time.Millisecond), err, logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), "token renewed") || !strings.Contains(logs.String(), "logging in again") {
			t.Fatalf("not renewed, or no new login after the max TTL:\n%s", logs.String())
		}
	})

	t.Run("TokenFileReplacedAfterRevocation", func(t *testing.T) {
		f := newFixture(t, srv, "tokfile", "ed25519")
		mint := func() string {
			sec := srv.Write("auth/token/create", map[string]any{"policies": []string{f.setup.Policy}, "no_default_policy": true, "ttl": "1h"})
			return sec.Auth.ClientToken
		}
		path := filepath.Join(srv.Dir(), "tokfile-token")
		first := mint()
		if err := os.WriteFile(path, []byte(first+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		o := f.opts
		o.AuthMethod, o.RoleID, o.SecretIDFile, o.TokenFile = vault.AuthToken, "", "", path
		s, err := vault.Open(bg, o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := srv.Client().Auth().Token().RevokeOrphan(first); err != nil {
			t.Fatal(err)
		}
		mustUnavailable(t, "ready with a revoked token", s.Ready(bg), vault.KindDenied)
		// An agent (or the operator) writes a new token into the file.
		if err := os.WriteFile(path, []byte(mint()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "ready with the new token", func() error { return s.Ready(bg) })
	})

	t.Run("RefusesExportableKeys", func(t *testing.T) {
		f := newFixture(t, srv, "exp", "ecdsa-p256")
		srv.Write("transit/keys/exp-exportable", map[string]any{"type": "ecdsa-p256", "exportable": true})
		o := f.opts
		o.AuthMethod, o.TokenFile = vault.AuthToken, filepath.Join(srv.Dir(), "root-token")
		if err := os.WriteFile(o.TokenFile, []byte(srv.RootToken()), 0o600); err != nil {
			t.Fatal(err)
		}
		o.RoleID, o.SecretIDFile = "", ""
		o.SigningKey = "exp-exportable"
		_, err := vault.Open(bg, o)
		mustUnavailable(t, "open with an exportable key", err, vault.KindConfig)
		if !strings.Contains(err.Error(), "exportable") {
			t.Fatalf("%v", err)
		}
	})

	t.Run("SecretIDFileReadableByOthersIsRefused", func(t *testing.T) {
		f := newFixture(t, srv, "mode", "ecdsa-p256")
		if err := os.Chmod(f.sid, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := vault.Open(bg, f.opts)
		mustUnavailable(t, "open", err, vault.KindConfig)
		if !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("%v", err)
		}
	})

	t.Run("SetupIsRepeatableAndKeepsKeys", func(t *testing.T) {
		f := newFixture(t, srv, "again", "ecdsa-p256")
		s := f.open(t)
		p1, _ := s.Pseudonym(bg, "9990000018")
		res, sid := srv.Setup(f.setup)
		if res.RoleID != f.res.RoleID || res.SecretID == f.res.SecretID {
			t.Fatalf("second setup: role id changed or secret id reused")
		}
		o := f.opts
		o.SecretIDFile = sid
		s2, err := vault.Open(bg, o)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if p2, _ := s2.Pseudonym(bg, "9990000018"); p2 != p1 {
			t.Fatal("setup run again replaced the pseudonym key")
		}
		// A key of the wrong type is never replaced.
		wrong := f.setup
		wrong.SigningKeyType = "ed25519"
		if _, err := vault.Setup(bg, srv.Client(), wrong); err == nil || !strings.Contains(err.Error(), "never replaced") {
			t.Fatalf("setup over a key of another type: %v", err)
		}
	})
}

// syncBuffer is a log sink safe for the store's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func try(c *api.Client, op, path string) error {
	var err error
	switch op {
	case "read":
		_, err = c.Logical().Read(path)
	case "delete":
		_, err = c.Logical().Delete(path)
	default:
		_, err = c.Logical().Write(path, map[string]any{"input": base64.StdEncoding.EncodeToString([]byte("x"))})
	}
	return err
}

func TestVaultSealedMidRun(t *testing.T) {
	srv := vaulttest.Start(t)
	f := newFixture(t, srv, "seal", "ecdsa-p256")
	s := f.open(t)
	p1, err := s.Pseudonym(bg, "9990000018")
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.Sign(bg, []byte("{}"), "")
	if err != nil {
		t.Fatal(err)
	}
	srv.Seal()
	mustUnavailable(t, "ready while sealed", s.Ready(bg), vault.KindSealed)
	_, err = s.Sign(bg, []byte("{}"), "")
	mustUnavailable(t, "sign while sealed", err, vault.KindSealed)
	// Not even a pseudonym the store has seen before.
	_, err = s.Pseudonym(bg, "9990000018")
	mustUnavailable(t, "cached pseudonym while sealed", err, vault.KindSealed)
	_, err = s.Pseudonym(bg, "9990000026")
	mustUnavailable(t, "new pseudonym while sealed", err, vault.KindSealed)

	srv.Unseal()
	took := eventually(t, 30*time.Second, "ready after unseal", func() error { return s.Ready(bg) })
	t.Logf("ready %s after unseal", took.Round(time.Millisecond))
	if p2, err := s.Pseudonym(bg, "9990000018"); err != nil || p2 != p1 {
		t.Fatalf("after unseal: %s %v, want %s", p2, err, p1)
	}
	after, err := s.Sign(bg, []byte("{}"), "")
	if err != nil {
		t.Fatal(err)
	}
	verifies(t, s, before)
	verifies(t, s, after)
}

func TestVaultKilledAndRestarted(t *testing.T) {
	srv := vaulttest.Start(t)
	f := newFixture(t, srv, "kill", "ecdsa-p256")
	f.opts.CheckInterval = 200 * time.Millisecond
	s := f.open(t)
	p1, _ := s.Pseudonym(bg, "9990000018")
	before, _ := s.Sign(bg, []byte("{}"), "")

	srv.Kill()
	mustUnavailable(t, "ready with Vault stopped", s.Ready(bg), vault.KindUnreachable)
	_, err := s.Sign(bg, []byte("{}"), "")
	mustUnavailable(t, "sign with Vault stopped", err, vault.KindUnreachable)
	_, err = s.Pseudonym(bg, "9990000018")
	mustUnavailable(t, "pseudonym with Vault stopped", err, vault.KindUnreachable)

	// A store opened now fails with one clear message.
	_, err = vault.Open(bg, f.opts)
	mustUnavailable(t, "open with Vault stopped", err, vault.KindUnreachable)
	if !strings.Contains(err.Error(), srv.Addr()) {
		t.Fatalf("open error does not name the address: %v", err)
	}

	srv.Restart() // same storage; unsealed by the operator
	took := eventually(t, 30*time.Second, "ready after restart", func() error { return s.Ready(bg) })
	t.Logf("ready %s after restart and unseal", took.Round(time.Millisecond))
	if p2, err := s.Pseudonym(bg, "9990000018"); err != nil || p2 != p1 {
		t.Fatalf("after restart: %s %v, want %s", p2, err, p1)
	}
	after, err := s.Sign(bg, []byte("{}"), "")
	if err != nil {
		t.Fatal(err)
	}
	verifies(t, s, before)
	verifies(t, s, after)
}

func TestVaultHanging(t *testing.T) {
	srv := vaulttest.Start(t)
	f := newFixture(t, srv, "hang", "ecdsa-p256")
	f.opts.Timeout = 300 * time.Millisecond
	s := f.open(t)
	p1, _ := s.Pseudonym(bg, "9990000018")

	srv.Pause() // accepts connections, answers nothing
	defer srv.Resume()
	start := time.Now()
	_, err := s.Sign(bg, []byte("{}"), "")
	mustUnavailable(t, "sign with Vault hanging", err, vault.KindTimeout)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("sign took %s with a 300ms deadline", d)
	}
	start = time.Now()
	mustUnavailable(t, "ready with Vault hanging", s.Ready(bg), vault.KindTimeout)
	_, err = s.Pseudonym(bg, "9990000018")
	mustUnavailable(t, "pseudonym with Vault hanging", err, vault.KindTimeout)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("ready and pseudonym took %s with a 300ms deadline", d)
	}

	srv.Resume()
	eventually(t, 30*time.Second, "ready after Vault answers again", func() error { return s.Ready(bg) })
	if p2, err := s.Pseudonym(bg, "9990000018"); err != nil || p2 != p1 {
		t.Fatalf("after hang: %s %v", p2, err)
	}
}

// TestOpenUnreachable needs no Vault: nothing listens on the port.
func TestOpenUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	sid := filepath.Join(t.TempDir(), "sid")
	os.WriteFile(sid, []byte("x"), 0o600)
	start := time.Now()
	_, err = vault.Open(bg, vault.Options{Address: addr, RoleID: "r", SecretIDFile: sid, Timeout: 500 * time.Millisecond})
	mustUnavailable(t, "open", err, vault.KindUnreachable)
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("message: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("open took %s", time.Since(start))
	}
	t.Logf("message: %v", err)
}

func TestOpenRefusesPlainHTTPOffLoopback(t *testing.T) {
	_, err := vault.Open(bg, vault.Options{Address: "http://vault.example.org:8200", RoleID: "r", SecretIDFile: "x"})
	mustUnavailable(t, "open", err, vault.KindConfig)
	if !strings.Contains(err.Error(), "https") {
		t.Fatalf("%v", err)
	}
}
