package fetch_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/devcert"
	"github.com/childrens-trust/trustgate/internal/fetch"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/provider"
	"github.com/childrens-trust/trustgate/internal/registry"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock(t time.Time) *clock    { return &clock{t: t} }
func partner(url string) *registry.Partner {
	return &registry.Partner{ID: "exley-police", Endpoint: url}
}

func grant() *provider.TokenClaims {
	return &provider.TokenClaims{
		RequestID: "req-1", Subject: "9990000018",
		Requester:  provider.Requester{Partner: "exley-csc", Practitioner: "sw-0042", Role: "social_worker"},
		Purpose:    "safeguarding",
		Categories: []string{"police_concerns"},
		Protocol:   provider.ProtocolRef{ID: "isp-safeguarding", Version: "3", Rule: "police-to-social-care"},
	}
}

const goodRecord = `{"subject":"9990000018","provider":"exley-police","categories":{"police_concerns":{"summary":"s"}}}`

func reply(status int, ctype, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func signer(t *testing.T) *keys.Local {
	t.Helper()
	k, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func reason(err error) fetch.Reason {
	var fe *fetch.Error
	if errors.As(err, &fe) {
		return fe.Reason
	}
	return ""
}

// TestFaults: every way a provider can fail is one *Error with its Reason,
// and no record comes back with it.
func TestFaults(t *testing.T) {
	k := signer(t)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	refusedURL := "http://" + closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		url  string
		want fetch.Reason
	}{
		{"timeout", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, "", fetch.Timeout},
		{"connection refused", nil, refusedURL, fetch.Unreachable},
		{"500", reply(500, "text/plain", "boom"), "", fetch.BadStatus},
		{"503", reply(503, "", ""), "", fetch.BadStatus},
		{"token refused", reply(401, "application/json", `{"error":{"code":"invalid_token","reason":"expired"}}`), "", fetch.TokenRefused},
		{"404 without no_record", reply(404, "text/plain", "not found"), "", fetch.BadStatus},
		{"no record", reply(404, "application/json", `{"error":{"code":"no_record"}}`), "", fetch.NoRecord},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://example.org/", http.StatusFound)
		}, "", fetch.BadStatus},
		{"malformed JSON", reply(200, "application/json", `{"subject":"9990000018","categories":{`), "", fetch.Malformed},
		{"not JSON", reply(200, "text/html", goodRecord), "", fetch.Malformed},
		{"data after the record", reply(200, "application/json", goodRecord+`{}`), "", fetch.Malformed},
		{"category not an object", reply(200, "application/json", `{"subject":"9990000018","categories":{"identity":null}}`), "", fetch.Malformed},
		{"another provider's record", reply(200, "application/json", strings.Replace(goodRecord, "exley-police", "riverside-gp", 1)), "", fetch.Malformed},
		{"too large", reply(200, "application/json", `{"subject":"9990000018","categories":{"x":{"y":"`+strings.Repeat("a", 5000)+`"}}}`), "", fetch.TooLarge},
		{"another child", reply(200, "application/json", strings.Replace(goodRecord, "9990000018", "9990000026", 1)), "", fetch.WrongSubject},
		{"insecure endpoint", nil, "http://provider.example.org", fetch.Insecure},
		{"no endpoint", nil, "-", fetch.NoEndpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if tc.h != nil {
				ts := httptest.NewServer(tc.h)
				defer ts.Close()
				url = ts.URL
			}
			if url == "-" {
				url = ""
			}
			c := fetch.New(fetch.Options{Timeout: 300 * time.Millisecond, MaxResponseBytes: 4096}, k)
			defer c.Close()
			rec, err := c.Fetch(context.Background(), partner(url), grant())
			if rec != nil {
				t.Fatalf("a record came back with the error: %v", rec)
			}
			if got := reason(err); got != tc.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.want)
			}
			if !errors.Is(err, fetch.ErrProvider) {
				t.Fatalf("%v does not classify as ErrProvider", err)
			}
		})
	}
}

// TestFetchSignsADecisionToken: the provider receives a token it can
// verify, for itself, short-lived, carrying the decision.
func TestFetchSignsADecisionToken(t *testing.T) {
	k := signer(t)
	set, _ := k.PublicKeys(context.Background())
	at := time.Now()
	v := provider.NewTokenVerifier(provider.VerifierConfig{Partner: "exley-police", Keys: provider.StaticKeys{Set: set}})
	var got *provider.TokenClaims
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Verify(r.Context(), strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		if err != nil {
			reply(401, "application/json", fmt.Sprintf(`{"error":{"reason":%q}}`, err.Error()))(w, r)
			return
		}
		got = c
		reply(200, "application/json", goodRecord)(w, r)
	}))
	defer ts.Close()
	c := fetch.New(fetch.Options{TokenLifetime: 20 * time.Second, Now: func() time.Time { return at }}, k)
	rec, err := c.Fetch(context.Background(), partner(ts.URL), grant())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Subject != "9990000018" || rec.Provider != "exley-police" {
		t.Fatalf("record %+v", rec)
	}
	if got.Audience != "exley-police" || got.Issuer != "trustgate" || got.Expiry-got.IssuedAt != 20 || got.ID == "" ||
		got.RequestID != "req-1" || got.Requester.Practitioner != "sw-0042" || got.Protocol.Rule != "police-to-social-care" {
		t.Fatalf("claims %+v", got)
	}
}

