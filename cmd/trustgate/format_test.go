package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// notResults are the commands that run until stopped instead of printing
// a result; every other command takes --format text|json.
var notResults = []string{"serve", "demo run", "provider"}

// formatElsewhere are the commands whose --format json another test runs,
// where what they need is at hand (a real Vault; a log of an old format).
var formatElsewhere = map[string]string{
	"vault setup":   "TestVaultSetupCommand",
	"audit migrate": "TestAuditMigrateCommand",
}

// leafCommands lists every runnable command of the tree by its path.
func leafCommands() map[string]*cobra.Command {
	cmds := map[string]*cobra.Command{}
	var walk func(c *cobra.Command, path string)
	walk = func(c *cobra.Command, path string) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			p := strings.TrimSpace(path + " " + sub.Name())
			if sub.HasSubCommands() {
				walk(sub, p)
				continue
			}
			cmds[p] = sub
		}
	}
	walk(rootCommand(), "")
	return cmds
}

// runJSON runs a command and returns its exit code, standard output and
// standard error apart.
func runJSON(t *testing.T, args ...string) (int, []byte, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.Bytes(), errb.String()
}

// TestEveryCommandPrintsJSON: every command that prints a result takes the
// shared --format flag, and with --format json prints one JSON document
// (JSON lines for audit export) holding its result — each command run
// here, against a demo gateway where it needs one.
func TestEveryCommandPrintsJSON(t *testing.T) {
	g := startCLIGateway(t)
	dir, work := g.dir, t.TempDir()
	keys := filepath.Join(dir, "keys")
	protos := filepath.Join(dir, "protocols")
	t.Setenv(envAddr, g.base)
	t.Setenv(envKey, filepath.Join(keys, "exley-csc.jwk"))
	t.Setenv(envSub, "sw-0042")
	t.Setenv(envRole, "social_worker")
	t.Setenv(envToken, "")

	// Copies to sign and withdraw, apart from the gateway's files.
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	side := filepath.Join(work, "protocols")
	os.MkdirAll(filepath.Join(side, "appointments"), 0o755)
	copyFile(filepath.Join(protos, "trust.yaml"), filepath.Join(side, "trust.yaml"))
	copyFile(filepath.Join(protos, "safeguarding.yaml"), filepath.Join(side, "safeguarding.yaml"))
	copyFile(filepath.Join(protos, "safeguarding.yaml.jws"), filepath.Join(side, "safeguarding.yaml.jws"))
	appt := filepath.Join(side, "appointments", "appt-csc-ig-1.yaml")
	copyFile(filepath.Join(protos, "appointments", "appt-csc-ig-1.yaml"), appt)
	snap := filepath.Join(work, "snap.db")
	policiesDir := filepath.Join(work, "policies")

	type step struct {
		path string   // the command
		args []string // its arguments, --format json added
		has  string   // a key the JSON answer holds
	}
	steps := []step{
		{"version", nil, "module"},
		{"demo init", []string{"--dir", filepath.Join(work, "demo2"), "--listen", "127.0.0.1:1"}, "config"},
		{"demo hint", []string{"--dir", dir}, "console_links"},
		{"keys generate", []string{"--partner", "new-agency", "--out", filepath.Join(work, "keys")}, "kid"},
		{"token mint", []string{"--key", filepath.Join(keys, "exley-csc.jwk"), "--sub", "sw-1", "--role", "social_worker"}, "token"},
		{"console link", []string{"--key", filepath.Join(keys, "exley-csc.jwk"), "--sub", "ig-0001", "--gateway", g.base}, "url"},
		{"dev certs", []string{"--out", filepath.Join(work, "certs")}, "ca_cert"},
		{"protocol list", []string{"--dir", protos}, ""},
		{"protocol verify", []string{filepath.Join(protos, "safeguarding.yaml")}, ""},
		{"protocol lint", []string{filepath.Join(protos, "safeguarding.yaml")}, "problems"},
		{"protocol sign", []string{"--key", filepath.Join(keys, "exley-csc.jwk"), filepath.Join(side, "safeguarding.yaml")}, "signatures_file"},
		{"protocol withdraw", []string{"--key", filepath.Join(keys, "exley-csc.jwk"), "--effective", "2099-01-01", filepath.Join(side, "safeguarding.yaml")}, "withdrawals_file"},
		{"appointment sign", []string{"--key", filepath.Join(keys, "exley-csc.jwk"), appt}, "signer"},
		{"appointment withdraw", []string{"--key", filepath.Join(keys, "exley-csc.jwk"), "--effective", "2099-01-01", appt}, "effective"},
		{"appointment list", []string{"--dir", protos}, ""},
		{"policy export", []string{policiesDir}, "written"},
		{"policy test", []string{policiesDir}, ""},
		{"policy check", []string{policiesDir, "--protocols", protos}, ""},
		{"vault policy", nil, "policy"},
		{"api", []string{"GET", "/v1/policies"}, "protocols_in_force"},
		{"consents list", []string{"9990000018"}, "consents"},
		{"consents record", []string{`{"subject":"9990000026","outcome":"given","given_by":"parent","purposes":["early_help"],"categories":["identity"],"recipients":{"partners":["exley-csc"]},"valid_until":"2099-01-01T00:00:00Z","obtained":"written","evidence_ref":"T-1"}`}, "consent_id"},
		{"consent receipt verify", []string{filepath.Join(work, "consent.json"), "--jwks", g.base + "/.well-known/jwks.json"}, ""},
		{"consents withdraw", []string{"CONSENT", "--by", "parent", "--obtained", "verbal"}, "status"},
		{"reviews list", []string{"--key", filepath.Join(keys, "exley-csc.jwk"), "--sub", "ig-0001", "--role", "ig_lead"}, "reviews"},
		{"reviews summary", []string{"--key", filepath.Join(keys, "exley-csc.jwk"), "--sub", "ig-0001", "--role", "ig_lead"}, "summary"},
		{"reviews show", []string{"REVIEW", "--key", filepath.Join(keys, "exley-csc.jwk"), "--sub", "ig-0001", "--role", "ig_lead"}, ""},
		{"reviews close", []string{"REVIEW", "--outcome", "upheld", "--note", "proportionate", "--key", filepath.Join(keys, "exley-csc.jwk"), "--sub", "ig-0001", "--role", "ig_lead"}, ""},
		{"audit entries", []string{"--subject", "9990000018", "--sub", "auditor-07", "--role", "auditor"}, "entries"},
		{"audit stats", []string{"--by", "purpose", "--sub", "auditor-07", "--role", "auditor"}, ""},
		{"audit snapshot", []string{"--out", snap, "--sub", "auditor-07", "--role", "auditor"}, "verify"},
		{"audit verify", []string{"--db", snap}, "entries"},
		{"backup", []string{"--out", filepath.Join(work, "backup"), "--sub", "auditor-07", "--role", "auditor"}, "files"},
		{"audit report", []string{"--subject", "9990000018", "--sub", "auditor-07", "--role", "auditor"}, "report"},
		{"policy whatif", []string{"--db", snap, "--since", "1d"}, ""},
		{"policy whatif", []string{"--protocols", protos, "--since", "1d", "--sub", "ig-0001", "--role", "ig_lead"}, "changed"}, // via $TRUSTGATE_ADDR
		{"audit export", []string{"--db", snap}, "seq"},
	}

	// An override opens the review that reviews show and close act on.
	if code, out := runCLI(t, "api", "POST", "/v1/decisions", `{"subject":"9990000018","provider":"riverside-gp","purpose":"safeguarding","categories":["health_summary"],"override_ground":"risk_of_significant_harm","justification":"Bruising seen at school and an unexplained absence; strategy discussion held today."}`, "--format", "json"); code != 0 {
		t.Fatalf("override: %d %s", code, out)
	}
	var consentID, reviewID string
	ran := map[string]bool{}
	for _, s := range steps {
		args := append(strings.Fields(s.path), s.args...)
		for i, a := range args {
			args[i] = strings.NewReplacer("CONSENT", consentID, "REVIEW", reviewID).Replace(a)
		}
		code, out, stderr := runJSON(t, append(args, "--format", "json")...)
		if code != 0 {
			t.Errorf("trustgate %s --format json: exit %d\n%s%s", strings.Join(args, " "), code, out, stderr)
			continue
		}
		ran[s.path] = true
		docs := [][]byte{out}
		if s.path == "audit export" { // JSON lines
			docs = bytes.Split(bytes.TrimSpace(out), []byte("\n"))
		}
		for _, d := range docs {
			var v any
			if err := json.Unmarshal(d, &v); err != nil {
				t.Errorf("trustgate %s --format json: not JSON (%v):\n%s", s.path, err, out)
				break
			}
			if m, ok := v.(map[string]any); s.has != "" && (!ok || m[s.has] == nil) {
				t.Errorf("trustgate %s --format json: no %q in\n%s", s.path, s.has, out)
			}
			switch s.path {
			case "consents record":
				consentID, _ = v.(map[string]any)["consent_id"].(string)
				os.WriteFile(filepath.Join(work, "consent.json"), out, 0o600)
			case "reviews list":
				for _, r := range v.(map[string]any)["reviews"].([]any) {
					reviewID, _ = r.(map[string]any)["id"].(string)
				}
			}
		}
	}
	for path, c := range leafCommands() {
		if slices.Contains(notResults, path) {
			if c.Flags().Lookup("format") != nil {
				t.Errorf("%s runs until stopped but takes --format", path)
			}
			continue
		}
		if f := c.Flags().Lookup("format"); f == nil {
			t.Errorf("trustgate %s prints a result but has no --format", path)
		} else if _, shared := f.Value.(formatValue); !shared && path != "audit export" {
			t.Errorf("trustgate %s: --format is not the shared text|json flag", path)
		}
		if !ran[path] && formatElsewhere[path] == "" {
			t.Errorf("trustgate %s --format json is not run by this test", path)
		}
	}
}
