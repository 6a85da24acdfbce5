package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/demo"
)

// TestEveryCommandRefusesUnknownInput walks the whole command tree: every
// group refuses an unknown subcommand and every command an unknown flag,
// with exit 2, so that a new command cannot forget the table.
func TestEveryCommandRefusesUnknownInput(t *testing.T) {
	var walk func(c *cobra.Command, path []string)
	n := 0
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			p := append(append([]string(nil), path...), sub.Name())
			if code, out := runCLI(t, append(p, "--no-such-flag")...); code != exitUsage {
				t.Errorf("trustgate %s --no-such-flag: exit %d, want %d\n%s", strings.Join(p, " "), code, exitUsage, out)
			}
			if sub.HasSubCommands() {
				if code, out := runCLI(t, append(p, "bogus")...); code != exitUsage {
					t.Errorf("trustgate %s bogus: exit %d, want %d\n%s", strings.Join(p, " "), code, exitUsage, out)
				}
				if code, _ := runCLI(t, p...); code != exitOK {
					t.Errorf("trustgate %s (a bare group prints its help): exit %d", strings.Join(p, " "), code)
				}
			}
			n++
			walk(sub, p)
		}
	}
	walk(rootCommand(), nil)
	if n < 30 {
		t.Errorf("walked only %d commands", n)
	}
	if code, _ := runCLI(t, "bogus"); code != exitUsage {
		t.Errorf("trustgate bogus: exit %d", code)
	}
}

// onlyUsage are the commands that have no failure mode but a usage
// error: they read nothing that can be missing or wrong.
var onlyUsage = map[string]string{
	"version":   "prints the binary's build information",
	"demo hint": "prints the requests, and the console links only if the demo's keys are there",
}

