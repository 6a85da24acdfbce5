package demo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"

	"github.com/childrens-trust/trustgate/internal/provider"
	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/childrens-trust/trustgate/protocols/records"
)

// RecordsDir is where Init writes the demo providers' records.
func RecordsDir(dir string) string { return filepath.Join(dir, "records") }

// EnsureRecords writes the demo records to DIR/records unless that
// directory exists (a demo prepared before the records were added).
func EnsureRecords(dir string) error {
	if _, err := os.Stat(RecordsDir(dir)); err == nil {
		return nil
	}
	return writeRecords(RecordsDir(dir))
}

// writeRecords copies the embedded synthetic records to DIR/records.
func writeRecords(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	names, err := fs.Glob(records.FS, "*.json")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for _, n := range names {
		b, _ := fs.ReadFile(records.FS, n)
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

// Providers prepares a reference provider for every partner of the demo
// registry under dir whose endpoint is a loopback http URL and whose
// records are in DIR/records, each listening on its registry endpoint and
// verifying tokens against gatewayJWKS. ctx bounds their key set caches.
// On error, the ones already opened are closed.
func Providers(ctx context.Context, dir, gatewayJWKS, gatewayID string, log *slog.Logger) (svcs []*provider.Service, err error) {
	reg, err := registry.Load(ctx, filepath.Join(dir, "protocols", "trust.yaml"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			for _, s := range svcs {
				s.Close()
			}
		}
	}()
	for _, p := range reg.Partners() {
		u, perr := url.Parse(p.Endpoint)
		if p.Endpoint == "" || perr != nil || u.Scheme != "http" || provider.CheckURL(p.Endpoint) != nil {
			continue
		}
		if _, serr := os.Stat(filepath.Join(RecordsDir(dir), p.ID+".json")); errors.Is(serr, fs.ErrNotExist) {
			continue
		}
		s, err := provider.NewService(ctx, provider.ServiceConfig{
			Partner:     p.ID,
			RecordsDir:  RecordsDir(dir),
			Listen:      u.Host,
			GatewayJWKS: gatewayJWKS,
			GatewayID:   gatewayID,
			Logger:      log,
		})
		if err != nil {
			return svcs, fmt.Errorf("demo provider %s: %w", p.ID, err)
		}
		svcs = append(svcs, s)
	}
	return svcs, nil
}
