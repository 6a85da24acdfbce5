package app

import (
	"log/slog"
	"os"
	"path/filepath"

	"github.com/childrens-trust/trustgate/internal/config"
)

// warnCheckpointKey warns when the key that signs audit checkpoints sits
// on the same disk as the log (keys.backend local) outside the demo:
// whoever can rewrite the log could then re-sign its checkpoints, and only
// checkpoints kept outside the gateway would tell (docs/auditing.md
// "External checkpoints are authoritative"). The demo is a data_dir that
// `trustgate demo init` wrote (its agencies' keys beside it), or the
// embedded demo registry.
func warnCheckpointKey(cfg config.Config, log *slog.Logger) {
	if cfg.Keys.Backend != "local" || isDemo(cfg) {
		return
	}
	log.Warn("the audit checkpoint signing key is kept beside the audit log (keys.backend: local): "+
		"anyone who can rewrite the log can re-sign its checkpoints; use keys.backend: vault in production "+
		"and keep checkpoints outside the gateway (docs/auditing.md, docs/operations.md)",
		"data_dir", cfg.DataDir, "keys_dir", cfg.Keys.LocalDir)
}

func isDemo(cfg config.Config) bool {
	if cfg.Registry == "" && cfg.ProtocolsDir == "" {
		return true // the embedded demo registry and protocols
	}
	_, err := os.Stat(filepath.Join(filepath.Dir(filepath.Clean(cfg.DataDir)), "keys", "exley-csc.jwk"))
	return err == nil
}
