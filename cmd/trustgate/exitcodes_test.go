package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/audit"
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

// TestExitCodes runs each command's failure modes and checks each against
// the one table (README "Exit codes").
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("listen: [\n"), 0o600)
	unknownKey := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknownKey, []byte("no_such_key: 1\n"), 0o600)
	notJSON := filepath.Join(dir, "receipt.txt")
	os.WriteFile(notJSON, []byte("not a receipt"), 0o600)

	// A log held open (locked) the way a running gateway holds it.
	locked := filepath.Join(dir, "audit.db")
	l, err := audit.Open(locked, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

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
		{exitConfig, []string{"serve", "--config", missing}, "no such file"},
		{exitConfig, []string{"serve", "--config", badYAML}, "invalid configuration"},
		{exitConfig, []string{"serve", "--config", unknownKey}, "no_such_key"},
		{exitConfig, []string{"vault", "policy", "--config", missing}, "invalid configuration"},
		{exitConfig, []string{"serve", "--set", "no.such.key=1"}, "no such key"},
		{exitConfig, []string{"serve", "--set", "policy.decision_memo=lots"}, "policy.decision_memo"},
		{exitConfig, []string{"serve", "--set", "listen=0.0.0.0:9"}, "loopback"},
		{exitFailure, []string{"protocol", "verify", missing}, "no such file"},
		{exitFailure, []string{"protocol", "lint", missing}, "no such file"},
		{exitFailure, []string{"protocol", "list", "--dir", missing}, "no such file"},
		{exitFailure, []string{"policy", "test", missing}, "no such file"},
		{exitFailure, []string{"token", "mint", "--key", missing, "--sub", "a", "--role", "b"}, "no such file"},
		{exitFailure, []string{"audit", "verify", "--db", missing}, "no such file"},
		{exitFailure, []string{"audit", "export", "--db", missing, "--format", "jsonl"}, "no such file"},
		{exitFailure, []string{"consent", "receipt", "verify", notJSON, "--jwks", missing}, ""},
		{exitFailure, []string{"api", "GET", "/v1/policies", "--key", missing, "--sub", "s", "--role", "r"}, "no such file"},
		{exitBusy, []string{"audit", "verify", "--db", locked, "--timeout", "100ms"}, ""},
		{exitBusy, []string{"audit", "export", "--db", locked, "--format", "jsonl", "--timeout", "100ms"}, ""},
		{exitBusy, []string{"audit", "snapshot", "--db", locked, "--out", filepath.Join(dir, "copy.db"), "--timeout", "100ms"}, ""},
	}
	for _, c := range cases {
		code, out := runCLI(t, c.args...)
		if code != c.want || !strings.Contains(out, c.says) {
			t.Errorf("trustgate %s: exit %d, want %d (output should say %q)\n%s", strings.Join(c.args, " "), code, c.want, c.says, out)
		}
	}
	_ = context.Background
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

// TestREADMECommandTable: every command is in the README's command table,
// as "trustgate GROUP NAME", or as "\\| NAME" after its group on one row.
func TestREADMECommandTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "| `trustgate ") {
			rows = append(rows, l)
		}
	}
	listed := func(parent, name string) bool {
		for _, r := range rows {
			full := "trustgate " + strings.TrimSpace(parent+" "+name)
			if strings.Contains(r, "`"+full+" ") || strings.Contains(r, "`"+full+"`") ||
				(parent != "" && strings.Contains(r, "`trustgate "+parent+" ") && (strings.Contains(r, "\\| "+name+" ") || strings.Contains(r, "\\| "+name+"`") || strings.Contains(r, "`"+parent+" "+name))) {
				return true
			}
		}
		return false
	}
	var walk func(c *cobra.Command, parent string)
	walk = func(c *cobra.Command, parent string) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			path := strings.TrimSpace(parent + " " + sub.Name())
			if sub.HasSubCommands() {
				walk(sub, path)
				continue
			}
			if !listed(parent, sub.Name()) {
				t.Errorf("README.md's command table does not list trustgate %s", path)
			}
		}
	}
	walk(rootCommand(), "")
}
