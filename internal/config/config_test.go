package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOverridesAndResolvesPaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tg.yaml")
	os.WriteFile(p, []byte("listen: 127.0.0.1:9999\ndata_dir: d\nauth:\n  max_token_lifetime: 2m\n"), 0o600)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9999" || c.DataDir != filepath.Join(dir, "d") || c.Auth.MaxTokenLifetime.Duration != 2*time.Minute {
		t.Fatalf("got %+v", c)
	}
	if c.Auth.ClockSkew.Duration != time.Minute {
		t.Fatal("default lost")
	}
}

func TestLoadRejectsUnknownKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tg.yaml")
	os.WriteFile(p, []byte("listne: 127.0.0.1:1\n"), 0o600)
	if _, err := Load(p); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "listne") {
		t.Fatalf("err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	cases := map[string]func(*Config){
		"listen":                  func(c *Config) { c.Listen = "0.0.0.0:8080" },
		"tls":                     func(c *Config) { c.TLS.CertFile = "x" },
		"auth.max_token_bytes":    func(c *Config) { c.Auth.MaxTokenBytes = 10 },
		"keys.backend":            func(c *Config) { c.Keys.Backend = "hsm" },
		"http.max_body_bytes":     func(c *Config) { c.HTTP.MaxBodyBytes = 10 << 20 },
		"log.level":               func(c *Config) { c.Log.Level = "loud" },
		"http.read_timeout":       func(c *Config) { c.HTTP.ReadTimeout = Duration{} },
		"auth.max_token_lifetime": func(c *Config) { c.Auth.MaxTokenLifetime = Duration{2 * time.Hour} },
		"runtime.gc_percent":      func(c *Config) { c.Runtime.GCPercent = 0 },
		"policy.decision_memo":    func(c *Config) { c.Policy.DecisionMemo = -1 },
		"audit.commit_delay":      func(c *Config) { c.Audit.CommitDelay = Duration{-time.Millisecond} },
	}
	for field, mut := range cases {
		c := Default()
		mut(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
	}
	c := Default()
	c.Listen = "0.0.0.0:8443"
	c.TLS = TLS{CertFile: "a", KeyFile: "b"}
	if err := c.Validate(); err != nil {
		t.Fatalf("TLS on a public address should validate: %v", err)
	}
}
