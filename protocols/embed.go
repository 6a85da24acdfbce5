// Package protocols embeds the demo Trust: the partner registry (trust.yaml)
// and the demo information-sharing protocols. They are unsigned here:
// `trustgate demo init` has every demo signatory sign them.
package protocols

import "embed"

// FS holds the registry and the protocol files.
//
//go:embed *.yaml
var FS embed.FS
