package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/childrens-trust/trustgate/internal/schema"
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
	// Registry is the partner registry file; empty: trust.yaml in
	// protocols_dir, or the embedded demo registry when that is empty too.
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
	// Metrics serves Prometheus metrics on an address of its own.
	Metrics Metrics `yaml:"metrics"`
	// Runtime tunes the Go runtime of `trustgate serve`.
	Runtime Runtime `yaml:"runtime"`

	// Providers and Notifications tune record fetches and access
	// notifications (sharing.go, docs/providers.md).
	Providers     Providers     `yaml:"providers"`
	Notifications Notifications `yaml:"notifications"`

	// Index tunes the involvement index (index.go, docs/index.md).
	Index Index `yaml:"index"`

	// Console is the web console for people (internal/console,
	// docs/console.md).
	Console Console `yaml:"console"`
}

// Console configures the web console under /console/.
type Console struct {
	// Enabled serves the console (default true).
	Enabled bool `yaml:"enabled"`
	// PublicURL is the gateway's address as people's browsers reach it
	// (the OIDC redirect URI is PublicURL + /console/callback); empty:
	// http(s):// + listen.
	PublicURL string `yaml:"public_url"`
	// DevLinks allows the development sign-in (`trustgate console link`):
	// a one-time link signed with an agency's key. Off by default; the
	// demo Trust turns it on.
	DevLinks bool `yaml:"dev_links"`
	// LinkMaxLifetime bounds a development link's lifetime.
	LinkMaxLifetime Duration `yaml:"link_max_lifetime"`
	// IdleTimeout ends a session unused this long; AbsoluteTimeout ends
	// any session this long after sign-in.
	IdleTimeout     Duration `yaml:"idle_timeout"`
	AbsoluteTimeout Duration `yaml:"absolute_timeout"`
}

// Runtime tunes the Go runtime of the serving process.
type Runtime struct {
	// GCPercent is the garbage collector's target (Go's GOGC): the heap
	// may grow by this percentage of the live heap before a collection.
	// The gateway's live heap is small (tens of MB: the registry, the
	// compiled policy, the replay cache) and every decision allocates, so
	// at Go's default of 100 it collects very often; 400 measured about a
	// quarter less CPU per decision (docs/performance.md) for a heap of a
	// few hundred MB at most. A GOGC environment variable wins; so does
	// GOMEMLIMIT, which bounds the heap whatever this says.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimitMiB is the Go runtime's soft memory limit (Go's
	// GOMEMLIMIT, which wins when set): near it the collector runs
	// sooner whatever GCPercent says, so that the heap GCPercent lets grow
	// stays bounded under load (docs/performance.md: resident memory).
	// 0: no limit.
	MemoryLimitMiB int `yaml:"memory_limit_mib"`
	// Procs is how many goroutines run Go code at once (Go's GOMAXPROCS,
	// which wins when set). 0: one more than the CPUs the process may use,
	// so that the audit log's committer, which spends its time in fsync,
	// runs as soon as each fsync returns instead of waiting for a request
	// to give up a CPU: under load each commit then carries more entries
	// (docs/performance.md: 0.86x -> 0.97x of OPA's throughput on distinct
	// requests on 2 cores).
	Procs int `yaml:"procs"`
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
	// CommitDelay bounds how long, under load, a group commit is held
	// open for requests still being decided (audit.Options.CommitDelay);
	// 0 disables the wait.
	CommitDelay Duration `yaml:"commit_delay"`
	// JournalMiB is the size of the audit journal beside the log
	// (data_dir/audit.db.journal, docs/audit-journal.md): each group
	// commit is one write and one sync into it, and the log file is
	// brought up to date behind. 0 turns the journal off: each group
	// commit is a transaction of the log file.
	JournalMiB int `yaml:"journal_mib"`

	// Signed checkpoints of the audit log (docs/auditing.md): one every
	// CheckpointEvery entries or CheckpointInterval (if the log grew), and
	// at shutdown. Each is also written to CheckpointDir and POSTed to
	// CheckpointWebhook (https, or http to loopback), if set, so that a
	// copy lives outside the gateway's control.
	CheckpointEvery    int      `yaml:"checkpoint_every"`
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	CheckpointDir      string   `yaml:"checkpoint_dir"`
	CheckpointWebhook  string   `yaml:"checkpoint_webhook"`
	WebhookTimeout     Duration `yaml:"webhook_timeout"`
	// SnapshotTimeout bounds streaming a copy of the log to an auditor.
	SnapshotTimeout Duration `yaml:"snapshot_timeout"`

	// Origin is the first line of every checkpoint note (the C2SP form
	// of the checkpoints, docs/audit-format.md) and the name of the
	// gateway's note key: the Trust's name for its log, a schema-less
	// URL without spaces or '+'. Empty: GATEWAY_ID/audit. Never change
	// it once witnesses co-sign: they know the log by it.
	Origin string `yaml:"origin"`
	// Witnesses are the verifier keys (NAME+HASH+BASE64, Ed25519) of the
	// witnesses whose cosignatures of the checkpoint notes the gateway
	// collects (POST /v1/audit/checkpoints/cosignatures); at most 50.
	Witnesses []string `yaml:"witnesses"`
}

