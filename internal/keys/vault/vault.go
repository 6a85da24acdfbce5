package vault

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/vault/api"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/childrens-trust/trustgate/internal/keys"
)

// Options configures the store. Zero values take the defaults noted.
type Options struct {
	// Address of Vault; empty: VAULT_ADDR (and VAULT_CACERT, VAULT_NAMESPACE,
	// ... are read from the environment as by every Vault client). Plain
	// http is refused unless the host is loopback.
	Address string
	// Mount is the transit engine's mount path (default "transit").
	Mount string
	// SigningKey is the transit key to sign with: ecdsa-p256 (JWS ES256)
	// or ed25519 (JWS EdDSA). Default "trustgate-signing".
	SigningKey string
	// PseudonymKey is the transit key of type hmac pseudonyms are
	// computed under (default "trustgate-pseudonym"), at the pinned
	// PseudonymKeyVersion (default 1). See doc.go for why it is pinned.
	PseudonymKey        string
	PseudonymKeyVersion int
	// NoteKey is the transit key of type ed25519 that signs the
	// checkpoint notes witnesses co-sign (default "trustgate-note"),
	// at its latest version.
	NoteKey string
	// AuthMethod is AuthAppRole (RoleID, SecretIDFile, AppRoleMount
	// default "approle") or AuthToken (TokenFile, else VAULT_TOKEN).
	AuthMethod   string
	RoleID       string
	SecretIDFile string
	TokenFile    string
	AppRoleMount string
	// Timeout bounds every call to Vault (default 2s).
	Timeout time.Duration
	// BatchWindow (default 1ms) and BatchMax (default 64) shape batches.
	BatchWindow time.Duration
	BatchMax    int
	// CacheSize bounds the pseudonym cache in entries (default 100000;
	// negative: no cache).
	CacheSize int
	// CheckInterval is the period of the background check (default 2s).
	CheckInterval time.Duration
	// Logger receives operational events (never secrets); default: discard.
	Logger *slog.Logger
}

