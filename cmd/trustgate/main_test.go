package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/keys"
)

func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(context.Background(), args, &out, &out)
	return code, out.String()
}

func TestProtocolWorkflow(t *testing.T) {
	dir := t.TempDir()
	if code, out := runCLI(t, "demo", "init", "--dir", dir); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	if code, out := runCLI(t, "demo", "init", "--dir", dir, "--if-absent"); code != 0 || !strings.Contains(out, "already prepared") {
		t.Fatalf("demo init --if-absent: %d %s", code, out)
	}
	pdir := filepath.Join(dir, "protocols")
	code, out := runCLI(t, "protocol", "list", "--dir", pdir)
	if code != 0 || !strings.Contains(out, "isp-safeguarding") || !strings.Contains(out, "no signature from exley-district") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if code, out := runCLI(t, "protocol", "verify", filepath.Join(pdir, "safeguarding.yaml")); code != 0 {
		t.Fatalf("verify in-force protocol: %d\n%s", code, out)
	}
	ew := filepath.Join(pdir, "education-welfare.yaml")
	if code, out := runCLI(t, "protocol", "verify", ew); code != exitFailure || !strings.Contains(out, "no signature from exley-district") {
		t.Fatalf("verify unsigned protocol: %d\n%s", code, out)
	}
	// The missing signatory signs: the protocol comes into force.
	if code, out := runCLI(t, "protocol", "sign", "--key", filepath.Join(dir, "keys", "exley-district.jwk"), ew); code != 0 {
		t.Fatalf("sign: %d %s", code, out)
	}
	if code, out := runCLI(t, "protocol", "verify", ew); code != 0 {
		t.Fatalf("verify after signing: %d\n%s", code, out)
	}
	// One changed byte breaks every signature.
	doc, _ := os.ReadFile(ew)
	os.WriteFile(ew, bytes.Replace(doc, []byte("version: \"1\""), []byte("version: \"2\""), 1), 0o644)
	if code, out := runCLI(t, "protocol", "verify", ew); code != exitFailure || !strings.Contains(out, "bad signature") {
		t.Fatalf("verify tampered: %d\n%s", code, out)
	}
}

