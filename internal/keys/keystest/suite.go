// Package keystest is the conformance suite every keys.Store implementation
// must pass: the local store and the Vault store run the same tests.
package keystest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/keys"
)

// Run runs the suite. open returns a store; reopen returns a second store
// over the same keys (a restart), or nil if the implementation has none.
func Run(t *testing.T, open func(t *testing.T) keys.Store, reopen func(t *testing.T) keys.Store) {
	t.Helper()
	ctx := context.Background()

	t.Run("PseudonymIsStableKeyedAndDistinct", func(t *testing.T) {
		s := open(t)
		a1, err := s.Pseudonym(ctx, "9990000018")
		if err != nil {
			t.Fatal(err)
		}
		a2, _ := s.Pseudonym(ctx, "9990000018")
		b, _ := s.Pseudonym(ctx, "9990000026")
		if a1 != a2 {
			t.Fatalf("pseudonym not stable: %s vs %s", a1, a2)
		}
		if a1 == b {
			t.Fatal("two subjects share a pseudonym")
		}
		if len(a1) != 64 {
			t.Fatalf("pseudonym %q is not 64 hex chars", a1)
		}
		if _, err := hex.DecodeString(a1); err != nil {
			t.Fatalf("pseudonym not hex: %v", err)
		}
		plain := sha256.Sum256([]byte("9990000018"))
		if a1 == hex.EncodeToString(plain[:]) || strings.Contains(a1, "9990000018") {
			t.Fatal("pseudonym is an unkeyed hash or holds the number in clear")
		}
		if reopen != nil {
			r := reopen(t)
			a3, err := r.Pseudonym(ctx, "9990000018")
			if err != nil {
				t.Fatal(err)
			}
			if a3 != a1 {
				t.Fatal("pseudonym changed across a restart")
			}
		}
	})

	t.Run("PseudonymConcurrent", func(t *testing.T) {
		s := open(t)
		want, _ := s.Pseudonym(ctx, "9990000034")
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := s.Pseudonym(ctx, "9990000034")
				if err != nil || got != want {
					errs <- errors.New("concurrent pseudonym differs or failed")
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("SignVerifiesAgainstPublicKeys", func(t *testing.T) {
		s := open(t)
		payload := []byte(`{"hello":"trust"}`)
		tok, err := s.Sign(ctx, payload, "trustgate-test+jws")
		if err != nil {
			t.Fatal(err)
		}
		set, err := s.PublicKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := jws.Verify([]byte(tok), jws.WithKeySet(set, jws.WithRequireKid(true)))
		if err != nil {
			t.Fatalf("signature does not verify against the published keys: %v", err)
		}
		if string(got) != string(payload) {
			t.Fatalf("payload %q", got)
		}
		msg, err := jws.Parse([]byte(tok))
		if err != nil {
			t.Fatal(err)
		}
		h := msg.Signatures()[0].ProtectedHeaders()
		if h.Type() != "trustgate-test+jws" || h.KeyID() == "" {
			t.Fatalf("header typ=%q kid=%q", h.Type(), h.KeyID())
		}
		for i := 0; i < set.Len(); i++ {
			k, _ := set.Key(i)
			if _, priv := k.(interface{ D() []byte }); priv {
				t.Fatal("public key set holds private material")
			}
		}
		// A tampered payload must not verify.
		parts := strings.Split(tok, ".")
		parts[1] = parts[1][:len(parts[1])-2] + "xx"
		if _, err := jws.Verify([]byte(strings.Join(parts, ".")), jws.WithKeySet(set)); err == nil {
			t.Fatal("tampered JWS verified")
		}
	})

	t.Run("CancelledContextFailsClosed", func(t *testing.T) {
		s := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Pseudonym(cctx, "9990000018"); err == nil {
			t.Fatal("pseudonym with a cancelled context succeeded")
		}
		if _, err := s.Sign(cctx, []byte("x"), ""); err == nil {
			t.Fatal("sign with a cancelled context succeeded")
		}
	})

	t.Run("Ready", func(t *testing.T) {
		if err := open(t).Ready(ctx); err != nil {
			t.Fatalf("ready: %v", err)
		}
	})
}