func (o *Options) defaults() {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&o.Mount, "transit")
	set(&o.SigningKey, "trustgate-signing")
	set(&o.PseudonymKey, "trustgate-pseudonym")
	set(&o.NoteKey, "trustgate-note")
	set(&o.AuthMethod, AuthAppRole)
	set(&o.AppRoleMount, "approle")
	if o.PseudonymKeyVersion == 0 {
		o.PseudonymKeyVersion = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.BatchWindow <= 0 {
		o.BatchWindow = time.Millisecond
	}
	if o.BatchMax <= 0 {
		o.BatchMax = 64
	}
	if o.CacheSize == 0 {
		o.CacheSize = 100_000
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Store is a keys.Store whose keys never leave Vault's transit engine.
type Store struct {
	opts   Options
	addr   string
	client *api.Client
	auth   *authenticator
	tr     *transit
	signer *batcher
	hmacer *batcher
	noter  *batcher
	cache  *lru.Cache[string, string] // subject → pseudonym; nil when off

	signing atomic.Pointer[signingState]
	note    atomic.Pointer[noteState]
	healthy atomic.Bool
	opened  atomic.Bool // Open succeeded: changes of health are news

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

// signingState is what the store knows of the signing key: the version new
// signatures use, its JWS algorithm, and the public keys still allowed to
// verify.
type signingState struct {
	keyType string
	alg     jwa.SignatureAlgorithm
	version int
	kid     string
	public  jwk.Set
}

// noteState is the note key's version new note signatures use and its
// public key.
type noteState struct {
	version int
	public  ed25519.PublicKey
}

var _ keys.Store = (*Store)(nil)

// probeInput is what the readiness check signs and HMACs: never a subject.
var probeInput = []byte("trustgate readiness probe")

// Open connects to Vault, logs in, checks both keys (types, the pinned
// pseudonym version, that neither key can be exported) and that the token
// may sign and HMAC, and starts the background token renewal and check.
// Any failure is returned as one error wrapping keys.ErrUnavailable; on
// error nothing is left running.
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts.defaults()
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, misconfigured(cfg.Address, "configure the client", "%v", cfg.Error)
	}
	if opts.Address != "" {
		cfg.Address = opts.Address
	}
	addr := cfg.Address
	if err := checkAddress(addr); err != nil {
		return nil, misconfigured(addr, "configure the client", "%v", err)
	}
	// Our own deadlines and recovery replace the client's retries: a
	// sealed Vault must fail a request now, not in three seconds.
	cfg.MaxRetries = 0
	cfg.Timeout = opts.Timeout
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, misconfigured(addr, "configure the client", "%v", err)
	}
	if opts.AuthMethod == AuthAppRole {
		client.ClearToken() // VAULT_TOKEN is not ours to use
	}
	s := &Store{opts: opts, addr: addr, client: client}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.auth, err = newAuthenticator(client, addr, opts)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.tr = &transit{client: client, addr: addr, mount: opts.Mount, onResult: s.observe}
	s.signer = newBatcher(s.ctx, opts.BatchWindow, opts.BatchMax, opts.Timeout, func(ctx context.Context, v int, in [][]byte) ([]result, error) {
		return s.tr.sign(ctx, opts.SigningKey, s.signing.Load().keyType, v, in)
	})
	s.noter = newBatcher(s.ctx, opts.BatchWindow, opts.BatchMax, opts.Timeout, func(ctx context.Context, v int, in [][]byte) ([]result, error) {
		return s.tr.sign(ctx, opts.NoteKey, "ed25519", v, in)
	})
	s.hmacer = newBatcher(s.ctx, opts.BatchWindow, opts.BatchMax, opts.Timeout, func(ctx context.Context, v int, in [][]byte) ([]result, error) {
		return s.tr.hmac(ctx, opts.PseudonymKey, v, in)
	})
	if opts.CacheSize > 0 {
		s.cache, _ = lru.New[string, string](opts.CacheSize)
	}

	sec, err := s.auth.authenticate(ctx)
	if err == nil {
		err = s.check(ctx)
	}
	if err != nil {
		if sec != nil {
			switch KindOf(err) {
			case KindConfig, KindDenied, KindRejected, KindInvalid:
				// Vault answers: do not leave an unused token behind.
				s.auth.revoke(context.Background())
			}
		}
		s.cancel()
		return nil, err
	}
	s.healthy.Store(true)
	s.opened.Store(true)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.auth.run(s.ctx, sec) }()
	go func() { defer s.wg.Done(); s.checkLoop() }()
	return s, nil
}

// checkAddress refuses plain http to a Vault that is not on loopback.
func checkAddress(addr string) error {
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return fmt.Errorf("VAULT_ADDR %q is not a URL", addr)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("VAULT_ADDR %s is plain http to a host that is not loopback; use https", addr)
	default:
		return fmt.Errorf("VAULT_ADDR %q: scheme must be https (or http on loopback)", addr)
	}
}

// observe records the outcome of every call to Vault: a failure marks the
// store unhealthy (and empties the pseudonym cache, so that sealing Vault
// stops pseudonymisation at once); a denied call makes the authenticator
// check its token.
func (s *Store) observe(err error) {
	if err == nil {
		if !s.healthy.Swap(true) && s.opened.Load() {
			s.opts.Logger.Info("vault: available again", "addr", s.addr)
		}
		return
	}
	if KindOf(err) == KindCanceled {
		return
	}
	if KindOf(err) == KindDenied {
		s.auth.denied()
	}
	if s.healthy.Swap(false) {
		s.opts.Logger.Warn("vault: unavailable; failing closed", "err", err)
		if s.cache != nil {
			s.cache.Purge()
		}
	}
}

// check reads both keys' metadata (refreshing the signing versions), and
// signs and HMACs a probe, so that it proves what requests need: the token
// is valid, Vault is unsealed, the policy allows both operations and the
// pinned pseudonym version is usable.
func (s *Store) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := s.refreshSigning(ctx); err != nil {
		return err
	}
	if err := s.refreshNote(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	wg.Add(4)
	go func() { defer wg.Done(); errs[0] = s.checkPseudonymKey(ctx) }()
	go func() { defer wg.Done(); _, errs[1] = s.sign(ctx, probeInput) }()
	go func() { defer wg.Done(); _, errs[2] = s.hmacer.do(ctx, s.opts.PseudonymKeyVersion, probeInput) }()
	go func() { defer wg.Done(); _, errs[3] = s.noter.do(ctx, s.note.Load().version, probeInput) }()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return s.unavailable("check", err)
		}
	}
	return nil
}

