package config

import (
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite docs/config.md from the config definition")

// fieldDocs reads the doc comment of every struct field of the package's
// source: "Policy.DecisionMemo" → its comment, joined into one line.
func fieldDocs(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	docs := map[string]string{}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		typeDocs := map[*ast.TypeSpec]string{}
		for _, d := range af.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Doc != nil {
				for _, sp := range gd.Specs {
					if ts, ok := sp.(*ast.TypeSpec); ok {
						typeDocs[ts] = strings.Join(strings.Fields(gd.Doc.Text()), " ")
					}
				}
			}
		}
		ast.Inspect(af, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			// A comment covering several fields covers each; a field
			// without one is described by its section's doc.
			last := typeDocs[ts]
			for _, fl := range st.Fields.List {
				text := ""
				if fl.Doc != nil {
					text = fl.Doc.Text()
				} else if fl.Comment != nil {
					text = fl.Comment.Text()
				}
				text = strings.Join(strings.Fields(text), " ")
				if text == "" && fl.Doc == nil && fl.Comment == nil {
					text = last
				} else {
					last = text
				}
				for _, name := range fl.Names {
					docs[ts.Name.Name+"."+name.Name] = text
				}
			}
			return true
		})
	}
	return docs
}

func renderReference(t *testing.T) string {
	docs := fieldDocs(t)
	var b strings.Builder
	b.WriteString(`# Configuration reference

Generated from the config definition (internal/config) by
` + "`go test ./internal/config -run TestConfigReference -update`" + `; a test fails
when this page is not current. Every key of the YAML file given to
` + "`trustgate serve --config FILE`" + `, with its default (the embedded defaults apply
to every key the file leaves out; an unknown key is refused, exit 3).
Relative paths in the file are resolved against the file's directory.

Each key can also be set by its environment variable (the column below)
and by ` + "`--set KEY=VALUE`" + ` (repeatable), written as in the file, for every
command that reads the config (` + "`serve`, `demo run`, `vault setup`, `vault policy`" + `):
the file first, then the environment, then ` + "`--set`" + `, then ` + "`--listen`" + `. An
empty variable is ignored: ` + "`--set KEY=`" + ` sets a key to empty.
Durations are written ` + "`5s`, `2m`, `720h`" + `; lists in YAML flow form, ` + "`[a, b]`" + `. Secrets are never config keys
(docs/operations.md).

The same definition generates the file's JSON Schema,
[schemas/config.schema.json](schemas/config.schema.json), which config
loading checks first; an editor with a YAML language server checks a
config file as it is typed when its first line names it:
` + "`# yaml-language-server: $schema=PATH/TO/docs/schemas/config.schema.json`" + `.

| key | type | default | environment | what |
|---|---|---|---|---|
`)
	for _, k := range AllKeys() {
		def := k.Default
		if def == "" {
			def = "(empty)"
		}
		doc := strings.ReplaceAll(docs[k.Field], "|", "\\|")
		b.WriteString("| `" + k.Name + "` | " + k.Type + " | `" + def + "` | `" + k.Env() + "` | " + doc + " |\n")
	}
	return b.String()
}

// TestConfigReferenceIsCurrent: docs/config.md is what the definition
// generates.
func TestConfigReferenceIsCurrent(t *testing.T) {
	want := renderReference(t)
	path := filepath.Join("..", "..", "docs", "config.md")
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("docs/config.md is not current: run go test ./internal/config -run TestConfigReference -update")
	}
	if n := strings.Count(want, "\n| `"); n < 60 {
		t.Errorf("only %d keys in the reference", n)
	}
	for _, line := range strings.Split(want, "\n") {
		if strings.HasSuffix(line, "|  |") {
			t.Errorf("a key without a description (document its field in internal/config): %s", line)
		}
	}
}

// renderSchema is the JSON Schema of the config file, from the same
// definition: an object per section, every key typed, with its default and
// description, no other key allowed.
func renderSchema(t *testing.T) []byte {
	docs := fieldDocs(t)
	root := map[string]any{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"$id":     "https://childrens-trust.example/trustgate/schemas/config.schema.json",
		"title":   "trustgate configuration (trustgate serve --config FILE; docs/config.md)",
		"type":    "object", "additionalProperties": false, "properties": map[string]any{},
	}
	for _, k := range AllKeys() {
		obj := root
		parts := strings.Split(k.Name, ".")
		for _, p := range parts[:len(parts)-1] {
			props := obj["properties"].(map[string]any)
			next, ok := props[p].(map[string]any)
			if !ok {
				next = map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{}}
				props[p] = next
			}
			obj = next
		}
		prop := map[string]any{"description": docs[k.Field]}
		switch k.Type {
		case "duration":
			prop["type"], prop["pattern"], prop["default"] = "string", `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$`, k.Default
		case "int":
			prop["type"] = "integer"
		case "bool":
			prop["type"] = "boolean"
		case "list":
			prop["type"], prop["items"] = "array", map[string]any{"type": "string"}
		default:
			prop["type"], prop["default"] = "string", k.Default
		}
		obj["properties"].(map[string]any)[parts[len(parts)-1]] = prop
	}
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestConfigSchemaIsCurrent: docs/schemas/config.schema.json is what the
// definition generates, and the demo config satisfies it.
func TestConfigSchemaIsCurrent(t *testing.T) {
	want := renderSchema(t)
	path := filepath.Join("..", "..", "docs", "schemas", "config.schema.json")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("docs/schemas/config.schema.json is not current: run go test ./internal/config -run TestConfigSchema -update")
	}
}

