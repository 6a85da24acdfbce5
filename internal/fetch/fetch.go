package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/childrens-trust/trustgate/internal/provider"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// Defaults for Options' zero fields.
const (
	DefaultTimeout          = 5 * time.Second
	DefaultMaxResponseBytes = 1 << 20
	DefaultMaxInFlight      = 16
	DefaultQueueWait        = 250 * time.Millisecond
	DefaultBreakerFailures  = 5
	DefaultBreakerCooldown  = 30 * time.Second
	DefaultTokenLifetime    = 30 * time.Second
)

// RecordPath is where a provider serves records, under its endpoint.
const RecordPath = "/v1/record"

// Options tune a Client. A zero field takes its default.
type Options struct {
	// Issuer is the gateway id: the decision token's iss.
	Issuer string
	// Timeout bounds one fetch, from connecting to the last byte.
	Timeout time.Duration
	// MaxResponseBytes bounds a provider's answer.
	MaxResponseBytes int64
	// MaxInFlight bounds the fetches in flight to one provider; QueueWait
	// is how long a fetch waits for a slot before failing with Busy.
	MaxInFlight int
	QueueWait   time.Duration
	// BreakerFailures consecutive failures open a provider's circuit for
	// BreakerCooldown.
	BreakerFailures int
	BreakerCooldown time.Duration
	// TokenLifetime is exp − iat of a decision token (at most 60s).
	TokenLifetime time.Duration
	// RootCAs verifies https providers; nil: the system roots.
	RootCAs *x509.CertPool
	// Now is the wall clock (token times, the breakers). Default time.Now.
	Now func() time.Time
	// Logger; default discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Issuer == "" {
		o.Issuer = "trustgate"
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.QueueWait <= 0 {
		o.QueueWait = DefaultQueueWait
	}
	if o.BreakerFailures <= 0 {
		o.BreakerFailures = DefaultBreakerFailures
	}
	if o.BreakerCooldown <= 0 {
		o.BreakerCooldown = DefaultBreakerCooldown
	}
	if o.TokenLifetime <= 0 || o.TokenLifetime > provider.MaxTokenLifetime {
		o.TokenLifetime = DefaultTokenLifetime
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Client fetches records from providers. Safe for concurrent use.
type Client struct {
	o      Options
	signer provider.Signer
	http   *http.Client

	mu    sync.Mutex
	peers map[string]*peer
}

// peer is one provider endpoint's isolation: its slots and its breaker.
type peer struct {
	slots chan struct{}
	br    breaker
}

// New returns a Client signing decision tokens with signer.
func New(o Options, signer provider.Signer) *Client {
	o = o.withDefaults()
	tr := &http.Transport{
		Proxy:                 nil, // providers are reached directly
		DialContext:           (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs},
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConnsPerHost:   o.MaxInFlight,
		MaxConnsPerHost:       o.MaxInFlight,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Client{
		o:      o,
		signer: signer,
		http: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		peers: map[string]*peer{},
	}
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// LoadCA reads a PEM file of CA certificates (certs/README.md).
func LoadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

func (c *Client) peer(p *registry.Partner) *peer {
	key := p.ID + " " + p.Endpoint // a changed endpoint starts afresh
	c.mu.Lock()
	defer c.mu.Unlock()
	pe, ok := c.peers[key]
	if !ok {
		pe = &peer{slots: make(chan struct{}, c.o.MaxInFlight), br: breaker{threshold: c.o.BreakerFailures, cooldown: c.o.BreakerCooldown}}
		c.peers[key] = pe
	}
	return pe
}

// Fetch signs a decision token for the decision in g (request id, subject,
// requester, purpose, categories, fields, protocol; Fetch sets iss, aud,
// iat, exp and jti on a copy) and fetches the child's record from p. It
// returns the record exactly as the provider sent it, checked for shape
// and for being about g.Subject, or an *Error. If ctx ends first the
// error wraps ctx.Err() and is not an *Error.
func (c *Client) Fetch(ctx context.Context, p *registry.Partner, g *provider.TokenClaims) (*provider.Record, error) {
	fail := func(r Reason, status int, detail string, err error) *Error {
		return &Error{Provider: p.ID, Reason: r, Status: status, Detail: detail, Err: err}
	}
	if p.Endpoint == "" {
		return nil, fail(NoEndpoint, 0, "the registry gives no endpoint for this partner", nil)
	}
	if err := provider.CheckURL(p.Endpoint); err != nil {
		return nil, fail(Insecure, 0, err.Error(), nil)
	}
	pe := c.peer(p)
	ok, probe := pe.br.allow(c.o.Now())
	if !ok {
		wait := pe.br.retryAt().Sub(c.o.Now()).Round(time.Second)
		return nil, fail(CircuitOpen, 0, fmt.Sprintf("failing fast after %d consecutive failures; next attempt in about %s", c.o.BreakerFailures, max(wait, 0)), nil)
	}
	outcome := neutral
	defer func() { pe.br.done(c.o.Now(), probe, outcome) }()

	qt := time.NewTimer(c.o.QueueWait)
	select {
	case pe.slots <- struct{}{}:
		qt.Stop()
	case <-qt.C:
		return nil, fail(Busy, 0, fmt.Sprintf("%d fetches already in flight", c.o.MaxInFlight), nil)
	case <-ctx.Done():
		qt.Stop()
		return nil, fmt.Errorf("fetch from %s: %w", p.ID, ctx.Err())
	}
	defer func() { <-pe.slots }()

	start := c.o.Now()
	claims := *g
	claims.Issuer, claims.Audience, claims.ID = c.o.Issuer, p.ID, provider.NewID()
	claims.IssuedAt = start.Unix()
	claims.Expiry = claims.IssuedAt + int64(c.o.TokenLifetime/time.Second)
	tok, err := provider.SignToken(ctx, c.signer, &claims)
	if err != nil {
		return nil, fmt.Errorf("fetch from %s: decision token: %w", p.ID, err)
	}

	rec, ferr := c.do(ctx, p, tok, &claims)
	if ferr != nil {
		var fe *Error
		if errors.As(ferr, &fe) {
			if fe.Reason.countsAsFailure() {
				outcome = failed
			} else {
				outcome = succeeded
			}
			c.o.Logger.Warn("provider fetch failed", "provider", p.ID, "reason", fe.Reason, "status", fe.Status,
				"detail", fe.Detail, "request_id", g.RequestID, "ms", c.o.Now().Sub(start).Milliseconds())
		}
		return nil, ferr
	}
	outcome = succeeded
	return rec, nil
}

// do makes the HTTP exchange under the fetch deadline.
func (c *Client) do(ctx context.Context, p *registry.Partner, tok string, claims *provider.TokenClaims) (*provider.Record, error) {
	fail := func(r Reason, status int, detail string, err error) *Error {
		return &Error{Provider: p.ID, Reason: r, Status: status, Detail: detail, Err: err}
	}
	fctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	// transportErr classifies an error of the exchange: the caller gave
	// up, our deadline passed, the certificate, or the network.
	transportErr := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("fetch from %s: %w", p.ID, ctx.Err())
		case errors.Is(err, context.DeadlineExceeded) || fctx.Err() != nil || isTimeout(err):
			return fail(Timeout, 0, fmt.Sprintf("no complete answer within %s", c.o.Timeout), nil)
		case isCertError(err):
			return fail(TLS, 0, "the provider's certificate does not verify against the configured CA", err)
		default:
			return fail(Unreachable, 0, "could not connect or the connection failed", err)
		}
	}

	req, err := http.NewRequestWithContext(fctx, http.MethodGet, strings.TrimRight(p.Endpoint, "/")+RecordPath, nil)
	if err != nil {
		return nil, fail(Insecure, 0, "the endpoint is not a valid URL", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Request-Id", claims.RequestID)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, transportErr(err)
	}
	defer resp.Body.Close()

	if resp.ContentLength > c.o.MaxResponseBytes {
		return nil, fail(TooLarge, resp.StatusCode, fmt.Sprintf("the answer declares %d bytes; at most %d are accepted", resp.ContentLength, c.o.MaxResponseBytes), nil)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.o.MaxResponseBytes+1))
	if err != nil {
		return nil, transportErr(err)
	}
	if int64(len(body)) > c.o.MaxResponseBytes {
		return nil, fail(TooLarge, resp.StatusCode, fmt.Sprintf("the answer exceeds %d bytes", c.o.MaxResponseBytes), nil)
	}

	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		if errorCode(body) == "no_record" {
			return nil, fail(NoRecord, resp.StatusCode, "the provider holds no record for this child", nil)
		}
		return nil, fail(BadStatus, resp.StatusCode, "404 without the no_record answer (is the endpoint right?)", nil)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fail(TokenRefused, resp.StatusCode, "the provider refused the decision token: "+clip(errorReason(body)), nil)
	default:
		return nil, fail(BadStatus, resp.StatusCode, fmt.Sprintf("the provider answered %d", resp.StatusCode), nil)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, fail(Malformed, resp.StatusCode, "the answer is not application/json", nil)
	}
	var rec provider.Record
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&rec); err != nil {
		return nil, fail(Malformed, resp.StatusCode, "not a JSON record", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(Malformed, resp.StatusCode, "data after the record", nil)
	}
	if err := rec.Check(); err != nil {
		return nil, fail(Malformed, resp.StatusCode, "the record breaks the format", err)
	}
	if rec.Subject != claims.Subject {
		return nil, fail(WrongSubject, resp.StatusCode, "the record is about a different child than asked", nil)
	}
	if rec.Provider != "" && rec.Provider != p.ID {
		return nil, fail(Malformed, resp.StatusCode, fmt.Sprintf("the record names provider %q", clip(rec.Provider)), nil)
	}
	rec.Provider = p.ID
	return &rec, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isCertError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// errorCode and errorReason read a provider's error answer
// ({"error": {"code", "reason"}}), best effort.
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code   string `json:"code"`
			Reason string `json:"reason"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

func errorReason(body []byte) string {
	var e struct {
		Error struct {
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Reason == "" {
		return "no reason given"
	}
	return e.Error.Reason
}

func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
