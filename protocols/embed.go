// Package protocols embeds the demo Trust: the partner registry (trust.yaml)
// and the demo information-sharing protocols. They are unsigned here:
// `trustgate demo init` has every demo signatory sign them.
package protocols

import "embed"

// FS holds the registry, the protocol files and the demo appointments
// (appointments/*.yaml, unsigned here too).
//
//go:embed *.yaml appointments/*.yaml
var FS embed.FS
