// Package config owns the gateway's configuration: one YAML file, then the
// embedded defaults for anything it leaves out, then overrides from flags,
// then validation. Unknown keys are rejected. Secrets never live here: the
// config names where a secret is (a file, Vault), never the secret itself.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalid classifies configuration errors.
var ErrInvalid = errors.New("invalid configuration")

// Duration is a time.Duration written as "5m", "60s".
type Duration struct{ time.Duration }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 5s, 2m)", n.Line, s)
	}
	d.Duration = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Config is the whole configuration.
type Config struct {
	// GatewayID is the audience agency tokens must name.
	GatewayID string `yaml:"gateway_id"`
	// Listen is the address to serve on. Plain HTTP only on loopback.
	Listen string `yaml:"listen"`
	// DataDir holds the audit log, the state store and the local keys.
	DataDir string `yaml:"data_dir"`
	// Registry is the partner registry file; empty: the embedded demo registry.
	Registry string `yaml:"registry"`
	// ProtocolsDir holds the protocol files and their signatures; empty:
	// the embedded (unsigned, so not in force) demo protocols.
	ProtocolsDir string `yaml:"protocols_dir"`
	// PoliciesDir holds the Rego policies; empty: the embedded policies.
	PoliciesDir string `yaml:"policies_dir"`

	TLS    TLS    `yaml:"tls"`
	Auth   Auth   `yaml:"auth"`
	HTTP   HTTP   `yaml:"http"`
	Audit  Audit  `yaml:"audit"`
	Keys   Keys   `yaml:"keys"`
	Policy Policy `yaml:"policy"`
	Log    Log    `yaml:"log"`
}

// TLS names the server certificate and key files (certs/README.md).
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Auth tunes agency token verification.
type Auth struct {
	MaxTokenLifetime Duration `yaml:"max_token_lifetime"`
	ClockSkew        Duration `yaml:"clock_skew"`
	MaxTokenBytes    int      `yaml:"max_token_bytes"`
	ReplayCacheSize  int      `yaml:"replay_cache_size"`
}

