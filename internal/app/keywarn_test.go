package app

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/childrens-trust/trustgate/internal/config"
)

func TestWarnCheckpointKeyOutsideTheDemo(t *testing.T) {
	demo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(demo, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(demo, "keys", "exley-csc.jwk"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	prod := t.TempDir()
	for _, c := range []struct {
		name    string
		backend string
		dir     string
		warn    bool
	}{
		{"demo dir, local keys", "local", demo, false},
		{"own registry, local keys", "local", prod, true},
		{"own registry, vault", "vault", prod, false},
	} {
		cfg := config.Default()
		cfg.Keys.Backend = c.backend
		cfg.DataDir = filepath.Join(c.dir, "data")
		cfg.ProtocolsDir = filepath.Join(c.dir, "protocols")
		var buf bytes.Buffer
		warnCheckpointKey(cfg, slog.New(slog.NewTextHandler(&buf, nil)))
		if got := strings.Contains(buf.String(), "checkpoint signing key is kept beside the audit log"); got != c.warn {
			t.Errorf("%s: warned %v, want %v (%s)", c.name, got, c.warn, buf.String())
		}
	}
}
