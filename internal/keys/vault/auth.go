package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// Auth methods.
const (
	AuthAppRole = "approle"
	AuthToken   = "token"
)

// authenticator keeps the client logged in: it logs in (AppRole: the
// secret id is read from its file at each login; token: the token file is
// re-read, else VAULT_TOKEN), renews the token with the API's lifetime
// watcher, and logs in again when renewal ends or when a call was denied
// and the token turns out to be gone (revoked, expired).
type authenticator struct {
	client *api.Client // the store's client; its token is set here
	login  *api.Client // a token-less clone for the login call
	addr   string
	opts   Options
	log    *slog.Logger
	kick   chan struct{} // a call was denied: check the token
}

func newAuthenticator(client *api.Client, addr string, opts Options) (*authenticator, error) {
	lc, err := client.CloneWithHeaders()
	if err != nil {
		return nil, misconfigured(addr, "log in", "%v", err)
	}
	lc.ClearToken()
	return &authenticator{client: client, login: lc, addr: addr, opts: opts, log: opts.Logger, kick: make(chan struct{}, 1)}, nil
}

// denied tells the authenticator that a call was refused with 403.
func (a *authenticator) denied() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// authenticate logs in once and sets the client's token. The returned
// secret describes the token's lifetime.
func (a *authenticator) authenticate(ctx context.Context) (*api.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	switch a.opts.AuthMethod {
	case AuthAppRole:
		op := "log in with AppRole at auth/" + a.opts.AppRoleMount
		sid, err := readSecretFile(a.opts.SecretIDFile)
		if err != nil {
			return nil, misconfigured(a.addr, op, "secret id: %v", err)
		}
		sec, err := a.login.Logical().WriteWithContext(ctx, "auth/"+a.opts.AppRoleMount+"/login",
			map[string]any{"role_id": a.opts.RoleID, "secret_id": sid})
		if err != nil {
			return nil, classify(a.addr, op, err)
		}
		if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
			return nil, invalid(a.addr, op, "no token in the answer")
		}
		a.client.SetToken(sec.Auth.ClientToken)
		return sec, nil
	case AuthToken:
		op := "look up the token"
		tok, src := os.Getenv(api.EnvVaultToken), "VAULT_TOKEN"
		if a.opts.TokenFile != "" {
			var err error
			if tok, err = readSecretFile(a.opts.TokenFile); err != nil {
				return nil, misconfigured(a.addr, op, "token: %v", err)
			}
			src = a.opts.TokenFile
		}
		if tok == "" {
			return nil, misconfigured(a.addr, op, "no token: set VAULT_TOKEN or keys.vault.token_file")
		}
		op = "look up the token from " + src
		lc, err := a.login.CloneWithHeaders()
		if err != nil {
			return nil, misconfigured(a.addr, op, "%v", err)
		}
		lc.SetToken(tok)
		sec, err := lc.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, classify(a.addr, op, err)
		}
		if sec == nil || sec.Data == nil {
			return nil, invalid(a.addr, op, "empty answer")
		}
		ttl, _ := sec.Data["ttl"].(json.Number).Int64()
		renewable, _ := sec.Data["renewable"].(bool)
		a.client.SetToken(tok)
		return &api.Secret{Auth: &api.SecretAuth{ClientToken: tok, Renewable: renewable, LeaseDuration: int(ttl)}}, nil
	default:
		return nil, misconfigured(a.addr, "log in", "auth method %q is not one of approle, token", a.opts.AuthMethod)
	}
}

// run keeps the token alive until ctx ends, starting from a token already
// obtained by authenticate.
func (a *authenticator) run(ctx context.Context, sec *api.Secret) {
	backoff := 250 * time.Millisecond
	for {
		if sec == nil {
			var err error
			sec, err = a.authenticate(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				a.log.Warn("vault: login failed; retrying", "err", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				case <-a.kick:
				}
				backoff = min(backoff*2, 4*time.Second)
				continue
			}
			a.log.Info("vault: logged in again", "method", a.opts.AuthMethod)
			backoff = 250 * time.Millisecond
		}
		if !a.watch(ctx, sec) {
			return
		}
		sec = nil
	}
}

// watch renews sec's token until it can no longer be renewed or is gone.
// It returns false when ctx ended.
func (a *authenticator) watch(ctx context.Context, sec *api.Secret) bool {
	var done <-chan error
	var renewed <-chan *api.RenewOutput
	var expiry <-chan time.Time
	if sec.Auth.Renewable {
		w, err := a.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: sec})
		if err == nil {
			go w.Start()
			defer w.Stop()
			done, renewed = w.DoneCh(), w.RenewCh()
		}
	} else if sec.Auth.LeaseDuration > 0 {
		// Not renewable: log in again at two thirds of its life.
		t := time.NewTimer(time.Duration(sec.Auth.LeaseDuration) * time.Second * 2 / 3)
		defer t.Stop()
		expiry = t.C
	}
	var lastCheck time.Time
	for {
		select {
		case <-ctx.Done():
			return false
		case err := <-done:
			a.log.Info("vault: token renewal ended; logging in again", "err", err)
			return true
		case r := <-renewed:
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				a.log.Debug("vault: token renewed", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
			}
		case <-expiry:
			a.log.Info("vault: token near the end of its life; logging in again")
			return true
		case <-a.kick:
			// A call was denied: is the token gone, or does the policy
			// lack a capability (which a new login would not fix)? At
			// most one look-up a second, however many calls are denied.
			if time.Since(lastCheck) < time.Second {
				continue
			}
			lastCheck = time.Now()
			lctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
			_, err := a.client.Auth().Token().LookupSelfWithContext(lctx)
			cancel()
			if err == nil {
				a.log.Warn("vault: a call was denied but the token is valid: the policy lacks a capability (see docs/operations.md)")
				continue
			}
			if KindOf(classify(a.addr, "", err)) == KindDenied {
				a.log.Warn("vault: the token is no longer valid (revoked or expired); logging in again")
				return true
			}
		}
	}
}

// revoke revokes the store's own token (AppRole logins only: a token given
// by the operator is theirs to manage).
func (a *authenticator) revoke(ctx context.Context) {
	if a.opts.AuthMethod != AuthAppRole {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	_ = a.client.Auth().Token().RevokeSelfWithContext(ctx, "")
}

// readSecretFile reads a one-line secret from a file that only its owner
// may read.
func readSecretFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return "", fmt.Errorf("%s does not hold exactly one secret", path)
	}
	return s, nil
}