// refreshSigning reads the signing key's metadata and publishes the
// version new signatures use and the public keys still allowed to verify.
func (s *Store) refreshSigning(ctx context.Context) error {
	k, err := s.tr.readKey(ctx, s.opts.SigningKey)
	if err != nil {
		return err
	}
	op := "check signing key " + s.opts.SigningKey
	alg, ok := signingTypes[k.Type]
	if !ok {
		return misconfigured(s.addr, op, "it is a %s key; the gateway signs with ecdsa-p256 or ed25519", k.Type)
	}
	if k.Exportable || k.AllowPlaintextBackup {
		return misconfigured(s.addr, op, "it is exportable or allows plaintext backup: the private key could leave Vault; create a new key without them")
	}
	lo, hi := verifiable(k)
	if hi < 1 || hi < lo {
		return misconfigured(s.addr, op, "no version may sign (latest %d, min_decryption_version %d)", k.LatestVersion, k.MinDecryptionVersion)
	}
	set := jwk.NewSet()
	for v := lo; v <= hi; v++ {
		j, err := publicJWK(k, v)
		if err != nil {
			return invalid(s.addr, op, "%v", err)
		}
		if err := set.AddKey(j); err != nil {
			return invalid(s.addr, op, "%v", err)
		}
	}
	st := &signingState{keyType: k.Type, alg: alg, version: hi, kid: kid(k.Name, hi), public: set}
	if old := s.signing.Swap(st); old != nil && old.version != st.version {
		s.opts.Logger.Info("vault: signing key rotated; new signatures use the new version", "kid", st.kid, "verifiable_from", kid(k.Name, lo))
	}
	return nil
}

// refreshNote reads the note key's metadata: its type (ed25519 only), that
// it cannot leave Vault, and the public key of its latest version, which
// new note signatures use.
func (s *Store) refreshNote(ctx context.Context) error {
	k, err := s.tr.readKey(ctx, s.opts.NoteKey)
	if err != nil {
		return err
	}
	op := "check note key " + s.opts.NoteKey
	switch {
	case k.Type != noteType:
		return misconfigured(s.addr, op, "it is a %s key; checkpoint notes are signed with an ed25519 key", k.Type)
	case k.Exportable || k.AllowPlaintextBackup:
		return misconfigured(s.addr, op, "it is exportable or allows plaintext backup: the private key could leave Vault; create a new key without them")
	case k.LatestVersion < 1:
		return misconfigured(s.addr, op, "it has no version to sign with")
	}
	j, err := publicJWK(k, k.LatestVersion)
	if err != nil {
		return invalid(s.addr, op, "%v", err)
	}
	var pub ed25519.PublicKey
	if err := j.Raw(&pub); err != nil {
		return invalid(s.addr, op, "%v", err)
	}
	st := &noteState{version: k.LatestVersion, public: pub}
	if old := s.note.Swap(st); old != nil && old.version != st.version {
		s.opts.Logger.Info("vault: note key rotated; give witnesses and verifiers the new note key", "key", kid(k.Name, st.version))
	}
	return nil
}

// checkPseudonymKey checks that the pinned version of the pseudonym key is
// still there and usable for HMAC.
func (s *Store) checkPseudonymKey(ctx context.Context) error {
	k, err := s.tr.readKey(ctx, s.opts.PseudonymKey)
	if err != nil {
		return err
	}
	op := "check pseudonym key " + s.opts.PseudonymKey
	pin := s.opts.PseudonymKeyVersion
	switch {
	case k.Type != pseudonymType:
		return misconfigured(s.addr, op, "it is a %s key; pseudonyms need a key of type hmac", k.Type)
	case k.Exportable || k.AllowPlaintextBackup:
		return misconfigured(s.addr, op, "it is exportable or allows plaintext backup: the key could leave Vault; create a new key without them")
	case pin > k.LatestVersion:
		return misconfigured(s.addr, op, "pseudonym_key_version %d does not exist (latest is %d)", pin, k.LatestVersion)
	case pin < k.MinAvailableVersion:
		return misconfigured(s.addr, op, "pseudonym_key_version %d was trimmed away (min_available_version %d): every pseudonym is lost; see docs/operations.md", pin, k.MinAvailableVersion)
	case pin < k.MinEncryptionVersion && pin != k.LatestVersion:
		return misconfigured(s.addr, op, "min_encryption_version %d is past pseudonym_key_version %d: lower it back; see docs/operations.md", k.MinEncryptionVersion, pin)
	}
	return nil
}

