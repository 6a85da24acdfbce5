// Package policies embeds the gateway's default Rego policies, so that the
// binary runs on its embedded defaults. A configured policies directory
// replaces them.
package policies

import "embed"

// FS holds every .rego file of this directory, tests included, and the
// sample decisions every revision is checked with (samples.yaml).
//
//go:embed *.rego samples.yaml
var FS embed.FS
