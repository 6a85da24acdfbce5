// Package keystest is the conformance suite every keys.Store implementation
// must pass: the local store and the Vault store run the same tests.
package keystest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jws"
	"golang.org/x/mod/sumdb/note"

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

	t.Run("SignConcurrentAllVerify", func(t *testing.T) {
		s := open(t)
		set, err := s.PublicKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		const n = 64
		toks := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				toks[i], errs[i] = s.Sign(ctx, []byte(fmt.Sprintf(`{"n":%d}`, i)), "")
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("sign %d: %v", i, errs[i])
			}
			got, err := jws.Verify([]byte(toks[i]), jws.WithKeySet(set, jws.WithRequireKid(true)))
			if err != nil || string(got) != fmt.Sprintf(`{"n":%d}`, i) {
				t.Fatalf("signature %d: payload %q, err %v", i, got, err)
			}
		}
	})

	t.Run("PublicKeysNameTheirAlgorithmAndKid", func(t *testing.T) {
		s := open(t)
		set, err := s.PublicKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if set.Len() == 0 {
			t.Fatal("no public keys")
		}
		tok, err := s.Sign(ctx, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		msg, err := jws.Parse([]byte(tok))
		if err != nil {
			t.Fatal(err)
		}
		h := msg.Signatures()[0].ProtectedHeaders()
		k, ok := set.LookupKeyID(h.KeyID())
		if !ok {
			t.Fatalf("kid %q is not among the public keys", h.KeyID())
		}
		if k.Algorithm().String() != h.Algorithm().String() {
			t.Fatalf("header alg %s, key alg %s", h.Algorithm(), k.Algorithm())
		}
		if a := h.Algorithm().String(); a != "ES256" && a != "EdDSA" {
			t.Fatalf("alg %s is not ES256 or EdDSA", a)
		}
	})

	t.Run("PseudonymsOfManySubjectsConcurrently", func(t *testing.T) {
		s := open(t)
		const n = 200
		got := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = s.Pseudonym(ctx, fmt.Sprintf("999%07d", i))
			}()
		}
		wg.Wait()
		seen := map[string]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("pseudonym %d: %v", i, errs[i])
			}
			if seen[got[i]] {
				t.Fatalf("two subjects share pseudonym %s", got[i])
			}
			seen[got[i]] = true
		}
		// Each answer is the subject's own: asked again, one at a time.
		for _, i := range []int{0, 17, 199} {
			again, err := s.Pseudonym(ctx, fmt.Sprintf("999%07d", i))
			if err != nil || again != got[i] {
				t.Fatalf("subject %d: concurrent %s, alone %s (%v)", i, got[i], again, err)
			}
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
		if _, err := s.Pseudonym(cctx, "9990000018"); !errors.Is(err, keys.ErrUnavailable) {
			t.Fatalf("pseudonym with a cancelled context: %v, want keys.ErrUnavailable", err)
		}
		if _, err := s.Sign(cctx, []byte("x"), ""); !errors.Is(err, keys.ErrUnavailable) {
			t.Fatalf("sign with a cancelled context: %v, want keys.ErrUnavailable", err)
		}
	})

	t.Run("NoteSignatureVerifiesWithTheNoteVerifier", func(t *testing.T) {
		s := open(t)
		pub, err := s.NoteKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		vkey, err := note.NewEd25519VerifierKey("trustgate.test/log", pub)
		if err != nil {
			t.Fatal(err)
		}
		v, err := note.NewVerifier(vkey)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("trustgate.test/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
		sig, err := s.SignNote(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Verify(msg, sig) {
			t.Fatal("the note signature does not verify with x/mod's note verifier")
		}
		if v.Verify([]byte("trustgate.test/log\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), sig) {
			t.Fatal("the note signature verifies another note")
		}
		again, err := s.SignNote(ctx, msg)
		if err != nil || string(again) != string(sig) {
			t.Fatalf("Ed25519 signing is deterministic: the same note got another signature (%v)", err)
		}
		if reopen != nil {
			pub2, err := reopen(t).NoteKey(ctx)
			if err != nil || !pub2.Equal(pub) {
				t.Fatalf("the note key changed across a restart (%v)", err)
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.SignNote(cctx, msg); !errors.Is(err, keys.ErrUnavailable) {
			t.Fatalf("sign note with a cancelled context: %v, want keys.ErrUnavailable", err)
		}
	})

	t.Run("Ready", func(t *testing.T) {
		if err := open(t).Ready(ctx); err != nil {
			t.Fatalf("ready: %v", err)
		}
	})
}
