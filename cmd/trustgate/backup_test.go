package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupOfARunningGatewayRestores: `trustgate backup` copies a running
// gateway's data directory while it serves (each copy checked); a gateway
// started on the copy has the consent recorded before the backup and an
// audit log that verifies, and the original's later entries are not in it.
func TestBackupOfARunningGatewayRestores(t *testing.T) {
	g := startCLIGateway(t)
	t.Setenv(envAddr, g.base)
	t.Setenv(envKey, filepath.Join(g.dir, "keys", "exley-csc.jwk"))
	t.Setenv(envSub, "sw-0042")
	t.Setenv(envRole, "social_worker")
	consent := `{"subject":"9990000026","outcome":"given","given_by":"parent","purposes":["early_help"],"categories":["identity"],"recipients":{"partners":["exley-csc"]},"valid_until":"2099-01-01T00:00:00Z","obtained":"written","evidence_ref":"B-1"}`
	if code, out := runCLI(t, "consents", "record", consent); code != 0 {
		t.Fatalf("consents record: %d %s", code, out)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	if code, out := runCLI(t, "backup", "--out", backup, "--sub", "sw-0042"); code != exitFailure || !strings.Contains(out, "403") {
		t.Fatalf("a social worker's backup: %d %s", code, out)
	}
	// The backup is taken while requests keep coming.
	busy, stopBusy := make(chan int), make(chan struct{})
	go func() {
		n := 0
		defer func() { busy <- n }()
		for {
			select {
			case <-stopBusy:
				return
			default:
			}
			var out bytes.Buffer
			if run(context.Background(), []string{"api", "POST", "/v1/decisions", `{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["police_concerns"]}`}, &out, &out) == 0 {
				n++
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	code, out := runCLI(t, "backup", "--out", backup, "--sub", "auditor-07", "--role", "auditor")
	close(stopBusy)
	if n := <-busy; n == 0 {
		t.Error("no request was answered while the backup was taken")
	}
	if code != 0 || !strings.Contains(out, "audit.db") || !strings.Contains(out, "verified: ") || strings.Count(out, "pages checked") != 4 {
		t.Fatalf("backup: %d %s", code, out)
	}
	if code, out := runCLI(t, "backup", "--out", backup, "--sub", "auditor-07", "--role", "auditor"); code != exitFailure || !strings.Contains(out, "existing path") {
		t.Fatalf("a backup over an existing one: %d %s", code, out)
	}
	// The original goes on: one more consent after the backup.
	if code, out := runCLI(t, "consents", "record", strings.Replace(consent, "B-1", "B-2", 1)); code != 0 {
		t.Fatalf("consents record: %d %s", code, out)
	}
	g.stop()

	// Restore: the copies in a data directory of their own (with the
	// local keys, backed up apart), a gateway on it.
	data := t.TempDir()
	for _, f := range []string{"state.db", "outbox.db", "index.db", "witness.db", "audit.db"} {
		b, err := os.ReadFile(filepath.Join(backup, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(data, f), b, 0o600)
	}
	keys, _ := filepath.Glob(filepath.Join(g.dir, "data", "keys", "*"))
	os.Mkdir(filepath.Join(data, "keys"), 0o700)
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(data, "keys", filepath.Base(k)), b, 0o600)
	}
	if len(keys) == 0 {
		t.Fatal("no local keys to restore")
	}
	if code, out := runCLI(t, "audit", "verify", "--db", filepath.Join(data, "audit.db")); code != 0 {
		t.Fatalf("verify the restored log: %d %s", code, out)
	}
	runGateway(t, g.base, "serve", "--config", filepath.Join(g.dir, "trustgate.yaml"), "--set", "data_dir="+data)
	code, out = runCLI(t, "consents", "list", "9990000026")
	if code != 0 || !strings.Contains(out, "B-1") || strings.Contains(out, "B-2") {
		t.Fatalf("the restored consents: %d %s", code, out)
	}
}
