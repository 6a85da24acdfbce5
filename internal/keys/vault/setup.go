package vault

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// SetupOptions says what Setup creates. Zero values take the defaults
// noted.
type SetupOptions struct {
	Mount          string // transit mount (default "transit")
	SigningKey     string // default "trustgate-signing"
	SigningKeyType string // "ecdsa-p256" (default) or "ed25519"
	PseudonymKey   string // default "trustgate-pseudonym"
	NoteKey        string // ed25519, signs checkpoint notes (default "trustgate-note")
	Policy         string // the gateway's policy name (default "trustgate-gateway")
	AppRoleMount   string // default "approle"
	Role           string // the gateway's AppRole (default "trustgate-gateway")
	TokenTTL       time.Duration
	TokenMaxTTL    time.Duration
	// SecretIDTTL limits the secret id's life (0: until revoked). The
	// gateway logs in again with it whenever its token is gone, so it is
	// not limited in uses.
	SecretIDTTL time.Duration
	// CIDRs, if any, bind the secret id and the tokens to these networks.
	CIDRs []string
}

func (o *SetupOptions) defaults() {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&o.Mount, "transit")
	set(&o.SigningKey, "trustgate-signing")
	set(&o.SigningKeyType, "ecdsa-p256")
	set(&o.PseudonymKey, "trustgate-pseudonym")
	set(&o.NoteKey, "trustgate-note")
	set(&o.Policy, "trustgate-gateway")
	set(&o.AppRoleMount, "approle")
	set(&o.Role, "trustgate-gateway")
	if o.TokenTTL <= 0 {
		o.TokenTTL = time.Hour
	}
	if o.TokenMaxTTL <= 0 {
		o.TokenMaxTTL = 24 * time.Hour
	}
}

// SetupResult is what Setup did and the credentials to hand over.
type SetupResult struct {
	Steps    []string // one line per step: what was created or found
	Policy   string   // the HCL written
	RoleID   string
	SecretID string // secret: hand it over, never log it
}

// Policy is the gateway's Vault policy: sign and verify with the signing
// key, sign with the note key, HMAC with the pseudonym key, read the three
// keys' metadata (versions and public keys), and look up, renew and revoke
// its own token. Nothing else: no export, backup, rotate, trim, config or
// delete, no other key.
func Policy(mount, signingKey, pseudonymKey, noteKey string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# trustgate gateway: written by `trustgate vault setup`; see docs/operations.md.\n")
	fmt.Fprintf(&b, "# Sign, verify and HMAC with its own three transit keys and read their\n")
	fmt.Fprintf(&b, "# metadata. No export, backup, rotate, trim, config or delete.\n")
	rule := func(path, caps string) { fmt.Fprintf(&b, "path %q {\n  capabilities = [%s]\n}\n", path, caps) }
	rule(mount+"/sign/"+signingKey, `"update"`)
	rule(mount+"/verify/"+signingKey, `"update"`)
	rule(mount+"/hmac/"+pseudonymKey, `"update"`)
	rule(mount+"/keys/"+signingKey, `"read"`)
	rule(mount+"/keys/"+pseudonymKey, `"read"`)
	rule(mount+"/sign/"+noteKey, `"update"`)
	rule(mount+"/keys/"+noteKey, `"read"`)
	fmt.Fprintf(&b, "# Its own token only (the default policy is not attached).\n")
	rule("auth/token/lookup-self", `"read"`)
	rule("auth/token/renew-self", `"update"`)
	rule("auth/token/revoke-self", `"update"`)
	return b.String()
}

