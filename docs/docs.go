// Package docs holds the machine-readable contracts beside the prose: the
// OpenAPI document of the HTTP API (openapi.yaml) and the JSON Schemas of
// the protocol, registry and config files (schemas/). They are embedded
// here, once, so that the files an editor or an integrator reads are the
// very ones the gateway serves (GET /v1/openapi.json) and validates with
// (protocol lint, config loading): one source of truth, no copies.
package docs

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"sync"

	"gopkg.in/yaml.v3"
)

//go:embed openapi.yaml
var openapiYAML []byte

//go:embed schemas/*.json
var schemas embed.FS

// OpenAPIYAML is the OpenAPI 3.1 document as written.
func OpenAPIYAML() []byte { return openapiYAML }

var openapiJSON = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml: %w", err)
	}
	return json.Marshal(doc)
})

// OpenAPIJSON is the OpenAPI document as JSON (what /v1/openapi.json serves).
func OpenAPIJSON() ([]byte, error) { return openapiJSON() }

// Schemas are the JSON Schemas (schemas/NAME.schema.json).
func Schemas() fs.FS {
	sub, err := fs.Sub(schemas, "schemas")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	return sub
}