// CheckpointOrigin is the checkpoint notes' origin: Audit.Origin, or
// GATEWAY_ID/audit.
func (c *Config) CheckpointOrigin() string {
	if c.Audit.Origin != "" {
		return c.Audit.Origin
	}
	return c.GatewayID + "/audit"
}

// Keys selects the key store.
type Keys struct {
	// Backend is "local" (the default: files under data_dir/keys) or
	// "vault" (HashiCorp Vault transit, see docs/operations.md).
	Backend string `yaml:"backend"`
	// LocalDir overrides data_dir/keys for the local backend.
	LocalDir string `yaml:"local_dir"`
	// Timeout bounds every key operation (and every call to Vault).
	Timeout Duration     `yaml:"timeout"`
	Vault   VaultOptions `yaml:"vault"`
}

// VaultOptions configures the Vault transit backend (see docs/operations.md).
// The Vault server, its CA and namespace come from the environment the way
// every Vault client reads them (VAULT_ADDR, VAULT_CACERT, VAULT_NAMESPACE,
// ...); secrets (the token, the AppRole secret id) are read from files or
// the environment at login time, never from this file.
type VaultOptions struct {
	// Address overrides VAULT_ADDR (empty: the environment decides).
	Address string `yaml:"address"`
	// Mount is the transit secrets engine's mount path.
	Mount string `yaml:"mount"`
	// SigningKey is the transit key the gateway signs with
	// (ecdsa-p256 or ed25519).
	SigningKey string `yaml:"signing_key"`
	// PseudonymKey is the transit key pseudonyms are HMACs under.
	PseudonymKey string `yaml:"pseudonym_key"`
	// PseudonymKeyVersion pins the version of PseudonymKey every
	// pseudonym is computed with, so pseudonyms survive a rotation.
	PseudonymKeyVersion int `yaml:"pseudonym_key_version"`
	// NoteKey is the transit key (ed25519) that signs the checkpoint
	// notes witnesses co-sign (docs/audit-format.md).
	NoteKey string `yaml:"note_key"`
	// AuthMethod is "approle" (role_id here, secret id from
	// secret_id_file at each login) or "token" (token_file, else
	// VAULT_TOKEN).
	AuthMethod   string `yaml:"auth_method"`
	RoleID       string `yaml:"role_id"`
	SecretIDFile string `yaml:"secret_id_file"`
	TokenFile    string `yaml:"token_file"`
	AppRoleMount string `yaml:"approle_mount"`
	// BatchWindow is how long a sign or HMAC request waits for others to
	// share one transit call; BatchMax caps the items in one call.
	BatchWindow Duration `yaml:"batch_window"`
	BatchMax    int      `yaml:"batch_max"`
	// PseudonymCacheSize bounds the in-memory pseudonym cache (entries);
	// 0 disables it.
	PseudonymCacheSize int `yaml:"pseudonym_cache_size"`
	// CheckInterval is how often the store probes Vault in the background
	// (health, key versions after a rotation).
	CheckInterval Duration `yaml:"check_interval"`
}

// DefaultVault returns the defaults of the Vault section.
func DefaultVault() VaultOptions {
	return VaultOptions{
		Mount:               "transit",
		SigningKey:          "trustgate-signing",
		PseudonymKey:        "trustgate-pseudonym",
		PseudonymKeyVersion: 1,
		NoteKey:             "trustgate-note",
		AuthMethod:          "approle",
		AppRoleMount:        "approle",
		BatchWindow:         Duration{time.Millisecond},
		BatchMax:            64,
		PseudonymCacheSize:  100_000,
		CheckInterval:       Duration{2 * time.Second},
	}
}