// TestExitCodes runs each command's failure modes and checks each against
// the one table (README "Exit codes"); every command has at least one
// failure mode here beyond a usage error, so a new command cannot forget
// the table.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("listen: [\n"), 0o600)
	unknownKey := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknownKey, []byte("no_such_key: 1\n"), 0o600)
	notJSON := filepath.Join(dir, "receipt.txt")
	os.WriteFile(notJSON, []byte("not a receipt"), 0o600)
	demoDir := filepath.Join(dir, "demo")
	if err := demo.Init(demoDir, demo.Options{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	key := func(p string) string { return filepath.Join(demoDir, "keys", p+".jwk") }
	protos := filepath.Join(demoDir, "protocols")
	exported := filepath.Join(dir, "policies")
	if code, out := runCLI(t, "policy", "export", exported); code != 0 {
		t.Fatalf("policy export: %d %s", code, out)
	}
	// A policy whose test fails: policy test and policy check find it.
	failing := filepath.Join(dir, "failing")
	os.MkdirAll(failing, 0o755)
	os.WriteFile(filepath.Join(failing, "x.rego"), []byte("package x\n\nallow if input.ok\n"), 0o644)
	os.WriteFile(filepath.Join(failing, "x_test.rego"), []byte("package x_test\n\nimport data.x\n\ntest_fails if x.allow with input as {}\n"), 0o644)
	broken := filepath.Join(dir, "broken")
	os.MkdirAll(broken, 0o755)
	os.WriteFile(filepath.Join(broken, "x.rego"), []byte("package x\n\nallow if {\n"), 0o644)
	unreachable := "http://127.0.0.1:1" // nothing listens on port 1
	noKey := []string{"--key", missing, "--sub", "s", "--role", "r"}

	// A log held open (locked) the way a running gateway holds it.
	locked := filepath.Join(dir, "audit.db")
	l, err := audit.Open(locked, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// A gateway that did not stop cleanly: the log file as it was before
	// three appends, beside the journal that holds them.
	crashed := filepath.Join(dir, "crashed", "audit.db")
	os.MkdirAll(filepath.Dir(crashed), 0o700)
	cl, err := audit.Open(filepath.Join(dir, "live.db"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	copyOrFail(t, filepath.Join(dir, "live.db"), crashed)
	for i := range 3 {
		e := audit.Entry{Kind: audit.KindAccess, Method: "GET", Path: "/v1/protocols", Status: 200, Requester: "exley-csc", RequestID: fmt.Sprintf("r-%d", i)}
		if _, _, err := cl.Append(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
	}
	copyOrFail(t, audit.JournalPath(filepath.Join(dir, "live.db")), audit.JournalPath(crashed))
	cl.Close()

	cases := []struct {
		want int
		args []string
		says string
	}{
		{exitOK, []string{"version"}, "trustgate"},
		{exitOK, []string{"version", "--format", "json"}, `"module"`},
		{exitUsage, []string{"version", "--format", "xml"}, "not one of text, json"},
		{exitUsage, []string{"version", "extra"}, ""},
		{exitUsage, []string{"protocol", "verify"}, ""},
		{exitUsage, []string{"token", "mint"}, "required"},
		{exitUsage, []string{"keys", "generate", "--out", dir}, ""},
		{exitUsage, []string{"api", "GET"}, "METHOD PATH"},
		{exitUsage, []string{"api", "FETCH", "/v1/policies", "--token", "x"}, "METHOD"},
		{exitUsage, []string{"api", "GET", "/v1/policies"}, "token is required"},
		{exitUsage, []string{"reviews", "close", "r1", "--token", "x"}, "--outcome"},
		{exitUsage, []string{"demo", "hint", "--dir"}, "needs an argument"},
		// 3: bad or missing config.
		{exitConfig, []string{"serve", "--config", missing}, "no such file"},
		{exitConfig, []string{"serve", "--config", badYAML}, "invalid configuration"},
		{exitConfig, []string{"serve", "--config", unknownKey}, "no_such_key"},
		{exitConfig, []string{"serve", "--set", "no.such.key=1"}, "no such key"},
		{exitConfig, []string{"serve", "--set", "policy.decision_memo=lots"}, "policy.decision_memo"},
		{exitConfig, []string{"serve", "--set", "listen=0.0.0.0:9"}, "loopback"},
		{exitConfig, []string{"demo", "run", "--dir", missing}, "invalid configuration"},
		{exitConfig, []string{"vault", "policy", "--config", missing}, "invalid configuration"},
		{exitConfig, []string{"vault", "setup", "--config", badYAML}, "invalid configuration"},
		// 1: a check failed, or an input is missing or invalid.
		{exitFailure, []string{"protocol", "verify", missing}, "no such file"},
		{exitFailure, []string{"protocol", "lint", missing}, "no such file"},
		{exitFailure, []string{"protocol", "list", "--dir", missing}, "no such file"},
		{exitFailure, []string{"protocol", "sign", "--key", key("exley-academy"), filepath.Join(protos, "youth-justice.yaml")}, "not a signatory"},
		{exitFailure, []string{"protocol", "withdraw", "--key", key("exley-csc"), "--effective", "now", missing}, "no such file"},
		{exitFailure, []string{"appointment", "list", "--dir", missing}, "no such file"},
		{exitFailure, []string{"appointment", "sign", "--key", key("exley-academy"), filepath.Join(protos, "appointments", "appt-csc-ig-1.yaml")}, "signatory"},
		{exitFailure, []string{"appointment", "withdraw", "--key", key("exley-csc"), "--effective", "now", missing}, "no such file"},
		{exitFailure, []string{"policy", "test", missing}, "no such file"},
		{exitFailure, []string{"policy", "test", failing}, "1 failed"},
		{exitFailure, []string{"policy", "test", broken}, "x.rego"},
		{exitFailure, []string{"policy", "check", failing, "--protocols", protos}, "problem"},
		{exitFailure, []string{"policy", "export", exported}, "file exists"},
		{exitFailure, []string{"policy", "whatif", "--db", missing}, "no such file"},
		{exitFailure, []string{"keys", "generate", "--partner", "exley-csc", "--out", filepath.Join(demoDir, "keys")}, "refusing to overwrite"},
		{exitFailure, []string{"demo", "init", "--dir", demoDir}, "already prepared"},
		{exitFailure, []string{"dev", "certs", "--out", "/proc/trustgate-test"}, "no such file"},
		{exitFailure, []string{"provider", "--partner", "exley-police", "--records", missing, "--gateway-jwks", unreachable}, "no such file"},
		{exitFailure, []string{"token", "mint", "--key", missing, "--sub", "a", "--role", "b"}, "no such file"},
		{exitFailure, []string{"console", "link", "--key", missing, "--sub", "ig-0001"}, "no such file"},
		{exitFailure, []string{"audit", "verify", "--db", missing}, "no such file"},
		{exitFailure, []string{"audit", "verify", "--db", crashed}, "entries 1 to 3 are in the journal"},
		{exitFailure, []string{"audit", "export", "--db", crashed, "--format", "jsonl"}, "not yet in the log file"},
		{exitFailure, []string{"audit", "verify", "--db", locked, "--jwks", notJSON, "--timeout", "100ms"}, "not a JWK set"},
		{exitFailure, []string{"audit", "export", "--db", missing, "--format", "jsonl"}, "no such file"},
		{exitFailure, []string{"audit", "migrate", "--db", missing}, "no such file"},
		{exitFailure, []string{"consent", "receipt", "verify", notJSON, "--jwks", missing}, ""},
		{exitFailure, append([]string{"api", "GET", "/v1/policies"}, noKey...), "no such file"},
		{exitFailure, append([]string{"audit", "entries"}, noKey...), "no such file"},
		{exitFailure, append([]string{"audit", "stats"}, noKey...), "no such file"},
		{exitFailure, append([]string{"audit", "report", "--subject", "9990000018"}, noKey...), "no such file"},
		{exitFailure, append([]string{"audit", "snapshot", "--out", filepath.Join(dir, "s.db")}, noKey...), "no such file"},
		{exitFailure, append([]string{"consents", "list", "9990000018"}, noKey...), "no such file"},
		{exitFailure, append([]string{"consents", "record", "{}"}, noKey...), "no such file"},
		{exitFailure, append([]string{"consents", "withdraw", "cns-1", "--by", "parent", "--obtained", "verbal"}, noKey...), "no such file"},
		{exitFailure, append([]string{"backup", "--out", filepath.Join(dir, "backup")}, noKey...), "no such file"},
		{exitFailure, []string{"backup", "--out", demoDir, "--token", "x"}, "existing path"},
		{exitFailure, append([]string{"reviews", "list"}, noKey...), "no such file"},
		{exitFailure, append([]string{"reviews", "show", "rev-1"}, noKey...), "no such file"},
		{exitFailure, append([]string{"reviews", "summary"}, noKey...), "no such file"},
		{exitFailure, append([]string{"reviews", "close", "rev-1", "--outcome", "upheld", "--note", "n"}, noKey...), "no such file"},
		// 4: a file locked by a running gateway.
		{exitBusy, []string{"audit", "verify", "--db", locked, "--timeout", "100ms"}, ""},
		{exitBusy, []string{"audit", "export", "--db", locked, "--format", "jsonl", "--timeout", "100ms"}, ""},
		{exitBusy, []string{"audit", "snapshot", "--db", locked, "--out", filepath.Join(dir, "copy.db"), "--timeout", "100ms"}, ""},
		{exitBusy, []string{"audit", "migrate", "--db", locked, "--timeout", "100ms"}, ""},
		{exitBusy, []string{"policy", "whatif", "--db", locked, "--timeout", "100ms"}, ""},
		// 5: what the command needs cannot be reached.
		{exitInternal, []string{"api", "GET", "/v1/policies", "--gateway", unreachable, "--key", key("exley-csc"), "--sub", "sw-0042", "--role", "social_worker"}, "connection refused"},
	}
	failures := map[string]bool{}
	for _, c := range cases {
		code, out := runCLI(t, c.args...)
		if code != c.want || !strings.Contains(out, c.says) {
			t.Errorf("trustgate %s: exit %d, want %d (output should say %q)\n%s", strings.Join(c.args, " "), code, c.want, c.says, out)
		}
		if c.want != exitOK && c.want != exitUsage {
			for n := len(c.args); n > 0; n-- {
				failures[strings.Join(c.args[:n], " ")] = true
			}
		}
	}
	for path := range leafCommands() {
		if !failures[path] && onlyUsage[path] == "" {
			t.Errorf("trustgate %s: no failure mode (exit 1, 3, 4 or 5) is run by this test", path)
		}
	}
}

// TestREADMEExitCodes: the README's exit code table is the one the code applies.
func TestREADMEExitCodes(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for code, name := range map[int]string{exitOK: "ok", exitFailure: "a check failed", exitUsage: "usage", exitConfig: "bad or missing config", exitBusy: "file locked", exitInternal: "internal error"} {
		row := "| " + string(rune('0'+code)) + " | " + name
		if !strings.Contains(readme, row) {
			t.Errorf("README.md lacks the exit code row %q", row)
		}
	}
}

// copyOrFail copies the file src to dst (mode 0600).
func copyOrFail(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
