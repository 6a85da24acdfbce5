package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/registry"
)

// Local is the embedded default Store: keys in files under a directory,
// created on first use with mode 0600 (the directory 0700).
//
//	DIR/pseudonym.key   32 random bytes, hex
//	DIR/signing.jwk     the gateway's ES256 private JWK
//	DIR/note.key        the Ed25519 note key's 32-byte seed, hex
type Local struct {
	dir     string
	hmacKey []byte
	signKey jwk.Key
	pub     jwk.Set
	noteKey ed25519.PrivateKey
	pool    sync.Pool
}

var _ Store = (*Local)(nil)

// OpenLocal opens (creating if absent) the local key store in dir.
func OpenLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: create %s: %w", dir, err)
	}
	l := &Local{dir: dir}
	hk, err := loadOrCreate(filepath.Join(dir, "pseudonym.key"), func() ([]byte, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(b) + "\n"), nil
	})
	if err != nil {
		return nil, err
	}
	l.hmacKey, err = hex.DecodeString(string(trimNL(hk)))
	if err != nil || len(l.hmacKey) < 32 {
		return nil, fmt.Errorf("keys: %s is not 32 hex-encoded bytes", filepath.Join(dir, "pseudonym.key"))
	}
	sk, err := loadOrCreate(filepath.Join(dir, "signing.jwk"), func() ([]byte, error) {
		priv, _, err := registry.GenerateKey("trustgate", jwa.ES256)
		if err != nil {
			return nil, err
		}
		return jsonIndent(priv)
	})
	if err != nil {
		return nil, err
	}
	l.signKey, err = jwk.ParseKey(sk)
	if err != nil {
		return nil, fmt.Errorf("keys: parse signing.jwk: %w", err)
	}
	pk, err := l.signKey.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("keys: signing key: %w", err)
	}
	l.pub = jwk.NewSet()
	if err := l.pub.AddKey(pk); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	nk, err := loadOrCreate(filepath.Join(dir, "note.key"), func() ([]byte, error) {
		b := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(b) + "\n"), nil
	})
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(string(trimNL(nk)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("keys: %s is not a 32-byte Ed25519 seed in hex", filepath.Join(dir, "note.key"))
	}
	l.noteKey = ed25519.NewKeyFromSeed(seed)
	l.pool.New = func() any { return hmac.New(sha256.New, l.hmacKey) }
	return l, nil
}

func loadOrCreate(path string, gen func() ([]byte, error)) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		st, serr := os.Stat(path)
		if serr == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("keys: %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keys: read %s: %w", path, err)
	}
	b, err = gen()
	if err != nil {
		return nil, fmt.Errorf("keys: generate %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keys: create %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("keys: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("keys: sync %s: %w", path, err)
	}
	return b, f.Close()
}

// Pseudonym implements Pseudonymizer.
func (l *Local) Pseudonym(ctx context.Context, subject string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("keys: pseudonym: %w: %w", ErrUnavailable, err)
	}
	h := l.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(subject))
	var buf [sha256.Size]byte
	sum := h.Sum(buf[:0])
	l.pool.Put(h)
	return hex.EncodeToString(sum), nil
}

// Sign implements Signer.
func (l *Local) Sign(ctx context.Context, payload []byte, typ string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("keys: sign: %w: %w", ErrUnavailable, err)
	}
	hdr := jws.NewHeaders()
	if typ != "" {
		if err := hdr.Set(jws.TypeKey, typ); err != nil {
			return "", fmt.Errorf("keys: sign: %w", err)
		}
	}
	if err := hdr.Set(jws.KeyIDKey, l.signKey.KeyID()); err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256, l.signKey, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	return string(out), nil
}

// PublicKeys implements Signer.
func (l *Local) PublicKeys(ctx context.Context) (jwk.Set, error) { return l.pub, nil }

// NoteKey implements NoteSigner.
func (l *Local) NoteKey(ctx context.Context) (ed25519.PublicKey, error) {
	return l.noteKey.Public().(ed25519.PublicKey), nil
}

// SignNote implements NoteSigner.
func (l *Local) SignNote(ctx context.Context, msg []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("keys: sign note: %w: %w", ErrUnavailable, err)
	}
	return ed25519.Sign(l.noteKey, msg), nil
}

// Ready implements Store: the local store is ready once opened.
func (l *Local) Ready(ctx context.Context) error { return nil }

// Close implements Store.
func (l *Local) Close() error { return nil }

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