// Policy tunes decisions.
type Policy struct {
	EvalTimeout        Duration `yaml:"eval_timeout"`
	OverrideReviewDays int      `yaml:"override_review_days"`
	MinJustification   int      `yaml:"min_justification_chars"`
	// Watch reloads the revision when a file in the policies or protocols
	// directory changes (SIGHUP and POST /v1/admin/reload always do);
	// WatchDebounce is how long a burst of changes must be quiet first.
	// RecheckRecent is how many recently recorded decisions every
	// candidate revision re-evaluates before it is activated (0: none).
	// See docs/ig-guide.md.
	Watch         bool     `yaml:"watch"`
	WatchDebounce Duration `yaml:"watch_debounce"`
	RecheckRecent int      `yaml:"recheck_recent"`
	// ReloadTimeout bounds loading and checking one candidate revision.
	ReloadTimeout Duration `yaml:"reload_timeout"`
	// DecisionMemo is how many decisions of the active revision the
	// gateway remembers, to answer a request exactly like an earlier one
	// without evaluating it again (decision.Memo: only when the
	// policy reads the time only against protocol dates; keyed on the
	// child's consent records as they stand to the time, ids included;
	// one hit in 256 is re-evaluated as a check), at least 1,024. 0 turns
	// it off.
	DecisionMemo int `yaml:"decision_memo"`
	// TrustPrefill computes, in the background when a revision becomes
	// active, the Trust-level part of a decision (the rules that apply)
	// for every requester, role it may hold, provider and purpose of the
	// Trust, using at most half of one core, so that the first request of
	// each kind does not pay for it (decision.Memo.Prefill). The answers
	// are the same either way.
	TrustPrefill bool `yaml:"trust_prefill"`
}

