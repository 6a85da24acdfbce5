package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"

	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/provider"
)

func providerCommand() *cobra.Command {
	var c provider.ServiceConfig
	var level string
	cmd := &cobra.Command{
		Use:   "provider --partner ID --records DIR --gateway-jwks URL",
		Short: "Run the reference provider: serve a partner's records to the gateway, verifying every decision token",
		Long: `Run the reference provider for one partner agency (docs/providers.md).
It serves DIR/<partner>.json to the gateway at GET /v1/record, only after
verifying the gateway's decision token (signature against --gateway-jwks,
audience = --partner, expiry, single use), and returns only the categories
and fields the token allows. It receives the gateway's signed access
notifications at POST /v1/notifications and logs them.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.Partner == "" || c.RecordsDir == "" || c.GatewayJWKS == "" {
				return &usageError{errors.New("--partner, --records and --gateway-jwks are required")}
			}
			c.Logger = newLogger(config.Log{Level: level, Format: "text"})
			svc, err := provider.NewService(cmd.Context(), c)
			if err != nil {
				return err
			}
			// The first line on stdout names the address (scripts and tests
			// read it when --listen has port 0).
			fmt.Fprintf(cmd.OutOrStdout(), "trustgate provider %s listening on %s (%d children)\n", c.Partner, svc.URL(), svc.Children())
			return svc.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Partner, "partner", "", "this agency's partner id (required)")
	f.StringVar(&c.RecordsDir, "records", "", "directory holding <partner>.json (required)")
	f.StringVar(&c.GatewayJWKS, "gateway-jwks", "", "the gateway's key set, e.g. http://127.0.0.1:8080/.well-known/jwks.json (required)")
	f.StringVar(&c.Listen, "listen", "127.0.0.1:9100", "listen address (plain HTTP only on loopback)")
	f.StringVar(&c.GatewayID, "gateway-id", "trustgate", "the gateway's id (the tokens' issuer)")
	f.StringVar(&c.GatewayCA, "gateway-ca", "", "CA certificates (PEM) for an https gateway key set URL")
	f.StringVar(&c.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	f.StringVar(&c.TLSKey, "tls-key", "", "and this key (PEM)")
	f.StringVar(&level, "log-level", "info", "debug, info, warn, error")
	return cmd
}

// demoRunCommand runs the demo gateway and, in the same process, a
// reference provider for every demo partner: `make run`.
func demoRunCommand() *cobra.Command {
	var dir, listen string
	var sets []string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the demo gateway and a reference provider for every demo partner, in one process",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(filepath.Join(dir, "trustgate.yaml"), sets)
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Listen = listen
			}
			host, port, err := net.SplitHostPort(cfg.Listen)
			if err != nil {
				return &usageError{fmt.Errorf("--listen %q is not host:port", cfg.Listen)}
			}
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			scheme := "http"
			if cfg.TLS.CertFile != "" {
				scheme = "https"
			}
			jwks := scheme + "://" + net.JoinHostPort(host, port) + "/.well-known/jwks.json"
			log := newLogger(cfg.Log)
			if err := demo.EnsureRecords(dir); err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			svcs, err := demo.Providers(ctx, dir, jwks, cfg.GatewayID, log)
			if err != nil {
				return err
			}
			var wg sync.WaitGroup
			errc := make(chan error, len(svcs))
			for _, s := range svcs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.Run(ctx); err != nil {
						errc <- err
						cancel()
					}
				}()
			}
			log.Info("demo providers listening", "count", len(svcs))
			// The demo index is populated by the agencies' caseload syncs,
			// through the gateway, once it is ready (docs/index.md).
			go func() {
				base := scheme + "://" + net.JoinHostPort(host, port)
				if err := demo.SeedIndex(ctx, dir, base, cfg.GatewayID); err != nil && ctx.Err() == nil {
					log.Warn("the demo involvement index was not seeded", "err", err)
				} else if err == nil {
					log.Info("demo involvement index ready")
				}
			}()
			err = serve(ctx, cfg, log)
			cancel()
			wg.Wait()
			close(errc)
			return errors.Join(err, <-errc)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".demo", "demo directory (from 'trustgate demo init')")
	cmd.Flags().StringVar(&listen, "listen", "", "gateway listen address, overriding the config")
	addSet(cmd, &sets)
	return cmd
}