// HTTP bounds the server.
type HTTP struct {
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	ReadTimeout       Duration `yaml:"read_timeout"`
	WriteTimeout      Duration `yaml:"write_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
	MaxBodyBytes      int64    `yaml:"max_body_bytes"`
	ShutdownTimeout   Duration `yaml:"shutdown_timeout"`
}

// Audit tunes the audit log.
type Audit struct {
	OpenTimeout Duration `yaml:"open_timeout"`
	MaxBatch    int      `yaml:"max_batch"`
}

// Keys selects the key store.
type Keys struct {
	// Backend is "local" (the default: files under data_dir/keys).
	Backend string `yaml:"backend"`
	// LocalDir overrides data_dir/keys for the local backend.
	LocalDir string        `yaml:"local_dir"`
	Timeout  Duration      `yaml:"timeout"`
	Vault    *VaultOptions `yaml:"vault,omitempty"`
}

// VaultOptions configures the Vault transit backend (see docs/operations.md).
type VaultOptions struct {
	Mount        string `yaml:"mount"`
	SigningKey   string `yaml:"signing_key"`
	PseudonymKey string `yaml:"pseudonym_key"`
	AuthMethod   string `yaml:"auth_method"`
	RoleID       string `yaml:"role_id"`
	SecretIDFile string `yaml:"secret_id_file"`
	TokenFile    string `yaml:"token_file"`
	AppRoleMount string `yaml:"approle_mount"`
	PseudonymPin int    `yaml:"pseudonym_key_version"`
}

// Policy tunes decisions.
type Policy struct {
	EvalTimeout        Duration `yaml:"eval_timeout"`
	OverrideReviewDays int      `yaml:"override_review_days"`
	MinJustification   int      `yaml:"min_justification_chars"`
}

// Log tunes logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Default returns the embedded defaults.
func Default() Config {
	return Config{
		GatewayID: "trustgate",
		Listen:    "127.0.0.1:8080",
		DataDir:   "data",
		Auth: Auth{
			MaxTokenLifetime: Duration{5 * time.Minute},
			ClockSkew:        Duration{60 * time.Second},
			MaxTokenBytes:    8192,
			ReplayCacheSize:  1_000_000,
		},
		HTTP: HTTP{
			ReadHeaderTimeout: Duration{5 * time.Second},
			ReadTimeout:       Duration{10 * time.Second},
			WriteTimeout:      Duration{30 * time.Second},
			IdleTimeout:       Duration{120 * time.Second},
			MaxHeaderBytes:    16 << 10,
			MaxBodyBytes:      64 << 10,
			ShutdownTimeout:   Duration{10 * time.Second},
		},
		Audit:  Audit{OpenTimeout: Duration{time.Second}, MaxBatch: 512},
		Keys:   Keys{Backend: "local", Timeout: Duration{2 * time.Second}},
		Policy: Policy{EvalTimeout: Duration{2 * time.Second}, OverrideReviewDays: 5, MinJustification: 40},
		Log:    Log{Level: "info", Format: "text"},
	}
}

// Load reads path over the defaults (an empty path: defaults only).
// Relative paths in the file are resolved against the file's directory.
func Load(path string) (Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("config %s: %w: %v", path, ErrInvalid, err)
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&c.DataDir, &c.Registry, &c.ProtocolsDir, &c.PoliciesDir, &c.TLS.CertFile, &c.TLS.KeyFile, &c.Keys.LocalDir} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	return c, nil
}

// Validate checks the whole configuration and says what is wrong.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.GatewayID == "" {
		bad("gateway_id", "required")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	} else if !IsLoopback(host) && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		bad("listen", "%q is not a loopback address: plain HTTP is only allowed on loopback; set tls.cert_file and tls.key_file (see certs/README.md)", c.Listen)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "give both cert_file and key_file, or neither")
	}
	if c.DataDir == "" {
		bad("data_dir", "required")
	}
	if c.Auth.MaxTokenLifetime.Duration <= 0 || c.Auth.MaxTokenLifetime.Duration > time.Hour {
		bad("auth.max_token_lifetime", "must be between 1s and 1h")
	}
	if c.Auth.ClockSkew.Duration < 0 || c.Auth.ClockSkew.Duration > 5*time.Minute {
		bad("auth.clock_skew", "must be between 0 and 5m")
	}
	if c.Auth.MaxTokenBytes < 512 || c.Auth.MaxTokenBytes > 64<<10 {
		bad("auth.max_token_bytes", "must be between 512 and 65536")
	}
	if c.Auth.ReplayCacheSize < 1000 {
		bad("auth.replay_cache_size", "must be at least 1000")
	}
	for name, d := range map[string]Duration{
		"http.read_header_timeout": c.HTTP.ReadHeaderTimeout, "http.read_timeout": c.HTTP.ReadTimeout,
		"http.write_timeout": c.HTTP.WriteTimeout, "http.idle_timeout": c.HTTP.IdleTimeout,
		"http.shutdown_timeout": c.HTTP.ShutdownTimeout, "audit.open_timeout": c.Audit.OpenTimeout,
		"keys.timeout": c.Keys.Timeout, "policy.eval_timeout": c.Policy.EvalTimeout,
	} {
		if d.Duration <= 0 {
			bad(name, "must be positive")
		}
	}
	if c.HTTP.MaxHeaderBytes < 1024 {
		bad("http.max_header_bytes", "must be at least 1024")
	}
	if c.HTTP.MaxBodyBytes < 1024 || c.HTTP.MaxBodyBytes > 1<<20 {
		bad("http.max_body_bytes", "must be between 1024 and 1048576")
	}
	if c.Audit.MaxBatch < 1 {
		bad("audit.max_batch", "must be at least 1")
	}
	switch c.Keys.Backend {
	case "local":
	case "vault":
		if c.Keys.Vault == nil {
			bad("keys.vault", "required when keys.backend is vault")
		}
	default:
		bad("keys.backend", "%q is not one of local, vault", c.Keys.Backend)
	}
	if c.Policy.OverrideReviewDays < 1 || c.Policy.OverrideReviewDays > 90 {
		bad("policy.override_review_days", "must be between 1 and 90")
	}
	if c.Policy.MinJustification < 10 {
		bad("policy.min_justification_chars", "must be at least 10")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// IsLoopback reports whether host is a loopback name or address.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