// Setup prepares Vault for a gateway, with an administrator's client: it
// enables transit at the mount, creates the three keys with the right types
// (not exportable, no plaintext backup), writes the policy, enables
// AppRole, creates the gateway's role bound to the policy alone, and
// generates a secret id. It is safe to run again: what exists is checked
// and kept (a key of the wrong type is an error, never replaced); each run
// generates a new secret id.
func Setup(ctx context.Context, c *api.Client, o SetupOptions) (*SetupResult, error) {
	o.defaults()
	if _, ok := signingTypes[o.SigningKeyType]; !ok {
		return nil, fmt.Errorf("vault setup: signing key type %q is not one of ecdsa-p256, ed25519", o.SigningKeyType)
	}
	res := &SetupResult{Policy: Policy(o.Mount, o.SigningKey, o.PseudonymKey, o.NoteKey)}
	step := func(format string, a ...any) { res.Steps = append(res.Steps, fmt.Sprintf(format, a...)) }
	fail := func(what string, err error) (*SetupResult, error) {
		return res, fmt.Errorf("vault setup: %w", classify(c.Address(), what, err))
	}

	mounts, err := c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fail("list secrets engines", err)
	}
	switch m, ok := mounts[strings.TrimSuffix(o.Mount, "/")+"/"]; {
	case !ok:
		if err := c.Sys().MountWithContext(ctx, o.Mount, &api.MountInput{Type: "transit", Description: "trustgate gateway keys"}); err != nil {
			return fail("enable transit at "+o.Mount, err)
		}
		step("transit secrets engine enabled at %s/", o.Mount)
	case m.Type != "transit":
		return res, fmt.Errorf("vault setup: %s/ is a %s engine, not transit", o.Mount, m.Type)
	default:
		step("transit secrets engine already at %s/", o.Mount)
	}

	for _, k := range []struct{ name, typ string }{{o.SigningKey, o.SigningKeyType}, {o.PseudonymKey, pseudonymType}, {o.NoteKey, noteType}} {
		sec, err := c.Logical().ReadWithContext(ctx, o.Mount+"/keys/"+k.name)
		if err != nil {
			return fail("read key "+k.name, err)
		}
		if sec != nil && sec.Data != nil {
			var info keyInfo
			if err := remarshal(sec.Data, &info); err != nil {
				return fail("read key "+k.name, err)
			}
			if info.Type != k.typ {
				return res, fmt.Errorf("vault setup: key %s exists with type %s, want %s; it is never replaced: choose another name", k.name, info.Type, k.typ)
			}
			if info.Exportable || info.AllowPlaintextBackup {
				return res, fmt.Errorf("vault setup: key %s exists but is exportable or allows plaintext backup; the gateway refuses it: choose another name", k.name)
			}
			step("key %s (%s) already exists, latest version %d", k.name, k.typ, info.LatestVersion)
			continue
		}
		body := map[string]any{"type": k.typ, "exportable": false, "allow_plaintext_backup": false}
		if k.typ == pseudonymType {
			body["key_size"] = 32
		}
		if _, err := c.Logical().WriteWithContext(ctx, o.Mount+"/keys/"+k.name, body); err != nil {
			return fail("create key "+k.name, err)
		}
		step("key %s (%s) created", k.name, k.typ)
	}

	if err := c.Sys().PutPolicyWithContext(ctx, o.Policy, res.Policy); err != nil {
		return fail("write policy "+o.Policy, err)
	}
	step("policy %s written", o.Policy)

	auths, err := c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fail("list auth methods", err)
	}
	switch m, ok := auths[strings.TrimSuffix(o.AppRoleMount, "/")+"/"]; {
	case !ok:
		if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, o.AppRoleMount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
			return fail("enable approle at auth/"+o.AppRoleMount, err)
		}
		step("approle auth enabled at auth/%s/", o.AppRoleMount)
	case m.Type != "approle":
		return res, fmt.Errorf("vault setup: auth/%s/ is a %s method, not approle", o.AppRoleMount, m.Type)
	default:
		step("approle auth already at auth/%s/", o.AppRoleMount)
	}

	rolePath := "auth/" + o.AppRoleMount + "/role/" + o.Role
	role := map[string]any{
		"token_policies":          []string{o.Policy},
		"token_no_default_policy": true,
		"token_type":              "service",
		"token_ttl":               int(o.TokenTTL.Seconds()),
		"token_max_ttl":           int(o.TokenMaxTTL.Seconds()),
		"bind_secret_id":          true,
		"secret_id_num_uses":      0,
		"secret_id_ttl":           int(o.SecretIDTTL.Seconds()),
	}
	if len(o.CIDRs) > 0 {
		role["secret_id_bound_cidrs"] = o.CIDRs
		role["token_bound_cidrs"] = o.CIDRs
	}
	if _, err := c.Logical().WriteWithContext(ctx, rolePath, role); err != nil {
		return fail("write role "+o.Role, err)
	}
	step("approle role %s bound to policy %s only (token ttl %s, max %s)", o.Role, o.Policy, o.TokenTTL, o.TokenMaxTTL)

	sec, err := c.Logical().ReadWithContext(ctx, rolePath+"/role-id")
	if err != nil {
		return fail("read role id", err)
	}
	if sec == nil || sec.Data == nil {
		return res, fmt.Errorf("vault setup: no role id for %s", o.Role)
	}
	res.RoleID, _ = sec.Data["role_id"].(string)
	sec, err = c.Logical().WriteWithContext(ctx, rolePath+"/secret-id", map[string]any{})
	if err != nil {
		return fail("generate secret id", err)
	}
	if sec == nil || sec.Data == nil {
		return res, fmt.Errorf("vault setup: no secret id for %s", o.Role)
	}
	res.SecretID, _ = sec.Data["secret_id"].(string)
	acc, _ := sec.Data["secret_id_accessor"].(string)
	step("secret id generated (accessor %s)", acc)
	if res.RoleID == "" || res.SecretID == "" {
		return res, fmt.Errorf("vault setup: empty role id or secret id in Vault's answer")
	}
	return res, nil
}
