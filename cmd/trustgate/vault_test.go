package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/childrens-trust/trustgate/internal/keys/vault"
	"github.com/childrens-trust/trustgate/internal/keys/vault/vaulttest"
)

func TestVaultSetupCommand(t *testing.T) {
	srv := vaulttest.Start(t)
	t.Setenv("VAULT_ADDR", srv.Addr())
	t.Setenv("VAULT_TOKEN", srv.RootToken())
	t.Setenv("HOME", t.TempDir())

	sid := filepath.Join(t.TempDir(), "secret-id")
	code, out := runCLI(t, "vault", "setup", "--secret-id-file", sid)
	if code != 0 {
		t.Fatalf("vault setup: %d\n%s", code, out)
	}
	for _, want := range []string{"transit secrets engine enabled at transit/", "key trustgate-signing (ecdsa-p256) created",
		"key trustgate-pseudonym (hmac) created", "policy trustgate-gateway written", "role_id: ", "secret id written to " + sid} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	secret, err := os.ReadFile(sid)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, strings.TrimSpace(string(secret))) {
		t.Fatal("the secret id was printed although it went to a file")
	}
	if st, _ := os.Stat(sid); st.Mode().Perm() != 0o600 {
		t.Fatalf("secret id file mode %v", st.Mode().Perm())
	}
	roleID := regexp.MustCompile(`role_id: (\S+)`).FindStringSubmatch(out)[1]

	// What it printed is enough for a gateway to open its keys.
	s, err := vault.Open(context.Background(), vault.Options{Address: srv.Addr(), RoleID: roleID, SecretIDFile: sid})
	if err != nil {
		t.Fatalf("open with the handed-over credentials: %v", err)
	}
	defer s.Close()
	if _, err := s.Sign(context.Background(), []byte("{}"), ""); err != nil {
		t.Fatal(err)
	}

	// Again: the keys are kept, a new secret id is printed.
	code, out = runCLI(t, "vault", "setup")
	if code != 0 || !strings.Contains(out, "key trustgate-signing (ecdsa-p256) already exists") || !strings.Contains(out, "secret id (hand over separately") {
		t.Fatalf("second run: %d\n%s", code, out)
	}

	// --format json: the same, for a program.
	code, stdout, stderr := runJSON(t, "vault", "setup", "--format", "json")
	var ans map[string]any
	if code != 0 || json.Unmarshal(stdout, &ans) != nil || ans["role_id"] != roleID || ans["secret_id"] == "" || ans["steps"] == nil {
		t.Fatalf("vault setup --format json: %d %s %s", code, stdout, stderr)
	}

	code, out = runCLI(t, "vault", "policy")
	if code != 0 || !strings.Contains(out, `path "transit/sign/trustgate-signing"`) || strings.Contains(out, "transit/export") {
		t.Fatalf("vault policy: %d\n%s", code, out)
	}

	t.Setenv("VAULT_TOKEN", "")
	if code, out := runCLI(t, "vault", "setup"); code != exitUsage || !strings.Contains(out, "no Vault token") {
		t.Fatalf("without a token: %d %s", code, out)
	}
}
