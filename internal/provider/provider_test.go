package provider_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/nhs"
	"github.com/childrens-trust/trustgate/internal/provider"
	"github.com/childrens-trust/trustgate/protocols/records"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// gatewayKeys opens a real local key store: the gateway's signer and the
// key set a provider verifies against.
func gatewayKeys(t *testing.T) (*keys.Local, provider.StaticKeys) {
	t.Helper()
	k, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set, _ := k.PublicKeys(context.Background())
	return k, provider.StaticKeys{Set: set}
}

func claims() *provider.TokenClaims {
	return &provider.TokenClaims{
		Issuer: "trustgate", Audience: "exley-police", Subject: "9990000018",
		IssuedAt: now.Unix(), Expiry: now.Add(30 * time.Second).Unix(), ID: provider.NewID(),
		RequestID: "req-1", Requester: provider.Requester{Partner: "exley-csc", Practitioner: "sw-0042", Role: "social_worker"},
		Purpose: "safeguarding", Categories: []string{"police_concerns", "household"},
		Fields:   map[string][]string{"police_concerns": {"summary", "types"}},
		Protocol: provider.ProtocolRef{ID: "isp-safeguarding", Version: "3", Rule: "police-to-social-care"},
	}
}

func sign(t *testing.T, s provider.Signer, c *provider.TokenClaims) string {
	t.Helper()
	tok, err := provider.SignToken(context.Background(), s, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawSign signs any payload with any typ, bypassing SignToken's checks.
func rawSign(t *testing.T, s provider.Signer, v any, typ string) string {
	t.Helper()
	b, _ := json.Marshal(v)
	tok, err := s.Sign(context.Background(), b, typ)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func verifier(ks provider.KeySource, at time.Time) *provider.TokenVerifier {
	return provider.NewTokenVerifier(provider.VerifierConfig{Partner: "exley-police", Keys: ks, Now: func() time.Time { return at }})
}

func code(err error) string {
	var te *provider.TokenError
	if errors.As(err, &te) {
		return te.Code
	}
	if err == nil {
		return "ok"
	}
	return "other: " + err.Error()
}

func TestTokenVerification(t *testing.T) {
	signer, ks := gatewayKeys(t)
	other, _ := gatewayKeys(t) // a key the provider does not trust
	ctx := context.Background()
	mod := func(f func(c *provider.TokenClaims)) *provider.TokenClaims { c := claims(); f(c); return c }
	hs256, _ := jws.Sign([]byte(`{"iss":"trustgate"}`), jws.WithKey(jwa.HS256, []byte("secret-secret-secret-secret-32by")))

	for _, tc := range []struct {
		name, tok, want string
	}{
		{"valid", sign(t, signer, claims()), "ok"},
		{"another audience", sign(t, signer, mod(func(c *provider.TokenClaims) { c.Audience = "riverside-gp" })), provider.CodeWrongAudience},
		{"another issuer", sign(t, signer, mod(func(c *provider.TokenClaims) { c.Issuer = "not-the-gateway" })), provider.CodeWrongIssuer},
		{"expired", sign(t, signer, mod(func(c *provider.TokenClaims) {
			c.IssuedAt, c.Expiry = now.Add(-2*time.Minute).Unix(), now.Add(-90*time.Second).Unix()
		})), provider.CodeExpired},
		{"issued in the future", sign(t, signer, mod(func(c *provider.TokenClaims) {
			c.IssuedAt, c.Expiry = now.Add(time.Minute).Unix(), now.Add(90*time.Second).Unix()
		})), provider.CodeNotYetValid},
		{"lifetime over a minute", rawSign(t, signer, mod(func(c *provider.TokenClaims) { c.Expiry = now.Add(2 * time.Minute).Unix() }), provider.TokenType), provider.CodeLifetimeTooLong},
		{"typ JWT (not a decision token)", rawSign(t, signer, claims(), "JWT"), provider.CodeWrongType},
		{"a notification presented as a token", rawSign(t, signer, claims(), provider.NotificationType), provider.CodeWrongType},
		{"signed by an untrusted key", sign(t, other, claims()), provider.CodeUnknownKID},
		{"HS256", string(hs256), provider.CodeAlgNotAllowed},
		{"not a JWS", "abc.def", provider.CodeMalformed},
		{"no categories", rawSign(t, signer, mod(func(c *provider.TokenClaims) { c.Categories = nil }), provider.TokenType), provider.CodeMissingClaim},
		{"subject not an NHS number", rawSign(t, signer, mod(func(c *provider.TokenClaims) { c.Subject = "9990000019" }), provider.TokenType), provider.CodeMissingClaim},
		{"fields beyond the categories", rawSign(t, signer, mod(func(c *provider.TokenClaims) { c.Fields["offending"] = []string{"orders"} }), provider.TokenType), provider.CodeMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verifier(ks, now).Verify(ctx, tc.tok)
			if got := code(err); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			if err != nil && !errors.Is(err, provider.ErrInvalidToken) {
				t.Fatalf("%v does not classify as ErrInvalidToken", err)
			}
		})
	}

	t.Run("single use", func(t *testing.T) {
		v := verifier(ks, now)
		tok := sign(t, signer, claims())
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, tok); code(err) != provider.CodeReplayed {
			t.Fatalf("replay: %v", err)
		}
	})

	t.Run("a tampered payload", func(t *testing.T) {
		tok := sign(t, signer, claims())
		parts := strings.Split(tok, ".")
		c := claims()
		c.Categories = append(c.Categories, "offending")
		b, _ := json.Marshal(c)
		forged := parts[0] + "." + b64(b) + "." + parts[2]
		if _, err := verifier(ks, now).Verify(ctx, forged); code(err) != provider.CodeBadSignature {
			t.Fatalf("forged: %v", err)
		}
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestMinimise(t *testing.T) {
	rec := &provider.Record{Subject: "9990000018", Provider: "exley-police", Categories: map[string]provider.Fields{
		"police_concerns": {"summary": json.RawMessage(`"s"`), "types": json.RawMessage(`["x"]`), "intelligence_notes": json.RawMessage(`"secret"`)},
		"household":       {"members": json.RawMessage(`[]`), "address_history": json.RawMessage(`["a"]`)},
		"offending":       {"orders": json.RawMessage(`[]`)},
	}}
	out := provider.Minimise(rec, []string{"police_concerns", "household", "identity"}, map[string][]string{"police_concerns": {"summary", "types"}})
	if got := out.CategoryNames(); !slices.Equal(got, []string{"household", "police_concerns"}) {
		t.Fatalf("categories %v", got)
	}
	want := []string{"household.address_history", "household.members", "police_concerns.summary", "police_concerns.types"}
	if got := out.FieldNames(); !slices.Equal(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	if _, ok := rec.Categories["police_concerns"]["intelligence_notes"]; !ok {
		t.Fatal("Minimise modified its input")
	}
	// A category whose listed fields are all absent is dropped.
	out = provider.Minimise(rec, []string{"offending"}, map[string][]string{"offending": {"outcomes"}})
	if len(out.Categories) != 0 {
		t.Fatalf("empty category kept: %v", out.Categories)
	}
}

// TestDemoRecords checks the embedded synthetic fixtures: at least 30
// children, every NHS number valid and in the 999 test range, spread
// across the partners, some known to a sensitive service.
func TestDemoRecords(t *testing.T) {
	names, _ := fs.Glob(records.FS, "*.json")
	children := map[string]int{}
	holders := map[string][]string{}
	for _, n := range names {
		partner := strings.TrimSuffix(n, ".json")
		b, _ := fs.ReadFile(records.FS, n)
		rs, err := provider.ParseRecords(b, partner)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		for _, s := range rs.Subjects() {
			if !nhs.Valid(s) || !strings.HasPrefix(s, "999") {
				t.Fatalf("%s: %s is not a valid 999-range NHS number", n, s)
			}
			children[s]++
			holders[partner] = append(holders[partner], s)
		}
	}
	if len(children) < 30 {
		t.Fatalf("%d children; want at least 30", len(children))
	}
	if len(holders) < 15 {
		t.Fatalf("records for %d partners", len(holders))
	}
	for _, sensitive := range []string{"exley-sexual-health", "exley-camhs"} {
		if len(holders[sensitive]) == 0 {
			t.Fatalf("no child known to %s", sensitive)
		}
	}
	if !slices.Contains(holders["exley-police"], "9990000018") {
		t.Fatal("the demo's first child is not known to the police")
	}
}

func TestParseRecordsRefusesBadFixtures(t *testing.T) {
	for name, doc := range map[string]string{
		"other partner":  `{"partner":"riverside-gp","records":[]}`,
		"bad NHS number": `{"partner":"exley-police","records":[{"subject":"9990000019","categories":{}}]}`,
		"duplicate":      `{"partner":"exley-police","records":[{"subject":"9990000018","categories":{}},{"subject":"9990000018","categories":{}}]}`,
		"null category":  `{"partner":"exley-police","records":[{"subject":"9990000018","categories":{"identity":null}}]}`,
		"unknown field":  `{"partner":"exley-police","records":[],"extra":1}`,
		"bad field name": `{"partner":"exley-police","records":[{"subject":"9990000018","categories":{"identity":{"Full Name":"x"}}}]}`,
	} {
		if _, err := provider.ParseRecords([]byte(doc), "exley-police"); !errors.Is(err, provider.ErrInvalidRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func policeRecords(t *testing.T) *provider.Records {
	t.Helper()
	b, _ := fs.ReadFile(records.FS, "exley-police.json")
	rs, err := provider.ParseRecords(b, "exley-police")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestServerServesOnlyWhatTheTokenAllows(t *testing.T) {
	signer, ks := gatewayKeys(t)
	var mu sync.Mutex
	var got []*provider.Notification
	srv := provider.NewServer(provider.ServerConfig{
		Partner: "exley-police", Records: policeRecords(t), Tokens: verifier(ks, now), Keys: ks,
		OnNotification: func(n *provider.Notification) { mu.Lock(); got = append(got, n); mu.Unlock() },
	})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	get := func(tok string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/record", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}

	status, body := get(sign(t, signer, claims()))
	if status != 200 || body["subject"] != "9990000018" || body["provider"] != "exley-police" {
		t.Fatalf("%d %v", status, body)
	}
	cats := body["categories"].(map[string]any)
	pc := cats["police_concerns"].(map[string]any)
	if len(cats) != 2 || len(pc) != 2 || pc["summary"] == nil || pc["types"] == nil {
		t.Fatalf("not minimised to the token: %v", cats)
	}
	if _, ok := cats["household"].(map[string]any)["address_history"]; !ok {
		t.Fatalf("household has no field limit in the token and should pass whole: %v", cats["household"])
	}

	// A child the provider does not hold: 404 no_record, only with a
	// valid token. With a bad token the answer is the same whether or not
	// the child is known.
	unknown := claims()
	unknown.Subject = "9990000034" // not in the police fixtures
	if status, body := get(sign(t, signer, unknown)); status != 404 || body["error"].(map[string]any)["code"] != "no_record" {
		t.Fatalf("unknown child: %d %v", status, body)
	}
	wrongAud := func(subject string) map[string]any {
		c := claims()
		c.Subject, c.Audience = subject, "riverside-gp"
		s, b := get(sign(t, signer, c))
		if s != 401 {
			t.Fatalf("wrong audience: %d", s)
		}
		return b
	}
	a, b := wrongAud("9990000018"), wrongAud("9990000034")
	if ja, jb := mustJSON(a), mustJSON(b); ja != jb {
		t.Fatalf("refusals differ for a known and an unknown child:\n%s\n%s", ja, jb)
	}
	if status, _ := get(""); status != 401 {
		t.Fatalf("no token: %d", status)
	}

	// Notifications: verified, de-duplicated, addressed to this partner only.
	n := &provider.Notification{ID: provider.NewID(), Recipient: "exley-police", As: provider.AsProvider, Event: provider.EventDisclosed, Time: now, Provider: "exley-police"}
	post := func(body string) (int, string) {
		resp, err := http.Post(ts.URL+"/v1/notifications", "application/jwt", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	signed, err := provider.SignNotification(context.Background(), signer, "trustgate", n, now)
	if err != nil {
		t.Fatal(err)
	}
	if s, b := post(signed); s != 200 || !strings.Contains(b, `"received"`) {
		t.Fatalf("first delivery: %d %s", s, b)
	}
	if s, b := post(signed); s != 200 || !strings.Contains(b, `"duplicate"`) {
		t.Fatalf("second delivery: %d %s", s, b)
	}
	toOther := *n
	toOther.ID, toOther.Recipient = provider.NewID(), "riverside-gp"
	signed, _ = provider.SignNotification(context.Background(), signer, "trustgate", &toOther, now)
	if s, _ := post(signed); s != 401 {
		t.Fatalf("a notification for another partner: %d", s)
	}
	if s, _ := post(sign(t, signer, claims())); s != 401 {
		t.Fatalf("a decision token posted as a notification: %d", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].ID != n.ID {
		t.Fatalf("notifications passed on: %v", got)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestCheckURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://gp.example.nhs.uk/api":  true,
		"http://127.0.0.1:9105":          true,
		"http://localhost:9105":          true,
		"http://[::1]:9105":              true,
		"http://gp.example.nhs.uk/api":   false,
		"ftp://127.0.0.1/":               false,
		"/relative":                      false,
		"http://10.0.0.5:9105/v1/record": false,
	} {
		if err := provider.CheckURL(u); (err == nil) != ok {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestGatewayKeysOverHTTP fetches the key set from a real HTTP server,
// picks up a rotated key at once, and fails closed when it cannot fetch.
func TestGatewayKeysOverHTTP(t *testing.T) {
	first, firstSet := gatewayKeys(t)
	second, secondSet := gatewayKeys(t)
	var mu sync.Mutex
	serving := firstSet
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(serving.Set)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gk, err := provider.NewGatewayKeys(ctx, ts.URL+"/.well-known/jwks.json", ts.Client())
	if err != nil {
		t.Fatal(err)
	}
	v := provider.NewTokenVerifier(provider.VerifierConfig{Partner: "exley-police", Keys: gk, Now: func() time.Time { return now }})
	if _, err := v.Verify(ctx, sign(t, first, claims())); err != nil {
		t.Fatalf("first key: %v", err)
	}
	// The gateway rotates: a token under the new kid makes the provider
	// refresh the set.
	mu.Lock()
	serving = secondSet
	mu.Unlock()
	if _, err := v.Verify(ctx, sign(t, second, claims())); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	ts.Close()
	down, err := provider.NewGatewayKeys(ctx, ts.URL+"/.well-known/jwks.json", ts.Client())
	if err != nil {
		t.Fatal(err)
	}
	v = provider.NewTokenVerifier(provider.VerifierConfig{Partner: "exley-police", Keys: down, Now: func() time.Time { return now }})
	if _, err := v.Verify(ctx, sign(t, first, claims())); !errors.Is(err, provider.ErrKeysUnavailable) {
		t.Fatalf("key set unreachable: %v", err)
	}
	if _, err := provider.NewGatewayKeys(ctx, "http://gateway.example.org/.well-known/jwks.json", nil); err == nil {
		t.Fatal("plain http to a non-loopback host accepted")
	}
}
