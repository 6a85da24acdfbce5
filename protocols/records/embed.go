// Package records embeds the demo Trust's synthetic provider records: one
// file per demo partner, <partner>.json, in the reference provider's
// fixture format (docs/providers.md). Every child, name and address is
// fictional and every NHS number is from the 999 test range. `trustgate
// demo init` writes them to DIR/records, where the demo providers read
// them.
package records

import "embed"

// FS holds <partner>.json for every demo partner.
//
//go:embed *.json
var FS embed.FS
