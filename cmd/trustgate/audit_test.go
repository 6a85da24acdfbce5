package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// TestAuditCommandsAgainstARunningGateway is the auditor's workflow of
// docs/auditing.md with the real CLI: a snapshot through the running
// gateway, offline verification against a checkpoint kept outside it,
// a child's access report with its proofs checked, an export, and a
// tampered copy named.
func TestAuditCommandsAgainstARunningGateway(t *testing.T) {
	g := startCLIGateway(t)
	dir, base, stop := g.dir, g.base, g.stop
	token := func(partner, role string) string {
		key, _, err := protocol.ReadPrivateKey(filepath.Join(dir, "keys", partner+".jwk"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := identity.Mint(key, identity.MintClaims{Issuer: partner, Subject: "prac-" + role, Role: role, IssuedAt: time.Now(), Lifetime: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	call := func(path, tok string, body string) map[string]any {
		method := http.MethodGet
		if body != "" {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, m)
		}
		return m
	}
	for range 3 {
		call("/v1/decisions", token("exley-csc", "social_worker"), `{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["police_concerns"]}`)
	}
	call("/v1/decisions", token("exley-academy", "teacher"), `{"subject":"9990000018","provider":"riverside-gp","purpose":"safeguarding","categories":["health_summary"]}`)
	call("/v1/decisions", token("exley-csc", "social_worker"), `{"subject":"9990000026","provider":"exley-police","purpose":"safeguarding","categories":["police_concerns"]}`)

	// A checkpoint the witness keeps outside the gateway.
	cp := call("/v1/audit/checkpoints/latest", token("exley-police", "police_officer"), "")["checkpoint"].(map[string]any)
	work := t.TempDir()
	witness := filepath.Join(work, "witness.jws")
	if err := os.WriteFile(witness, []byte(cp["jws"].(string)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Tokens are single-use: a file holds one for one call; --key mints
	// a fresh one per call.
	tokFile := filepath.Join(work, "auditor.token")
	fresh := func() string {
		if err := os.WriteFile(tokFile, []byte(token("exley-csc", "auditor")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return tokFile
	}
	keyFlags := []string{"--gateway", base, "--key", filepath.Join(dir, "keys", "exley-csc.jwk"), "--sub", "auditor-07"}
	jwks := base + "/.well-known/jwks.json"

	// 1. Snapshot through the running gateway (the file is locked).
	snap := filepath.Join(work, "snap.db")
	if code, out := runCLI(t, "audit", "snapshot", "--gateway", base, "--token-file", fresh(), "--out", snap); code != 0 || !strings.Contains(out, "snapshot written") {
		t.Fatalf("snapshot: %d %s", code, out)
	}
	if code, out := runCLI(t, "audit", "verify", "--db", filepath.Join(dir, "data", "audit.db"), "--timeout", "100ms"); code != exitBusy {
		t.Fatalf("verify of the live file: %d %s", code, out)
	}

	// 2. Offline verification against the witness's checkpoint.
	code, out := runCLI(t, "audit", "verify", "--db", snap, "--jwks", jwks, "--checkpoint", witness)
	if code != 0 || !strings.Contains(out, "witness.jws: size") || !strings.Contains(out, "every checkpoint verifies") {
		t.Fatalf("verify: %d %s", code, out)
	}

	// 3. The child's access report, proofs checked by the CLI.
	code, out = runCLI(t, append([]string{"audit", "report", "--subject", "9990000018"}, keyFlags...)...)
	if code != 0 || !strings.Contains(out, "Access report: 4 entries") || !strings.Contains(out, "prac-teacher") || !strings.Contains(out, "no gap") {
		t.Fatalf("report: %d %s", code, out)
	}
	family := filepath.Join(work, "family.json")
	code, out = runCLI(t, "audit", "report", "--subject", "9990000018", "--withhold-practitioners", "--gateway", base, "--token-file", fresh(), "--jwks", jwks, "--out", family)
	if code != 0 || strings.Contains(out, "prac-") || !strings.Contains(out, "exley-academy") || !strings.Contains(out, "withheld") {
		t.Fatalf("family's report: %d %s", code, out)
	}
	if b, err := os.ReadFile(family); err != nil || bytes.Contains(b, []byte("prac-")) || bytes.Contains(b, []byte("9990000018")) {
		t.Fatalf("family's report file names a practitioner or the NHS number (%v)", err)
	}
	if code, out := runCLI(t, "audit", "report", "--subject", "9990000018", "--gateway", base, "--token-file", tokFile); code == 0 || !strings.Contains(out, "already been used") {
		t.Fatalf("a token used twice: %d %s", code, out)
	}
	teacherTok := filepath.Join(work, "teacher.token")
	_ = os.WriteFile(teacherTok, []byte(token("exley-academy", "teacher")), 0o600)
	if code, out := runCLI(t, "audit", "report", "--subject", "9990000018", "--gateway", base, "--token-file", teacherTok); code == 0 || !strings.Contains(out, "403") {
		t.Fatalf("a teacher's report: %d %s", code, out)
	}

	// 3b. The client commands: one fresh token per call from the key, the
	// gateway's answer printed, exit 1 on a refusal.
	code, out = runCLI(t, append([]string{"audit", "entries", "--subject", "9990000018", "--format", "json"}, keyFlags...)...)
	if code != 0 || !strings.Contains(out, `"entries"`) || strings.Count(out, `"seq"`) < 4 {
		t.Fatalf("audit entries: %d %s", code, out)
	}
	code, out = runCLI(t, append([]string{"audit", "stats", "--by", "purpose"}, keyFlags...)...)
	if code != 0 || !strings.Contains(out, `"safeguarding"`) {
		t.Fatalf("audit stats: %d %s", code, out)
	}
	t.Setenv("TRUSTGATE_ADDR", base)
	t.Setenv("TRUSTGATE_KEY", filepath.Join(dir, "keys", "exley-csc.jwk"))
	t.Setenv("TRUSTGATE_SUB", "sw-0042")
	t.Setenv("TRUSTGATE_ROLE", "social_worker")
	for range 2 { // a fresh token each time: the second call is not a replay
		code, out = runCLI(t, "api", "GET", "/v1/policies")
		if code != 0 || !strings.Contains(out, `"protocols_in_force"`) {
			t.Fatalf("api GET /v1/policies: %d %s", code, out)
		}
	}
	code, out = runCLI(t, "api", "POST", "/v1/decisions", `{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["police_concerns"]}`, "--format", "json")
	if code != 0 || !strings.Contains(out, `"allow":true`) {
		t.Fatalf("api POST /v1/decisions: %d %s", code, out)
	}
	code, out = runCLI(t, "api", "POST", "/v1/decisions", `{"subject":"123"}`)
	if code != exitFailure || !strings.Contains(out, "invalid_request") {
		t.Fatalf("api with a bad body: %d %s", code, out)
	}
	code, out = runCLI(t, "consents", "list", "9990000018")
	if code != 0 || !strings.Contains(out, `"consents"`) {
		t.Fatalf("consents list: %d %s", code, out)
	}
	code, out = runCLI(t, "reviews", "list", "--role", "ig_lead", "--sub", "ig-0001", "--status", "open")
	if code != 0 || !strings.Contains(out, `"reviews"`) {
		t.Fatalf("reviews list: %d %s", code, out)
	}
	code, out = runCLI(t, "reviews", "list")
	if code != exitFailure || !strings.Contains(out, "403") {
		t.Fatalf("reviews list as a social worker: %d %s", code, out)
	}

	// 4. Export.
	csvPath := filepath.Join(work, "export.csv")
	if code, out := runCLI(t, "audit", "export", "--db", snap, "--from", "2000-01-01", "--format", "csv", "--out", csvPath); code != 0 {
		t.Fatalf("export: %d %s", code, out)
	}
	f, _ := os.Open(csvPath)
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) < 7 || rows[0][0] != "seq" {
		t.Fatalf("export: %d rows (%v)", len(rows), err)
	}

	// 5. Tampering is named: one byte of entry 2 of a copy.
	bad := filepath.Join(work, "bad.db")
	b, _ := os.ReadFile(snap)
	_ = os.WriteFile(bad, b, 0o600)
	db, err := bolt.Open(bad, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte("entries"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 2}
		v := bytes.Replace(bytes.Clone(bk.Get(k)), []byte("police_concerns"), []byte("police_concernz"), 1)
		return bk.Put(k, v)
	})
	db.Close()
	if code, out := runCLI(t, "audit", "verify", "--db", bad, "--jwks", jwks, "--checkpoint", witness); code != exitFailure || !strings.Contains(out, "entry 2") {
		t.Fatalf("tampered copy: %d %s", code, out)
	}
	// A forged checkpoint file is refused.
	forged := filepath.Join(work, "forged.jws")
	parts := strings.Split(cp["jws"].(string), ".")
	_ = os.WriteFile(forged, []byte(parts[0]+"."+parts[1]+"."+strings.Repeat("A", len(parts[2]))), 0o644)
	if code, out := runCLI(t, "audit", "verify", "--db", snap, "--jwks", jwks, "--checkpoint", forged); code != exitFailure || !strings.Contains(out, "signature does not verify") {
		t.Fatalf("forged checkpoint: %d %s", code, out)
	}

	// 6. Shutdown: the gateway signs a last checkpoint; the stopped log
	// verifies with it.
	stop()
	live := filepath.Join(dir, "data", "audit.db")
	if code, out := runCLI(t, "audit", "verify", "--db", live, "--checkpoint", witness); code != 0 || !strings.Contains(out, "NOT checked") {
		t.Fatalf("stopped gateway's log: %d %s", code, out)
	}
}
