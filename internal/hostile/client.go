package hostile

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Keys are the agencies' private signing keys, as `trustgate demo init`
// writes them (DIR/keys/PARTNER.jwk): all a compromised agency system
// holds. The Trust's own key is not among them.
type Keys map[string]jwk.Key

// LoadKeys reads DIR/keys/*.jwk for the partners named.
func LoadKeys(dir string, partners []string) (Keys, error) {
	ks := Keys{}
	for _, p := range partners {
		b, err := os.ReadFile(filepath.Join(dir, "keys", p+".jwk"))
		if err != nil {
			return nil, err
		}
		k, err := jwk.ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		ks[p] = k
	}
	return ks, nil
}

// Claims are a token's payload, any JSON: the generator puts strings where
// the API wants them and anything else where it probes.
type Claims map[string]any

// NewJTI is a fresh token id (letters and digits 2–7: base32).
func NewJTI() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	return base32.StdEncoding.EncodeToString(b)
}

// Standard are the claims docs/api.md asks for: iss, sub, role, aud,
// iat, exp (one minute), a fresh jti.
func Standard(partner, sub, role string) Claims {
	now := time.Now()
	return Claims{"iss": partner, "sub": sub, "role": role, "aud": "trustgate",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": NewJTI()}
}

// Sign makes a compact ES256 JWS of the claims with the partner's key,
// kid its key id.
func (ks Keys) Sign(partner string, c Claims) (string, error) {
	k, ok := ks[partner]
	if !ok {
		return "", fmt.Errorf("no key for %s", partner)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, k.KeyID())
	_ = hdr.Set(jws.TypeKey, "JWT")
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256, k, jws.WithProtectedHeaders(hdr)))
	return string(out), err
}

// Token signs the standard claims.
func (ks Keys) Token(partner, sub, role string) string {
	t, err := ks.Sign(partner, Standard(partner, sub, role))
	if err != nil {
		panic(err) // a demo key that cannot sign: the set-up is broken
	}
	return t
}

// Answer is what came back for one request.
type Answer struct {
	Status    int
	RequestID string
	Allow     string
	Body      []byte
	Closed    bool // the server closed the connection after (raw requests)
	Err       error
}

// JSON decodes the body into a map (nil when it is not an object).
func (a Answer) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(a.Body, &m)
	return m
}

// Client sends requests to one gateway and keeps every answer's
// X-Request-Id for the log check.
type Client struct {
	Base string // http://host:port
	HTTP *http.Client

	mu  sync.Mutex
	ids []string // X-Request-Id of every /v1 answer
	v1  int      // /v1 answers seen
	bad []string // /v1 answers without an X-Request-Id
}

// NewClient is a client of base with its own transport.
func NewClient(base string) *Client {
	return &Client{Base: base, HTTP: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
		// never follow a redirect: a 3xx is an answer to count
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Do sends method path with the token (none when empty), the body and the
// headers (Content-Type application/json for a body unless given).
func (c *Client) Do(method, path, token string, body []byte, hdr map[string]string) Answer {
	req, err := http.NewRequest(method, c.Base+path, bytes.NewReader(body))
	if err != nil {
		return Answer{Err: err}
	}
	if body == nil {
		req.Body = nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Answer{Err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	a := Answer{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"), Allow: resp.Header.Get("Allow"), Body: b}
	c.note(path, a)
	return a
}

// Raw writes raw bytes on a new TCP connection and reads the first answer,
// then whether the connection was closed after it (and any second answer
// the server sent: a smuggled request would show here).
func (c *Client) Raw(raw string, path string) (first Answer, second *Answer) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.Base, "http://"), 10*time.Second)
	if err != nil {
		return Answer{Err: err}, nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		return Answer{Err: err}, nil
	}
	br := bufio.NewReader(conn)
	read := func() (Answer, error) {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return Answer{}, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return Answer{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"), Allow: resp.Header.Get("Allow"), Body: b, Closed: resp.Close}, nil
	}
	first, err = read()
	if err != nil {
		return Answer{Err: err}, nil
	}
	c.note(path, first)
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if s, err := read(); err == nil {
		c.note(path, s)
		second = &s
	} else {
		first.Closed = true // nothing more came: closed (or idle until the deadline, which the caller tells apart by Closed on the first)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			first.Closed = false
		}
	}
	return first, second
}

func (c *Client) note(path string, a Answer) {
	if !strings.HasPrefix(path, "/v1") || strings.HasPrefix(path, "/v1/openapi.json") || a.Status == http.StatusRequestHeaderFieldsTooLarge {
		return // not audited by the contract (docs/api.md)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v1++
	if a.RequestID == "" {
		c.bad = append(c.bad, fmt.Sprintf("%s → %d", path, a.Status))
		return
	}
	c.ids = append(c.ids, a.RequestID)
}

// Seen returns the /v1 answers counted, their request ids, and those that
// came without one.
func (c *Client) Seen() (n int, ids, without []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v1, append([]string(nil), c.ids...), append([]string(nil), c.bad...)
}
