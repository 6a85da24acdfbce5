package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/keys/vault"
)

// openVault opens the Vault transit key store the configuration names.
// Its error is one line: what failed, where, and what to check.
func openVault(ctx context.Context, cfg config.Config, log *slog.Logger) (keys.Store, error) {
	v := cfg.Keys.Vault
	cache := v.PseudonymCacheSize
	if cache == 0 {
		cache = -1 // the config's 0 turns the cache off
	}
	s, err := vault.Open(ctx, vault.Options{
		Address:             v.Address,
		Mount:               v.Mount,
		SigningKey:          v.SigningKey,
		PseudonymKey:        v.PseudonymKey,
		PseudonymKeyVersion: v.PseudonymKeyVersion,
		NoteKey:             v.NoteKey,
		AuthMethod:          v.AuthMethod,
		RoleID:              v.RoleID,
		SecretIDFile:        v.SecretIDFile,
		TokenFile:           v.TokenFile,
		AppRoleMount:        v.AppRoleMount,
		Timeout:             cfg.Keys.Timeout.Duration,
		BatchWindow:         v.BatchWindow.Duration,
		BatchMax:            v.BatchMax,
		CacheSize:           cache,
		CheckInterval:       v.CheckInterval.Duration,
		Logger:              log.With("component", "keys"),
	})
	if err == nil {
		return s, nil
	}
	hint := "see docs/operations.md"
	switch vault.KindOf(err) {
	case vault.KindUnreachable, vault.KindTimeout:
		hint = "is Vault running, and are VAULT_ADDR (or keys.vault.address) and VAULT_CACERT right?"
	case vault.KindSealed:
		hint = "unseal Vault (vault operator unseal)"
	case vault.KindDenied:
		hint = "check keys.vault.role_id, the secret id file or token, and the gateway's policy (trustgate vault setup)"
	case vault.KindRejected:
		hint = "do the mount and keys exist? (trustgate vault setup)"
	}
	return nil, fmt.Errorf("%w; %s", err, hint)
}