// TestCircuitBreaker: after BreakerFailures failures the provider is not
// called until the cooldown has passed; then one probe goes through, and
// its success closes the circuit.
func TestCircuitBreaker(t *testing.T) {
	var calls atomic.Int32
	var healthy atomic.Bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if healthy.Load() {
			reply(200, "application/json", goodRecord)(w, r)
			return
		}
		reply(502, "", "")(w, r)
	}))
	defer ts.Close()
	clk := newClock(time.Now())
	c := fetch.New(fetch.Options{BreakerFailures: 3, BreakerCooldown: 10 * time.Second, Now: clk.Now}, signer(t))
	fetchOnce := func() error { _, err := c.Fetch(context.Background(), partner(ts.URL), grant()); return err }
	for i := 0; i < 3; i++ {
		if r := reason(fetchOnce()); r != fetch.BadStatus {
			t.Fatalf("failure %d: %s", i, r)
		}
	}
	for i := 0; i < 5; i++ {
		if r := reason(fetchOnce()); r != fetch.CircuitOpen {
			t.Fatalf("open circuit: %s", r)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("provider called %d times; want 3", n)
	}
	clk.Add(11 * time.Second)
	if r := reason(fetchOnce()); r != fetch.BadStatus {
		t.Fatalf("probe: %s", r)
	}
	if r := reason(fetchOnce()); r != fetch.CircuitOpen {
		t.Fatalf("failed probe reopens: %s", r)
	}
	clk.Add(11 * time.Second)
	healthy.Store(true)
	for i := 0; i < 3; i++ {
		if err := fetchOnce(); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	if n := calls.Load(); n != 7 {
		t.Fatalf("provider called %d times; want 7", n)
	}
}

// TestBulkhead: a provider holding MaxInFlight fetches makes the next one
// fail fast (Busy) and leaves another provider untouched.
func TestBulkhead(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		reply(200, "application/json", goodRecord)(w, r)
	}))
	defer slow.Close()
	fast := httptest.NewServer(reply(200, "application/json", strings.Replace(goodRecord, "exley-police", "riverside-gp", 1)))
	defer fast.Close()
	c := fetch.New(fetch.Options{MaxInFlight: 2, QueueWait: 20 * time.Millisecond, Timeout: 5 * time.Second}, signer(t))
	var wg sync.WaitGroup
	started := make(chan struct{}, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started <- struct{}{}
			_, _ = c.Fetch(context.Background(), partner(slow.URL), grant())
		}()
	}
	<-started
	<-started
	// Both slots are taken once both fetches have reached the provider
	// (a probe sent before that would itself take a slot).
	<-arrived
	<-arrived
	if _, err := c.Fetch(context.Background(), partner(slow.URL), grant()); reason(err) != fetch.Busy {
		t.Fatalf("a third fetch while two are in flight: %v, want Busy", err)
	}
	other := &registry.Partner{ID: "riverside-gp", Endpoint: fast.URL}
	start := time.Now()
	if _, err := c.Fetch(context.Background(), other, grant()); err != nil {
		t.Fatalf("another provider: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("another provider took %s", d)
	}
	close(release)
	wg.Wait()
}

// TestCallerGivingUpIsNotAProviderFailure: the caller's context ending is
// returned as such, not blamed on the provider.
func TestCallerGivingUpIsNotAProviderFailure(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer ts.Close()
	c := fetch.New(fetch.Options{Timeout: 5 * time.Second, BreakerFailures: 1}, signer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Fetch(ctx, partner(ts.URL), grant())
	if reason(err) != "" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	// The breaker (threshold 1) did not open.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := c.Fetch(ctx2, partner(ts.URL), grant()); reason(err) == fetch.CircuitOpen {
		t.Fatal("the caller's deadline opened the circuit")
	}
}

// TestHTTPSVerifiesTheConfiguredCA: an https provider is trusted only if
// its certificate chains to the configured CA.
func TestHTTPSVerifiesTheConfiguredCA(t *testing.T) {
	dir, otherDir := t.TempDir(), t.TempDir()
	files, err := devcert.Generate(dir, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := devcert.Generate(otherDir, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(reply(200, "application/json", goodRecord))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	defer ts.Close()
	k := signer(t)
	for _, tc := range []struct {
		name, ca string
		want     fetch.Reason
	}{
		{"the configured CA", files.CACert, ""},
		{"another CA", other.CACert, fetch.TLS},
		{"the system roots", "", fetch.TLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var roots *x509.CertPool
			if tc.ca != "" {
				if roots, err = fetch.LoadCA(tc.ca); err != nil {
					t.Fatal(err)
				}
			}
			c := fetch.New(fetch.Options{RootCAs: roots}, k)
			defer c.Close()
			_, err := c.Fetch(context.Background(), partner(ts.URL), grant())
			if got := reason(err); got != tc.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}
