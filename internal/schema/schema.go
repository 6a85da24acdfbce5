// Package schema checks the Trust's YAML files (protocols, the registry)
// against the JSON Schemas published in docs/schemas, with
// santhosh-tekuri/jsonschema (JSON Schema 2020-12). The schemas are the
// ones an IG lead's editor checks the files with as they type (the demo
// files name them in a yaml-language-server comment), so that the editor,
// `trustgate protocol lint` and the gateway agree: one source of truth.
package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"

	"github.com/childrens-trust/trustgate/docs"
)

// The published schemas.
const (
	Protocol = "protocol.schema.json"
	Registry = "registry.schema.json"
	Config   = "config.schema.json" // generated from internal/config (its tests keep it current)
)

// Problem is one way a document fails its schema.
type Problem struct {
	// Field is the path of the value at fault, as protocol lint names
	// fields: rules[0].override_grounds[1]; empty for the whole document.
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

var compiled sync.Map // name → *jsonschema.Schema

func load(name string) (*jsonschema.Schema, error) {
	if s, ok := compiled.Load(name); ok {
		return s.(*jsonschema.Schema), nil
	}
	b, err := fs.ReadFile(docs.Schemas(), name)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(name, doc); err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	s, err := c.Compile(name)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	compiled.Store(name, s)
	return s, nil
}

// CheckYAML validates a YAML document against the named schema and
// returns every problem, in document order of their paths. An error means
// the document is not YAML or the schema could not be loaded.
func CheckYAML(name string, doc []byte) ([]Problem, error) {
	s, err := load(name)
	if err != nil {
		return nil, err
	}
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	if v == nil { // an empty document: an empty object
		v = map[string]any{}
	}
	// Through JSON, as an editor's language server sees the file; YAML
	// dates (2026-01-01) become the strings they were written as.
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return nil, err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	err = s.Validate(inst)
	if err == nil {
		return nil, nil
	}
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return nil, err
	}
	var out []Problem
	p := message.NewPrinter(language.English)
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, Problem{Field: field(e.InstanceLocation), Message: e.ErrorKind.LocalizedString(p)})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out, nil
}

// field writes an instance location as a lint field path.
func field(loc []string) string {
	var b strings.Builder
	for _, part := range loc {
		if _, err := strconv.Atoi(part); err == nil {
			b.WriteString("[" + part + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

// jsonable turns what yaml.v3 decodes into values encoding/json writes as
// the YAML was written: dates as YYYY-MM-DD, maps with string keys.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	case time.Time:
		if x.Equal(x.Truncate(24*time.Hour)) && x.Location() == time.UTC {
			return x.Format(time.DateOnly)
		}
		return x.Format(time.RFC3339Nano)
	}
	return v
}
