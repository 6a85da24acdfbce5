package config

import (
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
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
and by ` + "`trustgate serve --set KEY=VALUE`" + ` (repeatable), written as in the file:
the file first, then the environment, then ` + "`--set`" + `, then ` + "`--listen`" + `.
Durations are written ` + "`5s`, `2m`, `720h`" + `. Secrets are never config keys
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
