package main

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// TestConsoleLink: the printed link carries a token for the console's
// audience that names the agency, practitioner and role; usage errors
// exit 2.
func TestConsoleLink(t *testing.T) {
	dir := t.TempDir()
	if code, out := runCLI(t, "keys", "generate", "--partner", "exley-csc", "--out", dir); code != 0 {
		t.Fatalf("%d %s", code, out)
	}
	key := filepath.Join(dir, "exley-csc.jwk")
	code, out := runCLI(t, "console", "link", "--key", key, "--sub", "auditor-07", "--role", "auditor", "--gateway", "http://127.0.0.1:18080/")
	if code != 0 {
		t.Fatalf("%d %s", code, out)
	}
	u, err := url.Parse(strings.TrimSpace(out))
	if err != nil || u.Scheme+"://"+u.Host+u.Path != "http://127.0.0.1:18080/console/link" {
		t.Fatalf("link %q", out)
	}
	reg, err := registry.Parse(t.Context(), []byte(`id: t
name: T
purposes: [{id: safeguarding, description: s}]
categories: [{id: identity, description: i}]
roles: [{id: auditor, description: a}]
partners:
  - {id: exley-csc, name: Exley CSC, type: local_authority, jwks_file: exley-csc.jwks.json}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	v := identity.NewVerifier(identity.Config{Audience: "trustgate-console", MaxLifetime: time.Hour},
		func() identity.Directory { return reg }, identity.NewMemoryReplayCache(time.Now, 1000))
	c, err := v.Verify(t.Context(), u.Query().Get("t"))
	if err != nil || c.Partner != "exley-csc" || c.Practitioner != "auditor-07" || c.Role != "auditor" {
		t.Fatalf("link token: %+v %v", c, err)
	}
	for _, args := range [][]string{
		{"console", "link", "--sub", "x"},
		{"console", "link", "--key", key},
		{"console", "link", "--key", key, "--sub", "x", "--role", ""},
		{"console", "link", "--key", key, "--sub", "x", "extra"},
	} {
		if code, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}
