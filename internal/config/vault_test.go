package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVaultSection(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tg.yaml")
	os.WriteFile(p, []byte(`keys:
  backend: vault
  vault:
    role_id: r-1
    secret_id_file: secrets/sid
    batch_window: 2ms
`), 0o600)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	v := c.Keys.Vault
	if v.SecretIDFile != filepath.Join(dir, "secrets/sid") || v.BatchWindow.Duration != 2*time.Millisecond {
		t.Fatalf("got %+v", v)
	}
	// What was not given keeps its default.
	if v.Mount != "transit" || v.SigningKey != "trustgate-signing" || v.PseudonymKeyVersion != 1 || v.AuthMethod != "approle" || v.PseudonymCacheSize != 100_000 {
		t.Fatalf("defaults lost: %+v", v)
	}

	cases := map[string]func(*VaultOptions){
		"keys.vault.role_id":               func(v *VaultOptions) { v.RoleID = "" },
		"keys.vault.secret_id_file":        func(v *VaultOptions) { v.SecretIDFile = "" },
		"keys.vault.auth_method":           func(v *VaultOptions) { v.AuthMethod = "userpass" },
		"keys.vault.pseudonym_key_version": func(v *VaultOptions) { v.PseudonymKeyVersion = 0 },
		"keys.vault.signing_key":           func(v *VaultOptions) { v.SigningKey = "a/b" },
		"keys.vault.mount":                 func(v *VaultOptions) { v.Mount = "/transit" },
		"keys.vault.pseudonym_key":         func(v *VaultOptions) { v.PseudonymKey = v.SigningKey },
		"keys.vault.batch_window":          func(v *VaultOptions) { v.BatchWindow = Duration{time.Second} },
		"keys.vault.batch_max":             func(v *VaultOptions) { v.BatchMax = 0 },
		"keys.vault.check_interval":        func(v *VaultOptions) { v.CheckInterval = Duration{} },
	}
	for field, mut := range cases {
		c := c
		mut(&c.Keys.Vault)
		err := c.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
	}
	// The token method needs neither role nor secret id file.
	tok := c
	tok.Keys.Vault.AuthMethod, tok.Keys.Vault.RoleID, tok.Keys.Vault.SecretIDFile = "token", "", ""
	if err := tok.Validate(); err != nil {
		t.Fatal(err)
	}
	// The local backend ignores the section.
	local := Default()
	local.Keys.Vault = VaultOptions{}
	if err := local.Validate(); err != nil {
		t.Fatal(err)
	}
}
