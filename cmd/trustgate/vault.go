package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/keys/vault"
)

func vaultCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Prepare HashiCorp Vault to hold the gateway's keys (docs/operations.md)",
	}
	cmd.AddCommand(vaultSetupCommand(), vaultPolicyCommand())
	return cmd
}

func vaultSetupCommand() *cobra.Command {
	var (
		cfgPath, signingType, policy, role, secretIDFile string
		tokenTTL, tokenMaxTTL, secretIDTTL, timeout      time.Duration
		cidrs                                            []string
		asJSON                                           bool
		sets                                             []string
	)
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Enable transit, create the keys, write the gateway's policy and AppRole, print its credentials",
		Long: `Run by a Vault administrator, with the usual Vault environment (VAULT_ADDR,
VAULT_TOKEN or a token from 'vault login', VAULT_CACERT, VAULT_NAMESPACE).

It enables the transit engine at keys.vault.mount, creates the signing key
(ecdsa-p256 or ed25519), the pseudonym key (hmac) and the note key
(ed25519, signs the checkpoint notes witnesses co-sign), none exportable,
writes the gateway's policy (sign, verify and HMAC with those three keys
and read their metadata; nothing else), enables AppRole at
keys.vault.approle_mount, creates the gateway's role bound to that policy
alone, and prints the role id and a new secret id to hand over. Names come
from --config (keys.vault), else the defaults. Running it again keeps what
exists (a key is never replaced) and issues a new secret id.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath, sets)
			if err != nil {
				return err
			}
			v := cfg.Keys.Vault
			client, err := adminClient(v.Address, timeout)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := vault.Setup(ctx, client, vault.SetupOptions{
				Mount: v.Mount, SigningKey: v.SigningKey, SigningKeyType: signingType, PseudonymKey: v.PseudonymKey,
				NoteKey: v.NoteKey, Policy: policy, AppRoleMount: v.AppRoleMount, Role: role,
				TokenTTL: tokenTTL, TokenMaxTTL: tokenMaxTTL, SecretIDTTL: secretIDTTL, CIDRs: cidrs,
			})
			out := cmd.OutOrStdout()
			if res != nil && !asJSON {
				for _, s := range res.Steps {
					fmt.Fprintln(out, "  "+s)
				}
			}
			if err != nil {
				return err
			}
			if asJSON {
				ans := map[string]any{"address": client.Address(), "steps": res.Steps, "mount": v.Mount, "signing_key": v.SigningKey,
					"pseudonym_key": v.PseudonymKey, "note_key": v.NoteKey, "approle_mount": v.AppRoleMount, "role_id": res.RoleID}
				if secretIDFile != "" {
					if err := writeSecret(secretIDFile, res.SecretID); err != nil {
						return err
					}
					ans["secret_id_file"] = secretIDFile
				} else {
					ans["secret_id"] = res.SecretID
				}
				return printJSON(out, ans)
			}
			fmt.Fprintf(out, "\nVault at %s is ready for the gateway. Its configuration:\n\n", client.Address())
			fmt.Fprintf(out, "keys:\n  backend: vault\n  vault:\n    mount: %s\n    signing_key: %s\n    pseudonym_key: %s\n    pseudonym_key_version: %d\n    note_key: %s\n    auth_method: approle\n    approle_mount: %s\n    role_id: %s\n    secret_id_file: %s\n\n",
				v.Mount, v.SigningKey, v.PseudonymKey, v.PseudonymKeyVersion, v.NoteKey, v.AppRoleMount, res.RoleID, orDefault(v.SecretIDFile, "/etc/trustgate/vault-secret-id"))
			if secretIDFile != "" {
				if err := writeSecret(secretIDFile, res.SecretID); err != nil {
					return err
				}
				fmt.Fprintf(out, "secret id written to %s (mode 0600): hand it over by a separate channel from the role id.\n", secretIDFile)
				return nil
			}
			fmt.Fprintf(out, "secret id (hand over separately from the role id; put it alone in the secret_id_file, mode 0600):\n%s\n", res.SecretID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "the gateway's config file, for keys.vault names (empty: defaults)")
	f.StringVar(&signingType, "signing-type", "ecdsa-p256", "signing key type: ecdsa-p256 (JWS ES256) or ed25519 (EdDSA)")
	f.StringVar(&policy, "policy", "trustgate-gateway", "name of the gateway's Vault policy")
	f.StringVar(&role, "role", "trustgate-gateway", "name of the gateway's AppRole")
	f.StringVar(&secretIDFile, "secret-id-file", "", "write the secret id to this file (0600) instead of printing it")
	f.DurationVar(&tokenTTL, "token-ttl", time.Hour, "the gateway's token TTL (renewed by the gateway)")
	f.DurationVar(&tokenMaxTTL, "token-max-ttl", 24*time.Hour, "the gateway's token maximum TTL (then it logs in again)")
	f.DurationVar(&secretIDTTL, "secret-id-ttl", 0, "secret id lifetime (0: until revoked)")
	f.StringSliceVar(&cidrs, "cidr", nil, "bind the secret id and tokens to these CIDR blocks (repeatable)")
	addTimeout(cmd, &timeout, 30*time.Second)
	addFormat(cmd, &asJSON)
	addSet(cmd, &sets)
	return cmd
}

func vaultPolicyCommand() *cobra.Command {
	var cfgPath string
	var asJSON bool
	var sets []string
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Print the gateway's Vault policy (HCL) for review",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath, sets)
			if err != nil {
				return err
			}
			v := cfg.Keys.Vault
			hcl := vault.Policy(v.Mount, v.SigningKey, v.PseudonymKey, v.NoteKey)
			return emit(cmd, asJSON, map[string]string{"policy": hcl}, func(w io.Writer) { fmt.Fprint(w, hcl) })
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "the gateway's config file, for keys.vault names (empty: defaults)")
	addFormat(cmd, &asJSON)
	addSet(cmd, &sets)
	return cmd
}

// adminClient is a Vault client from the environment, as the vault CLI
// builds one: VAULT_ADDR, VAULT_CACERT, VAULT_NAMESPACE, VAULT_TOKEN, else
// the token 'vault login' left in ~/.vault-token.
func adminClient(addr string, timeout time.Duration) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault: %w", cfg.Error)
	}
	if addr != "" {
		cfg.Address = addr
	}
	cfg.Timeout = timeout
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if c.Token() == "" {
		home, _ := os.UserHomeDir()
		if b, err := os.ReadFile(filepath.Join(home, ".vault-token")); err == nil {
			c.SetToken(strings.TrimSpace(string(b)))
		}
	}
	if c.Token() == "" {
		return nil, &usageError{errors.New("no Vault token: set VAULT_TOKEN (an administrator's) or run 'vault login' first")}
	}
	return c, nil
}

func writeSecret(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("secret id file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("secret id file: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("secret id file: %w", err)
	}
	return f.Close()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