func (s *Store) checkLoop() {
	t := time.NewTicker(s.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if err := s.check(s.ctx); err != nil {
				s.observe(err)
			}
		}
	}
}

// unavailable wraps err (already an *Error, or a context error) so that it
// names the operation and wraps keys.ErrUnavailable.
func (s *Store) unavailable(op string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return classify(s.addr, op, err)
}

// Pseudonym implements keys.Pseudonymizer: HMAC-SHA256 of subject under
// the pinned version of the pseudonym key, as 64 lowercase hex characters.
// Answers come from a bounded cache while Vault is healthy; the cache is
// emptied as soon as a call to Vault fails.
func (s *Store) Pseudonym(ctx context.Context, subject string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", s.unavailable("pseudonym", err)
	}
	if s.cache != nil && s.healthy.Load() {
		if p, ok := s.cache.Get(subject); ok {
			return p, nil
		}
	}
	p, err := s.hmacer.do(ctx, s.opts.PseudonymKeyVersion, []byte(subject))
	if err != nil {
		return "", s.unavailable("pseudonym", err)
	}
	if s.cache != nil {
		s.cache.Add(subject, p)
	}
	return p, nil
}

// Sign implements keys.Signer: a compact JWS whose protected header names
// alg (ES256 or EdDSA, from the key type) and kid "KEY:VERSION", signed by
// that version inside Vault.
func (s *Store) Sign(ctx context.Context, payload []byte, typ string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", s.unavailable("sign", err)
	}
	st := s.signing.Load()
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ,omitempty"`
	}{st.alg.String(), st.kid, typ})
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := s.signer.do(ctx, st.version, []byte(input))
	if err != nil {
		return "", s.unavailable("sign", err)
	}
	return input + "." + sig, nil
}

// sign signs raw input with the current version (the readiness probe).
func (s *Store) sign(ctx context.Context, input []byte) (string, error) {
	return s.signer.do(ctx, s.signing.Load().version, input)
}

// PublicKeys implements keys.Signer: every version of the signing key
// still allowed to verify (min_decryption_version to latest), each a JWK
// with kid "KEY:VERSION", as of the last successful check (at most
// CheckInterval old while Vault answers).
func (s *Store) PublicKeys(ctx context.Context) (jwk.Set, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.unavailable("public keys", err)
	}
	return s.signing.Load().public, nil
}

// NoteKey implements keys.NoteSigner: the public key of the note key's
// latest version, as of the last successful check.
func (s *Store) NoteKey(ctx context.Context) (ed25519.PublicKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.unavailable("note key", err)
	}
	return s.note.Load().public, nil
}

// SignNote implements keys.NoteSigner: transit signs msg with the note
// key's latest version (pure Ed25519, no prehash); the signature is the
// raw 64 bytes.
func (s *Store) SignNote(ctx context.Context, msg []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.unavailable("sign note", err)
	}
	sig, err := s.noter.do(ctx, s.note.Load().version, msg)
	if err != nil {
		return nil, s.unavailable("sign note", err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return nil, s.unavailable("sign note", invalid(s.addr, "sign note", "%v", err))
	}
	return raw, nil
}

// Ready implements keys.Store: it checks now, against Vault, what
// requests need (see check), within the store's timeout.
func (s *Store) Ready(ctx context.Context) error {
	err := s.check(ctx)
	s.observe(err)
	return err
}

// Refresh re-reads the signing key's versions now (after a rotation),
// rather than at the next background check.
func (s *Store) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	return s.refreshSigning(ctx)
}

// Close stops the background work, waits for calls in flight, and revokes
// the store's own token if it logged in with AppRole.
func (s *Store) Close() error {
	s.closed.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.signer.wait()
		s.hmacer.wait()
		s.noter.wait()
		s.auth.revoke(context.Background())
	})
	return nil
}