// Metrics configures the Prometheus endpoint (docs/operations.md).
type Metrics struct {
	// Listen is where GET /metrics is served, apart from the API (plain
	// HTTP: loopback or a private interface the scraper reaches); empty
	// turns metrics off. Port 0 picks a free port (logged at start-up).
	Listen string `yaml:"listen"`
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
		Audit: Audit{OpenTimeout: Duration{time.Second}, MaxBatch: 512, CommitDelay: Duration{5 * time.Millisecond}, JournalMiB: 16,
			CheckpointEvery: 1000, CheckpointInterval: Duration{time.Minute},
			WebhookTimeout: Duration{5 * time.Second}, SnapshotTimeout: Duration{10 * time.Minute}},
		Keys:    Keys{Backend: "local", Timeout: Duration{2 * time.Second}, Vault: DefaultVault()},
		Policy:  Policy{EvalTimeout: Duration{2 * time.Second}, OverrideReviewDays: 5, MinJustification: 40, Watch: true, WatchDebounce: Duration{500 * time.Millisecond}, RecheckRecent: 200, ReloadTimeout: Duration{time.Minute}, DecisionMemo: 10_000, TrustPrefill: true},
		Log:     Log{Level: "info", Format: "text"},
		Metrics: Metrics{Listen: "127.0.0.1:9464"},
		Runtime: Runtime{GCPercent: 400, MemoryLimitMiB: 100},

		Providers:     defaultProviders(),
		Notifications: defaultNotifications(),
		Index:         defaultIndex(),
		Console: Console{Enabled: true, LinkMaxLifetime: Duration{time.Hour},
			IdleTimeout: Duration{30 * time.Minute}, AbsoluteTimeout: Duration{8 * time.Hour}},
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
		return c, fmt.Errorf("config: %w: %w", ErrInvalid, err)
	}
	// The published schema first (docs/schemas/config.schema.json, the one
	// an editor checks the file with), then the strict decode.
	probs, err := schema.CheckYAML(schema.Config, b)
	if err != nil {
		return c, fmt.Errorf("config %s: %w: %v", path, ErrInvalid, err)
	}
	if len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.String()
		}
		return c, fmt.Errorf("config %s: %w: %s", path, ErrInvalid, strings.Join(msgs, "; "))
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("config %s: %w: %v", path, ErrInvalid, err)
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&c.DataDir, &c.Registry, &c.ProtocolsDir, &c.PoliciesDir, &c.TLS.CertFile, &c.TLS.KeyFile, &c.Keys.LocalDir, &c.Audit.CheckpointDir, &c.Keys.Vault.SecretIDFile, &c.Keys.Vault.TokenFile, &c.Providers.CAFile} {
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
	if m := c.Metrics.Listen; m != "" {
		if _, port, err := net.SplitHostPort(m); err != nil {
			bad("metrics.listen", "%q is not host:port", m)
		} else if m == c.Listen && port != "0" {
			bad("metrics.listen", "must differ from listen: metrics are served apart from the API")
		}
	}
	if c.Console.PublicURL != "" {
		if u, err := url.Parse(c.Console.PublicURL); err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && IsLoopback(u.Hostname()))) || u.Host == "" || (u.Path != "" && u.Path != "/") {
			bad("console.public_url", "%q must be an https:// origin (http:// only on loopback) without a path", c.Console.PublicURL)
		}
	}
	if c.Console.LinkMaxLifetime.Duration <= 0 || c.Console.LinkMaxLifetime.Duration > 24*time.Hour {
		bad("console.link_max_lifetime", "must be between 1s and 24h")
	}
	if c.Console.IdleTimeout.Duration < time.Minute || c.Console.AbsoluteTimeout.Duration < c.Console.IdleTimeout.Duration || c.Console.AbsoluteTimeout.Duration > 7*24*time.Hour {
		bad("console", "idle_timeout must be at least 1m and absolute_timeout between it and 7 days")
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
	if c.Audit.JournalMiB < 0 || c.Audit.JournalMiB > 1024 {
		bad("audit.journal_mib", "must be between 0 (no journal) and 1024")
	}
	if c.Policy.DecisionMemo < 0 || c.Policy.DecisionMemo > 1_000_000 {
		bad("policy.decision_memo", "must be between 0 (off) and 1000000")
	}
	if c.Runtime.Procs < 0 || c.Runtime.Procs > 1024 {
		bad("runtime.procs", "must be between 0 (the CPUs plus one) and 1024")
	}
	if c.Runtime.MemoryLimitMiB < 0 || (c.Runtime.MemoryLimitMiB > 0 && c.Runtime.MemoryLimitMiB < 32) {
		bad("runtime.memory_limit_mib", "must be 0 (no limit) or at least 32")
	}
	if c.Runtime.GCPercent < 25 || c.Runtime.GCPercent > 10000 {
		bad("runtime.gc_percent", "must be between 25 and 10000")
	}
	if d := c.Audit.CommitDelay.Duration; d < 0 || d > time.Second {
		bad("audit.commit_delay", "must be between 0 and 1s")
	}
	if c.Audit.CheckpointEvery < 1 || c.Audit.CheckpointEvery > 10_000_000 {
		bad("audit.checkpoint_every", "must be between 1 and 10000000 entries")
	}
	if d := c.Audit.CheckpointInterval.Duration; d < time.Second || d > 24*time.Hour {
		bad("audit.checkpoint_interval", "must be between 1s and 24h")
	}
	if d := c.Audit.WebhookTimeout.Duration; d <= 0 || d > time.Minute {
		bad("audit.webhook_timeout", "must be between 1ms and 1m")
	}
	if d := c.Audit.SnapshotTimeout.Duration; d < time.Second || d > 24*time.Hour {
		bad("audit.snapshot_timeout", "must be between 1s and 24h")
	}
	if o := c.CheckpointOrigin(); !noteName(o) {
		bad("audit.origin", "%q is not a signed-note name: printable ASCII without spaces or '+', at most 256 characters", o)
	}
	if len(c.Audit.Witnesses) > 50 {
		bad("audit.witnesses", "%d witnesses: at most 50", len(c.Audit.Witnesses))
	}
	for i, w := range c.Audit.Witnesses {
		if name, _, _ := strings.Cut(w, "+"); strings.Count(w, "+") < 2 || !noteName(name) {
			bad(fmt.Sprintf("audit.witnesses[%d]", i), "%q is not a signed-note verifier key NAME+HASH+BASE64", w)
		}
	}
	if w := c.Audit.CheckpointWebhook; w != "" {
		if why := webhookProblem(w); why != "" {
			bad("audit.checkpoint_webhook", "%s", why)
		}
	}
	switch c.Keys.Backend {
	case "local":
	case "vault":
		for _, e := range c.Keys.Vault.validate() {
			bad("keys.vault."+e[0], "%s", e[1])
		}
	default:
		bad("keys.backend", "%q is not one of local, vault", c.Keys.Backend)
	}
	c.validateSharing(bad)
	c.validateIndex(bad)
	if c.Policy.OverrideReviewDays < 1 || c.Policy.OverrideReviewDays > 90 {
		bad("policy.override_review_days", "must be between 1 and 90")
	}
	if c.Policy.MinJustification < 10 {
		bad("policy.min_justification_chars", "must be at least 10")
	}
	if d := c.Policy.WatchDebounce.Duration; d < 10*time.Millisecond || d > time.Minute {
		bad("policy.watch_debounce", "must be between 10ms and 1m")
	}
	if n := c.Policy.RecheckRecent; n < 0 || n > 10000 {
		bad("policy.recheck_recent", "must be between 0 and 10000")
	}
	if d := c.Policy.ReloadTimeout.Duration; d < 5*time.Second || d > 10*time.Minute {
		bad("policy.reload_timeout", "must be between 5s and 10m")
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

// validate checks the Vault section; each problem is {field, reason}.
func (v *VaultOptions) validate() [][2]string {
	var errs [][2]string
	bad := func(field, format string, a ...any) { errs = append(errs, [2]string{field, fmt.Sprintf(format, a...)}) }
	for field, name := range map[string]string{"mount": v.Mount, "approle_mount": v.AppRoleMount} {
		if !vaultName(name) {
			bad(field, "%q is not a Vault mount path (letters, digits, '-', '_', '.', '/' between segments)", name)
		}
	}
	for field, name := range map[string]string{"signing_key": v.SigningKey, "pseudonym_key": v.PseudonymKey, "note_key": v.NoteKey} {
		if !vaultName(name) || strings.Contains(name, "/") {
			bad(field, "%q is not a transit key name (letters, digits, '-', '_', '.')", name)
		}
	}
	if v.SigningKey == v.PseudonymKey {
		bad("pseudonym_key", "must differ from signing_key")
	}
	if v.NoteKey == v.SigningKey || v.NoteKey == v.PseudonymKey {
		bad("note_key", "must differ from signing_key and pseudonym_key")
	}
	if v.PseudonymKeyVersion < 1 {
		bad("pseudonym_key_version", "must be at least 1 (the version every pseudonym is computed with)")
	}
	switch v.AuthMethod {
	case "approle":
		if v.RoleID == "" {
			bad("role_id", "required with auth_method approle")
		}
		if v.SecretIDFile == "" {
			bad("secret_id_file", "required with auth_method approle (the secret id is read from it at each login)")
		}
	case "token":
		if v.RoleID != "" || v.SecretIDFile != "" {
			bad("auth_method", "role_id and secret_id_file are for approle, not token")
		}
	default:
		bad("auth_method", "%q is not one of approle, token", v.AuthMethod)
	}
	if v.BatchWindow.Duration <= 0 || v.BatchWindow.Duration > 50*time.Millisecond {
		bad("batch_window", "must be between 1ns and 50ms")
	}
	if v.BatchMax < 1 || v.BatchMax > 1000 {
		bad("batch_max", "must be between 1 and 1000")
	}
	if v.PseudonymCacheSize < 0 || v.PseudonymCacheSize > 10_000_000 {
		bad("pseudonym_cache_size", "must be between 0 (off) and 10000000")
	}
	if v.CheckInterval.Duration < 100*time.Millisecond || v.CheckInterval.Duration > time.Minute {
		bad("check_interval", "must be between 100ms and 1m")
	}
	return errs
}

// noteName reports whether s may name a signed-note key (an origin).
func noteName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == '+' || r > '~' {
			return false
		}
	}
	return true
}

// vaultName reports whether s is a plausible Vault mount or key name.
func vaultName(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '/' || s[len(s)-1] == '/' {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == '/':
		default:
			return false
		}
	}
	return !strings.Contains(s, "//") && !strings.Contains(s, "..")
}

// webhookProblem says why u cannot receive checkpoints, or "": it must be
// an absolute https URL, or http to a loopback host, without credentials
// in it (a secret never lives in the config).
func webhookProblem(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return fmt.Sprintf("%q is not an absolute URL", u)
	}
	if p.User != nil {
		return "must not hold credentials"
	}
	switch p.Scheme {
	case "https":
	case "http":
		if !IsLoopback(p.Hostname()) {
			return "plain http is only allowed to a loopback host; use https"
		}
	default:
		return fmt.Sprintf("scheme %q is not https", p.Scheme)
	}
	return ""
}
