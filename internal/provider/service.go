package provider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// ServiceConfig configures a runnable reference provider (`trustgate
// provider`).
type ServiceConfig struct {
	// Partner is the provider's partner id (the decision token's aud).
	Partner string
	// RecordsDir holds <Partner>.json.
	RecordsDir string
	// Listen is host:port. Plain HTTP only on a loopback host; otherwise
	// TLSCert and TLSKey are required.
	Listen string
	// GatewayJWKS is the gateway's key set URL
	// (https://gateway/.well-known/jwks.json; http only to loopback).
	GatewayJWKS string
	// GatewayID is the gateway's id (the tokens' iss). Default "trustgate".
	GatewayID string
	// GatewayCA is a PEM file of CAs for an https GatewayJWKS; empty: the
	// system roots.
	GatewayCA string
	// TLSCert and TLSKey serve HTTPS (certs/README.md).
	TLSCert, TLSKey string
	// OnNotification, if set, sees each new verified notification.
	OnNotification func(*Notification)
	Logger         *slog.Logger
}

// Service is a reference provider with its records loaded and its
// listener open.
type Service struct {
	c   ServiceConfig
	ln  net.Listener
	srv *http.Server
	n   int
}

// NewService loads the records, prepares token verification against the
// gateway's key set (fetched on first use, refreshed in the background
// until ctx ends) and opens the listener.
func NewService(ctx context.Context, c ServiceConfig) (*Service, error) {
	if c.Partner == "" || c.RecordsDir == "" || c.GatewayJWKS == "" {
		return nil, errors.New("provider: partner, records directory and gateway key set URL are required")
	}
	if c.GatewayID == "" {
		c.GatewayID = "trustgate"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Logger = c.Logger.With("provider", c.Partner)
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("provider: listen %q is not host:port", c.Listen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("provider: give both a TLS certificate and key, or neither")
	}
	if c.TLSCert == "" && !isLoopback(host) {
		return nil, fmt.Errorf("provider: listen %q is not a loopback address: plain HTTP is only allowed on loopback; give a TLS certificate and key (certs/README.md)", c.Listen)
	}
	recs, err := LoadRecords(c.RecordsDir, c.Partner)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.GatewayCA != "" {
		b, err := os.ReadFile(c.GatewayCA)
		if err != nil {
			return nil, fmt.Errorf("provider: gateway CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("provider: gateway CA %s holds no PEM certificate", c.GatewayCA)
		}
		tlsCfg.RootCAs = pool
	}
	client := &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{Proxy: nil, TLSClientConfig: tlsCfg, TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: 5 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	keys, err := NewGatewayKeys(ctx, c.GatewayJWKS, client)
	if err != nil {
		return nil, err
	}
	srv := NewServer(ServerConfig{
		Partner:        c.Partner,
		Records:        recs,
		Tokens:         NewTokenVerifier(VerifierConfig{Partner: c.Partner, Issuer: c.GatewayID, Keys: keys}),
		Keys:           keys,
		Issuer:         c.GatewayID,
		OnNotification: c.OnNotification,
		Logger:         c.Logger,
	})
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("provider: listen %s: %w", c.Listen, err)
	}
	return &Service{
		c: c, ln: ln, n: recs.Len(),
		srv: &http.Server{
			Handler:           srv.Handler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          slog.NewLogLogger(c.Logger.Handler(), slog.LevelWarn),
		},
	}, nil
}

// Addr is the address the provider listens on.
func (s *Service) Addr() string { return s.ln.Addr().String() }

// URL is the provider's base URL (its registry endpoint).
func (s *Service) URL() string {
	if s.c.TLSCert != "" {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// Children is the number of children whose records it holds.
func (s *Service) Children() int { return s.n }

// Run serves until ctx ends, then shuts down within 5 seconds.
func (s *Service) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		if s.c.TLSCert != "" {
			err = s.srv.ServeTLS(s.ln, s.c.TLSCert, s.c.TLSKey)
		} else {
			err = s.srv.Serve(s.ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("provider %s: shutdown: %w", s.c.Partner, err)
	}
	return <-errc
}

// Close releases the listener of a Service that was never Run.
func (s *Service) Close() error { return s.ln.Close() }