func TestOverrides(t *testing.T) {
	c := Default()
	env := []string{"TRUSTGATE_POLICY_DECISION_MEMO=0", "TRUSTGATE_HTTP_READ_TIMEOUT=3s", "TRUSTGATE_ADDR=http://x", "TRUSTGATE_POLICY_WATCH=false", "PATH=/bin"}
	if err := Overrides(&c, env, []string{"log.level=debug", "keys.vault.batch_max=8", "policy.decision_memo=5000"}); err != nil {
		t.Fatal(err)
	}
	if c.Policy.DecisionMemo != 5000 || c.HTTP.ReadTimeout.Duration != 3*time.Second || c.Policy.Watch || c.Log.Level != "debug" || c.Keys.Vault.BatchMax != 8 {
		t.Errorf("overrides not applied: %+v %+v %+v", c.Policy, c.HTTP, c.Log)
	}
	for _, bad := range [][]string{{"no.such.key=1"}, {"policy=1"}, {"policy.decision_memo=lots"}, {"listen"}} {
		c := Default()
		if err := Overrides(&c, nil, bad); err == nil || !strings.Contains(err.Error(), ErrInvalid.Error()) {
			t.Errorf("--set %v: %v", bad, err)
		}
	}
	c = Default()
	if err := Overrides(&c, []string{"TRUSTGATE_HTTP_READ_TIMEOUT=soon"}, nil); err == nil || !strings.Contains(err.Error(), "TRUSTGATE_HTTP_READ_TIMEOUT") {
		t.Errorf("a bad environment value: %v", err)
	}
}

// TestEveryKeyFromEnvironmentAndSet: each key of the definition is set by
// its TRUSTGATE_… variable and by --set, the --set winning; no key's
// variable is one of the client commands' (TRUSTGATE_ADDR and the rest).
func TestEveryKeyFromEnvironmentAndSet(t *testing.T) {
	other := func(k Key, n int) string { // a value unlike the default, as written in the file
		switch k.Type {
		case "bool":
			return fmt.Sprint(k.Default != "true")
		case "int":
			return fmt.Sprint(4321 + n)
		case "duration":
			return fmt.Sprintf("%ds", 4321+n)
		case "list":
			return fmt.Sprintf("[first-%d-of-%s, second+%d]", n, k.Name, n)
		}
		return fmt.Sprintf("value-%d-of-%s", n, k.Name)
	}
	client := []string{"TRUSTGATE_ADDR", "TRUSTGATE_TOKEN", "TRUSTGATE_KEY", "TRUSTGATE_SUB", "TRUSTGATE_ROLE", "TRUSTGATE_CACERT", "TRUSTGATE_VAULT_BIN"}
	keys := AllKeys()
	if len(keys) < 50 {
		t.Fatalf("only %d keys", len(keys))
	}
	for _, k := range keys {
		if slices.Contains(client, k.Env()) {
			t.Errorf("%s: its variable %s is a client command's", k.Name, k.Env())
		}
		if k.Type != "string" && k.Type != "bool" && k.Type != "int" && k.Type != "duration" && k.Type != "list" {
			t.Errorf("%s: type %s cannot be set from the environment", k.Name, k.Type)
			continue
		}
		c := Default()
		if err := Overrides(&c, []string{k.Env() + "=" + other(k, 1)}, nil); err != nil {
			t.Errorf("%s=%s: %v", k.Env(), other(k, 1), err)
			continue
		}
		f, _ := field(&c, k.Name)
		if got := show(f); got == k.Default {
			t.Errorf("%s from %s: still the default %s", k.Name, k.Env(), got)
		}
		fromEnv := show(f)
		if k.Type == "bool" {
			continue // a second value unlike the default is the first
		}
		if err := Overrides(&c, []string{k.Env() + "=" + other(k, 1)}, []string{k.Name + "=" + other(k, 2)}); err != nil {
			t.Errorf("--set %s: %v", k.Name, err)
			continue
		}
		if got := show(f); got == fromEnv || got == k.Default {
			t.Errorf("--set %s=%s: %s (the environment gave %s)", k.Name, other(k, 2), got, fromEnv)
		}
	}
}
