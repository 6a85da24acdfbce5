package protocol

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// SignFile signs the protocol file at path as partner and writes
// path+".jws", keeping the other partners' signatures (see Sign). When
// partner is empty it is taken from the key's kid (PartnerFromKeyID). The
// signature file is replaced atomically (a temporary file in the same
// directory, synced, then renamed) with mode 0644.
func SignFile(path string, key jwk.Key, partner string) error {
	if partner == "" && key != nil {
		var ok bool
		if partner, ok = PartnerFromKeyID(key.KeyID()); !ok {
			return fmt.Errorf("sign %s: %w: kid %q does not name a partner; give the partner explicitly", path, ErrKey, key.KeyID())
		}
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	sigPath := path + SignatureSuffix
	existing, err := os.ReadFile(sigPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sign: %w", err)
	}
	out, err := Sign(doc, existing, key, partner)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WriteAtomic(sigPath, out, 0o644)
}

// WriteAtomic replaces path with data (a temporary file in the same
// directory, synced, then renamed) with the given mode.
func WriteAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadPrivateKey reads an agency's private signing key: a JWK file as
// written by `trustgate keys generate` (a single JWK, or a JWK Set holding
// exactly one key). partnerID is taken from the kid
// ("<partner>-<thumbprint>", see registry.GenerateKey); it is empty when the
// kid does not follow that convention, and the caller must then name the
// partner (a --partner flag). A flag, when given, always wins over the kid.
// A public key, or a key without kid, is an ErrKey error.
func ReadPrivateKey(path string) (key jwk.Key, partnerID string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read key: %w", err)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		return nil, "", fmt.Errorf("read key %s: %w: %v", path, ErrKey, err)
	}
	if set.Len() != 1 {
		return nil, "", fmt.Errorf("read key %s: %w: the file holds %d keys, want exactly one", path, ErrKey, set.Len())
	}
	key, _ = set.Key(0)
	if _, err := signingAlgorithm(key); err != nil {
		return nil, "", fmt.Errorf("read key %s: %w", path, err)
	}
	partnerID, _ = PartnerFromKeyID(key.KeyID())
	return key, partnerID, nil
}