func TestKeysGenerate(t *testing.T) {
	dir := t.TempDir()
	code, out := runCLI(t, "keys", "generate", "--partner", "new-agency", "--out", dir, "--alg", "EdDSA")
	if code != 0 {
		t.Fatalf("%d %s", code, out)
	}
	st, err := os.Stat(filepath.Join(dir, "new-agency.jwk"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", st, err)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "new-agency.jwks.json"))
	if bytes.Contains(pub, []byte(`"d"`)) || !bytes.Contains(pub, []byte(`"kid"`)) {
		t.Fatalf("public set: %s", pub)
	}
	if code, _ := runCLI(t, "keys", "generate", "--partner", "new-agency", "--out", dir); code == 0 {
		t.Fatal("overwrote a private key")
	}
	if code, _ := runCLI(t, "keys", "generate", "--out", dir); code != exitUsage {
		t.Fatalf("missing --partner: exit %d", code)
	}
	if code, _ := runCLI(t, "keys", "generate", "--partner", "x1", "--alg", "HS256", "--out", dir); code != exitUsage {
		t.Fatalf("HS256: exit %d", code)
	}
}

// TestAuditVerifyNamesTheTamperedEntry writes a real log, verifies it with
// the CLI, changes one byte of one entry, and expects the CLI to fail
// naming that entry.
func TestAuditVerifyNamesTheTamperedEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, _, err := l.Append(context.Background(), &audit.Entry{RequestID: "r", Kind: audit.KindDecision, Requester: "exley-csc", Purpose: "safeguarding", Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if code, out := runCLI(t, "audit", "verify", "--db", path); code != 0 || !strings.Contains(out, "10 entries") {
		t.Fatalf("verify: %d %s", code, out)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 7}
		v := append([]byte(nil), b.Get(k)...)
		i := bytes.Index(v, []byte("safeguarding"))
		v[i] = 'S'
		return b.Put(k, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, "audit", "verify", "--db", path)
	if code != exitFailure || !strings.Contains(out, "entry 7") {
		t.Fatalf("tampered verify: %d %s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _ := runCLI(t, "protocol", "verify"); code != exitUsage {
		t.Fatalf("missing arg: %d", code)
	}
	if code, _ := runCLI(t, "serve", "--no-such-flag"); code != exitUsage {
		t.Fatalf("unknown flag: %d", code)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("listen: 0.0.0.0:9\n"), 0o600)
	if code, out := runCLI(t, "serve", "--config", cfg); code != exitConfig || !strings.Contains(out, "loopback") {
		t.Fatalf("bad config: %d %s", code, out)
	}
}

// TestAuditMigrateCommand carries a format-3 log, which the test writes
// itself, into the current format: the old file is kept read-only beside
// the new log, which verifies; a current log and a damaged old one are
// refused with exit status 1.
func TestAuditMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	k, err := keys.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := k.PublicKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(dir, "jwks.json")
	b, _ := json.Marshal(set)
	if err := os.WriteFile(jwks, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var es []audit.Entry
	for i := range 12 {
		es = append(es, audit.Entry{
			Time: time.Date(2026, 3, 1, 8, i, 0, 0, time.UTC), RequestID: fmt.Sprintf("%024x", i+1), Kind: audit.KindDecision,
			Status: 200, Requester: "exley-csc", Practitioner: "sw-0042", Purpose: "safeguarding", Decision: "allow",
			Protocol: "isp-safeguarding", ProtocolVersion: "3", Rule: "police-to-social-care",
			Reasons: []string{"allowed by isp-safeguarding v3 rule police-to-social-care"}, Subject: fmt.Sprintf("%064x", i%3+1),
		})
	}
	write := func(path string) {
		err := audit.WriteLegacy(context.Background(), path, audit.LegacyFile{
			Version: 3, Entries: es, CheckpointAt: []uint64{5, 10}, Signer: k, LogID: "trustgate", Time: time.Now().UTC(),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "audit.db")
	write(path)
	// A log of a format this binary does not verify is an input the
	// check rejects (exit 1), not an internal error.
	if code, out := runCLI(t, "audit", "verify", "--db", path); code != exitFailure || !strings.Contains(out, "unsupported audit log format version") {
		t.Fatalf("verify of a format-3 log: exit %d: %s", code, out)
	}
	keep := filepath.Join(dir, "copy-3.db")
	if b, err := os.ReadFile(path); err != nil || os.WriteFile(keep, b, 0o600) != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, "audit", "migrate", "--db", path, "--jwks", jwks)
	if code != 0 || !strings.Contains(out, "12 entries") || !strings.Contains(out, "checkpoints 2 matched") {
		t.Fatalf("migrate: %d %s", code, out)
	}
	// --format json: the migration's figures, for a program.
	code, stdout, stderr := runJSON(t, "audit", "migrate", "--db", keep, "--jwks", jwks, "--format", "json")
	var ans struct {
		OldFile   string              `json:"old_file"`
		Migration audit.MigrateReport `json:"migration"`
	}
	if code != 0 || json.Unmarshal(stdout, &ans) != nil || ans.Migration.Entries != 12 || ans.OldFile != keep+".format-3" {
		t.Fatalf("migrate --format json: %d %s %s", code, stdout, stderr)
	}
	st, err := os.Stat(path + ".format-3")
	if err != nil || st.Mode().Perm() != 0o444 {
		t.Fatalf("old file kept: %v %v", st, err)
	}
	if code, out := runCLI(t, "audit", "verify", "--db", path); code != 0 || !strings.Contains(out, "13 entries") {
		t.Fatalf("verify of the migrated log: %d %s", code, out)
	}
	if code, out := runCLI(t, "audit", "migrate", "--db", path); code != exitFailure || !strings.Contains(out, "nothing to migrate") {
		t.Fatalf("migrate of a current log: %d %s", code, out)
	}
	// A damaged old log is refused and left as it was.
	bad := filepath.Join(dir, "bad.db")
	write(bad)
	db, err := bolt.Open(bad, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 4}
		return b.Put(k, bytes.Replace(append([]byte(nil), b.Get(k)...), []byte(`"st":200`), []byte(`"st":201`), 1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI(t, "audit", "migrate", "--db", bad); code != exitFailure || !strings.Contains(out, "entry 4") {
		t.Fatalf("migrate of a damaged log: %d %s", code, out)
	}
	if _, err := os.Stat(bad + ".format-3"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed migration moved the old file")
	}
}

// TestConfigEnvironmentAndSet: the commands that read the config take each
// key from its TRUSTGATE_… variable and from --set, --set winning, and a
// bad value from either is a bad config (exit 3) naming it.
func TestConfigEnvironmentAndSet(t *testing.T) {
	t.Setenv("TRUSTGATE_KEYS_VAULT_MOUNT", "from-env")
	if code, out := runCLI(t, "vault", "policy"); code != 0 || !strings.Contains(out, `path "from-env/sign/`) {
		t.Fatalf("vault policy with TRUSTGATE_KEYS_VAULT_MOUNT: %d %s", code, out)
	}
	if code, out := runCLI(t, "vault", "policy", "--set", "keys.vault.mount=from-set"); code != 0 || !strings.Contains(out, `path "from-set/sign/`) || strings.Contains(out, "from-env") {
		t.Fatalf("vault policy --set: %d %s", code, out)
	}
	t.Setenv("TRUSTGATE_KEYS_VAULT_MOUNT", "")
	t.Setenv("TRUSTGATE_HTTP_READ_TIMEOUT", "soon")
	dir := t.TempDir()
	if code, out := runCLI(t, "demo", "init", "--dir", dir); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	for _, args := range [][]string{{"serve"}, {"demo", "run", "--dir", dir}, {"vault", "policy"}, {"vault", "setup"}} {
		if code, out := runCLI(t, args...); code != exitConfig || !strings.Contains(out, "TRUSTGATE_HTTP_READ_TIMEOUT") {
			t.Errorf("trustgate %s with a bad TRUSTGATE_HTTP_READ_TIMEOUT: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	t.Setenv("TRUSTGATE_HTTP_READ_TIMEOUT", "")
	if code, out := runCLI(t, "demo", "run", "--dir", dir, "--set", "listen=0.0.0.0:9"); code != exitConfig || !strings.Contains(out, "loopback") {
		t.Errorf("demo run --set listen=0.0.0.0:9: exit %d\n%s", code, out)
	}
}
