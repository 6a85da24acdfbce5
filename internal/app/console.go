package app

import (
	"net/http"
	"strings"
	"time"

	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/console"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// withConsole serves the web console under /console/ in front of the API
// handler api (docs/console.md). The console calls api in-process with
// the signed-in person's principal; development links are verified like
// agency tokens (the same replay cache), for the console's audience.
func (a *App) withConsole(api http.Handler, idCfg identity.Config) (http.Handler, error) {
	cc := a.cfg.Console
	if !cc.Enabled {
		return api, nil
	}
	public := cc.PublicURL
	if public == "" {
		scheme := "http"
		if a.cfg.TLS.CertFile != "" {
			scheme = "https"
		}
		public = scheme + "://" + a.cfg.Listen
	}
	deps := console.Deps{
		API:      api,
		Registry: func() *registry.Registry { return a.holder.Current().Registry },
		Audit:    a.audit,
		Authorize: func(partner, practitioner, role string, at time.Time) error {
			m := a.holder.Current().Authz
			if m == nil {
				m = authz.New(a.holder.Current().Registry, nil)
			}
			_, err := m.Authorize(partner, practitioner, role, at)
			return err
		},
	}
	if cc.DevLinks {
		lc := idCfg
		lc.Audience = console.LinkAudience(a.cfg.GatewayID)
		lc.MaxLifetime = cc.LinkMaxLifetime.Duration
		deps.Links = identity.NewVerifier(lc, func() identity.Directory { return a.holder.Current().Registry }, a.replay)
	}
	c, err := console.New(console.Options{
		PublicURL:       public,
		Secure:          a.cfg.TLS.CertFile != "" || strings.HasPrefix(public, "https://"),
		IdleTimeout:     cc.IdleTimeout.Duration,
		AbsoluteTimeout: cc.AbsoluteTimeout.Duration,
		HTTPTimeout:     10 * time.Second,
		Now:             a.now,
		Logger:          a.log,
	}, deps)
	if err != nil {
		return nil, err
	}
	return c.Wrap(api), nil
}
