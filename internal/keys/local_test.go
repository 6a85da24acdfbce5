package keys_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/keys/keystest"
)

func TestLocalConformance(t *testing.T) {
	var dir string
	open := func(t *testing.T) keys.Store {
		dir = t.TempDir()
		s, err := keys.OpenLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	reopen := func(t *testing.T) keys.Store {
		s, err := keys.OpenLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	keystest.Run(t, open, reopen)
}

func TestLocalFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := keys.OpenLocal(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"pseudonym.key", "signing.jwk"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	// A key file others can read is refused.
	if err := os.Chmod(filepath.Join(dir, "pseudonym.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.OpenLocal(dir); err == nil {
		t.Fatal("opened a store whose key file is world-readable")
	}
}
