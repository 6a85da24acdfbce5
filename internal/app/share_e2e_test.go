package app_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/devcert"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/provider"
)

const overrideWhy = "Disclosure at school on 20 November of an older adult grooming the child; section 47 strategy meeting convened today."

// keysOf returns the sorted member names of a JSON object.
func keysOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not an object: %s", raw)
	}
	return slices.Sorted(maps.Keys(m))
}

// compact re-encodes JSON compactly with sorted keys, for comparison.
func compact(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return string(mustJSON(v))
}

// TestShareReturnsExactlyTheAllowedCategoriesAndFields: a share fetches
// the record from a real provider process and answers with the allowed
// categories and, within them, the fields the protocol rule lists —
// nothing else; the audit entry names what left and its hash, not what it
// said.
func TestShareReturnsExactlyTheAllowedCategoriesAndFields(t *testing.T) {
	e := startShareGateway(t, nil)
	police := startProvider(t, "exley-police", e.g)
	gp := startProvider(t, "riverside-gp", e.g)
	e.route(map[string]string{"exley-police": police.url, "riverside-gp": gp.url}, nil)

	for _, tc := range []struct {
		name, partner, role, provider string
		body                          map[string]any
		want                          map[string][]string // category → fields (nil: whole)
	}{
		{
			name:    "police to social care: two categories allowed of three asked, fields limited by the rule",
			partner: "exley-csc", role: "social_worker", provider: "exley-police",
			body: map[string]any{"subject": child, "provider": "exley-police", "purpose": "safeguarding", "categories": []string{"police_concerns", "household", "offending"}},
			want: map[string][]string{
				"police_concerns": {"last_notification_date", "notification_count", "summary", "types"},
				"household":       {"members", "risks"},
			},
		},
		{
			name:    "GP to social care on a justified override: identity whole, health summary limited",
			partner: "exley-csc", role: "social_worker", provider: "riverside-gp",
			body: map[string]any{"subject": child, "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"identity", "health_summary"},
				"override_ground": "risk_of_significant_harm", "justification": overrideWhy},
			want: map[string][]string{"identity": nil, "health_summary": {"conditions", "last_contact", "medication"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.share(tc.partner, tc.role, tc.body)
			if r.Status != http.StatusOK {
				t.Fatalf("status %d: %s", r.Status, r.Raw)
			}
			raw, sha := rawRecord(t, r)
			if sha256Hex(raw) != sha {
				t.Fatalf("record_sha256 %s is not the SHA-256 of the record as sent", sha)
			}
			if got := keysOf(t, raw); !slices.Equal(got, []string{"categories", "nonce", "provider"}) {
				t.Fatalf("record members %v", got)
			}
			var rec struct {
				Provider   string                     `json:"provider"`
				Categories map[string]json.RawMessage `json:"categories"`
			}
			_ = json.Unmarshal(raw, &rec)
			if rec.Provider != tc.provider || len(rec.Categories) != len(tc.want) {
				t.Fatalf("record %s", raw)
			}
			held := fixture(t, tc.provider, child)
			var wantFields []string
			for cat, fields := range tc.want {
				got, ok := rec.Categories[cat]
				if !ok {
					t.Fatalf("category %s missing: %s", cat, raw)
				}
				if fields == nil {
					fields = slices.Sorted(maps.Keys(held.Categories[cat]))
				}
				if k := keysOf(t, got); !slices.Equal(k, fields) {
					t.Fatalf("%s: fields %v, want exactly %v", cat, k, fields)
				}
				var m map[string]json.RawMessage
				_ = json.Unmarshal(got, &m)
				for _, f := range fields {
					if compact(t, m[f]) != compact(t, held.Categories[cat][f]) {
						t.Fatalf("%s.%s: %s, the provider holds %s", cat, f, m[f], held.Categories[cat][f])
					}
					wantFields = append(wantFields, cat+"."+f)
				}
			}
			sort.Strings(wantFields)

			en := e.entry(r.Body["request_id"])
			if en.Kind != audit.KindDisclosure || en.Status != 200 || en.Decision != "allow" || en.Provider != tc.provider {
				t.Fatalf("audit entry %+v", en)
			}
			if !slices.Equal(en.DisclosedCategories, slices.Sorted(maps.Keys(tc.want))) || !slices.Equal(en.DisclosedFields, wantFields) {
				t.Fatalf("audit says disclosed %v %v; want %v", en.DisclosedCategories, en.DisclosedFields, wantFields)
			}
			if en.DisclosedSHA256 != sha || len(en.NotificationIDs) != 1 {
				t.Fatalf("audit sha %s (answer %s), notifications %v", en.DisclosedSHA256, sha, en.NotificationIDs)
			}
			// The log keeps names and a hash, never a value.
			logged := string(mustJSON(en))
			for cat := range tc.want {
				for _, v := range held.Categories[cat] {
					if s := string(v); len(s) > 6 && strings.Contains(logged, strings.Trim(s, `"`)) {
						t.Fatalf("the audit entry holds a disclosed value %s", s)
					}
				}
			}
			if strings.Contains(logged, child) || strings.Contains(string(r.Raw), `"intelligence_notes"`) {
				t.Fatalf("NHS number in the audit entry, or a withheld field in the answer")
			}
		})
	}
}

// TestShareDenialIsTheSameWhetherOrNotTheChildIsKnown: a deny is 403 with
// the decision, decided before any provider is asked, so it cannot say
// whether the (sensitive) service knows the child.
func TestShareDenialIsTheSameWhetherOrNotTheChildIsKnown(t *testing.T) {
	e := startShareGateway(t, nil)
	sh := startProvider(t, "exley-sexual-health", e.g)
	e.route(map[string]string{"exley-sexual-health": sh.url}, nil)
	rs, err := provider.LoadRecords(preparedDemo(t)+"/records", "exley-sexual-health")
	if err != nil {
		t.Fatal(err)
	}
	known := rs.Subjects()[0]
	if _, ok := rs.Get(child); ok {
		t.Fatal("the test needs a child unknown to the service")
	}
	answer := func(subject string) (response, string) {
		r := e.share("exley-csc", "social_worker", map[string]any{"subject": subject, "provider": "exley-sexual-health", "purpose": "child_protection", "categories": []string{"sexual_health"}})
		if r.Status != http.StatusForbidden {
			t.Fatalf("status %d: %s", r.Status, r.Raw)
		}
		if _, has := r.Body["record"]; has || r.Body["decision"].(map[string]any)["allow"] != false {
			t.Fatalf("deny answer %s", r.Raw)
		}
		delete(r.Body, "request_id")
		return r, string(mustJSON(r.Body))
	}
	rk, a := answer(known)
	_, b := answer(child)
	if a != b {
		t.Fatalf("the denials differ:\n%s\n%s", a, b)
	}
	if errorOf(t, rk)["code"] != "denied" {
		t.Fatalf("error %v", rk.Body["error"])
	}
	if strings.Contains(sh.log.String(), "record disclosed") || strings.Contains(sh.log.String(), "token refused") {
		t.Fatalf("the provider was contacted for a denied share:\n%s", sh.log)
	}
}

// TestProviderRefusesForeignExpiredAndReplayedTokens: the reference
// provider process checks every decision token against the gateway's
// published key set, its audience, its expiry, and single use.
func TestProviderRefusesForeignExpiredAndReplayedTokens(t *testing.T) {
	e := startShareGateway(t, nil)
	police := startProvider(t, "exley-police", e.g)
	gw := e.gatewaySigner()
	stranger, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mint := func(s provider.Signer, mod func(c *provider.TokenClaims)) string {
		now := time.Now()
		c := &provider.TokenClaims{
			Issuer: e.g.cfg.GatewayID, Audience: "exley-police", Subject: child,
			IssuedAt: now.Unix(), Expiry: now.Add(30 * time.Second).Unix(), ID: provider.NewID(),
			RequestID: "test", Requester: provider.Requester{Partner: "exley-csc", Practitioner: "sw-0042", Role: "social_worker"},
			Purpose: "safeguarding", Categories: []string{"police_concerns"},
			Protocol: provider.ProtocolRef{ID: "isp-safeguarding", Version: "3", Rule: "police-to-social-care"},
		}
		if mod != nil {
			mod(c)
		}
		tok, err := provider.SignToken(ctx, s, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	get := func(tok string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, police.url+"/v1/record", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m struct {
			Error struct {
				Reason string `json:"reason"`
			} `json:"error"`
		}
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m.Error.Reason
	}

	valid := mint(gw, nil)
	if s, r := get(valid); s != 200 {
		t.Fatalf("a valid token: %d %s", s, r)
	}
	for _, tc := range []struct {
		name, tok, reason string
	}{
		{"replayed", valid, provider.CodeReplayed},
		{"another audience", mint(gw, func(c *provider.TokenClaims) { c.Audience = "riverside-gp" }), provider.CodeWrongAudience},
		{"expired", mint(gw, func(c *provider.TokenClaims) {
			c.IssuedAt, c.Expiry = time.Now().Add(-3*time.Minute).Unix(), time.Now().Add(-150*time.Second).Unix()
		}), provider.CodeExpired},
		{"not signed by the gateway", mint(stranger, nil), provider.CodeUnknownKID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, r := get(tc.tok); s != http.StatusUnauthorized || r != tc.reason {
				t.Fatalf("got %d %q, want 401 %q", s, r, tc.reason)
			}
		})
	}
}

// TestProviderOutageIsContainedAndAudited: a provider that is down gives
// 502 and an audit entry, nothing partial; a provider that hangs gives
// 504s and then fails fast, and meanwhile shares from a healthy provider
// keep their latency.
func TestProviderOutageIsContainedAndAudited(t *testing.T) {
	e := startShareGateway(t, nil)
	police := startProvider(t, "exley-police", e.g)
	var hung atomic.Int32
	blackhole := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		<-r.Context().Done()
	}))
	defer blackhole.Close()
	e.route(map[string]string{"exley-police": police.url, "riverside-gp": "http://" + freePort(t), "exley-hospital": blackhole.URL}, nil)
	s47 := func(prov string) map[string]any {
		return map[string]any{"subject": child, "provider": prov, "purpose": "child_protection", "categories": []string{"identity", "health_summary"}}
	}

	t.Run("down: 502, audited, nothing disclosed", func(t *testing.T) {
		r := e.share("exley-csc", "social_worker", s47("riverside-gp"))
		if r.Status != http.StatusBadGateway {
			t.Fatalf("status %d: %s", r.Status, r.Raw)
		}
		if er := errorOf(t, r); er["code"] != "provider_error" || er["reason"] != "unreachable" || !strings.Contains(er["message"].(string), "riverside-gp") {
			t.Fatalf("error %v", er)
		}
		if _, has := r.Body["record"]; has {
			t.Fatalf("a record with the error: %s", r.Raw)
		}
		en := e.entry(r.Body["request_id"])
		if en.Kind != audit.KindUnavailable || en.Status != 502 || en.ProviderError != "unreachable" || en.Decision != "allow" ||
			en.DisclosedSHA256 != "" || len(en.NotificationIDs) != 0 || en.Error == "" {
			t.Fatalf("audit entry %+v", en)
		}
		if ns, _, _ := e.g.app.Outbox().List(context.Background(), "riverside-gp", 0, 10); len(ns) != 0 {
			t.Fatalf("a notification for a failed share: %v", ns)
		}
	})

	t.Run("hanging: healthy providers keep their latency; then 504 and fail fast", func(t *testing.T) {
		policeLatency := func(n int) []time.Duration {
			var out []time.Duration
			for i := 0; i < n; i++ {
				start := time.Now()
				r := e.share("exley-csc", "social_worker", policeShare())
				if r.Status != 200 {
					t.Fatalf("police share: %d %s", r.Status, r.Raw)
				}
				out = append(out, time.Since(start))
			}
			slices.Sort(out)
			return out
		}
		base := policeLatency(10)

		const stuck = 6
		statuses := make(chan response, stuck)
		for i := 0; i < stuck; i++ {
			go func() { statuses <- e.share("exley-csc", "social_worker", s47("exley-hospital")) }()
		}
		waitUntil(t, "the hospital fetches to hang", 5*time.Second, func() bool { return hung.Load() == stuck })
		during := policeLatency(10)
		stillHung := hung.Load() == stuck && len(statuses) == 0
		t.Logf("police share latency, median/max: %s/%s before, %s/%s while %d hospital fetches hang",
			base[5], base[9], during[5], during[9], stuck)
		if !stillHung {
			t.Fatal("the hospital fetches ended before the measurement did; raise providers.timeout")
		}
		if during[5] > 3*base[5]+100*time.Millisecond || during[9] > 800*time.Millisecond {
			t.Fatalf("a hanging provider slowed another: median %s (was %s), max %s", during[5], base[5], during[9])
		}
		for i := 0; i < stuck; i++ {
			r := <-statuses
			if r.Status != http.StatusGatewayTimeout || errorOf(t, r)["code"] != "provider_timeout" {
				t.Fatalf("hung fetch: %d %s", r.Status, r.Raw)
			}
			if en := e.entry(r.Body["request_id"]); en.ProviderError != "timeout" || en.Status != 504 {
				t.Fatalf("audit entry %+v", en)
			}
		}
		// Five consecutive failures opened the circuit: the next fails fast.
		start := time.Now()
		r := e.share("exley-csc", "social_worker", s47("exley-hospital"))
		if r.Status != http.StatusServiceUnavailable || errorOf(t, r)["reason"] != "circuit_open" || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("open circuit: %d in %s: %s", r.Status, time.Since(start), r.Raw)
		}
		if en := e.entry(r.Body["request_id"]); en.ProviderError != "circuit_open" {
			t.Fatalf("audit entry %+v", en)
		}
	})
}

// TestProviderFaultsAnswer502WithNothingPartial: every way a provider can
// misbehave is a clear 502 (504 for a timeout), an audit entry naming the
// fault, no record and no notification.
func TestProviderFaultsAnswer502WithNothingPartial(t *testing.T) {
	e := startShareGateway(t, func(c *config.Config) {
		c.Providers.BreakerFailures = 1000
		c.Providers.MaxResponseBytes = 4096
	})
	record := func(subject string) string {
		return `{"subject":"` + subject + `","categories":{"police_concerns":{"summary":"s","types":["x"]}}}`
	}
	for _, tc := range []struct {
		name   string
		h      http.HandlerFunc
		status int
		reason string
	}{
		{"a record for another child", replyWith(200, record("9990000026")), 502, "wrong_subject"},
		{"malformed JSON", replyWith(200, `{"subject":"9990000018","categories":{"police_concerns":`), 502, "malformed"},
		{"over the size limit", replyWith(200, `{"subject":"9990000018","categories":{"police_concerns":{"summary":"`+strings.Repeat("x", 8000)+`"}}}`), 502, "too_large"},
		{"500", replyWith(500, `{"error":"boom"}`), 502, "bad_status"},
		{"token refused", replyWith(401, `{"error":{"code":"invalid_token","reason":"expired"}}`), 502, "token_refused"},
		{"timeout", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, 504, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(tc.h)
			defer ts.Close()
			e.route(map[string]string{"exley-police": ts.URL}, nil)
			r := e.share("exley-csc", "social_worker", policeShare())
			if r.Status != tc.status || errorOf(t, r)["reason"] != tc.reason {
				t.Fatalf("got %d %s", r.Status, r.Raw)
			}
			if _, has := r.Body["record"]; has {
				t.Fatalf("a partial record: %s", r.Raw)
			}
			en := e.entry(r.Body["request_id"])
			if en.ProviderError != tc.reason || en.Status != tc.status || en.Kind != audit.KindUnavailable || len(en.NotificationIDs) != 0 {
				t.Fatalf("audit entry %+v", en)
			}
		})
	}
	if ns, _, _ := e.g.app.Outbox().List(context.Background(), "exley-police", 0, 10); len(ns) != 0 {
		t.Fatalf("notifications for failed shares: %v", ns)
	}
}

func replyWith(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// hookReceiver is a partner's webhook: it verifies each notification's
// signature against the gateway's key set and records deliveries.
type hookReceiver struct {
	t    *testing.T
	keys provider.KeySource
	iss  string

	mu     sync.Mutex
	got    map[string]*provider.Notification // id → notification
	copies map[string]int                    // id → deliveries
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	recipient := strings.TrimPrefix(r.URL.Path, "/")
	b, _ := io.ReadAll(r.Body)
	n, err := provider.VerifyNotification(r.Context(), h.keys, h.iss, recipient, string(b))
	if err != nil {
		h.t.Errorf("webhook %s: %v", recipient, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	h.mu.Lock()
	h.got[n.ID] = n
	h.copies[n.ID]++
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) count() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.got) }

// up serves the receiver on addr until the returned stop.
func (h *hookReceiver) up(t *testing.T, addr string) (stop func()) {
	t.Helper()
	var ln net.Listener
	var err error
	waitUntil(t, "the webhook's port", 5*time.Second, func() bool { ln, err = net.Listen("tcp", addr); return err == nil })
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }
}

// TestNotificationsAreDeliveredAfterOutageAndRestart: every disclosure
// owes a notification to the provider and to the lead professional; they
// are delivered once the webhook is back, including those owed across a
// gateway restart — exactly those, each under one stable id.
func TestNotificationsAreDeliveredAfterOutageAndRestart(t *testing.T) {
	e := startShareGateway(t, nil)
	police := startProvider(t, "exley-police", e.g)
	hook := freePort(t)
	set, _ := e.gatewaySigner().PublicKeys(context.Background())
	rc := &hookReceiver{t: t, keys: provider.StaticKeys{Set: set}, iss: e.g.cfg.GatewayID, got: map[string]*provider.Notification{}, copies: map[string]int{}}
	e.route(map[string]string{"exley-police": police.url},
		map[string]string{"exley-police": "http://" + hook + "/exley-police", "exley-academy": "http://" + hook + "/exley-academy"})
	lead := e.g.do(http.MethodPut, "/v1/subjects/"+child+"/lead-professional", e.g.token("exley-csc", "social_worker"),
		mustJSON(map[string]string{"partner": "exley-academy", "practitioner": "t-0007"}))
	if lead.Status != 200 {
		t.Fatalf("lead professional: %d %s", lead.Status, lead.Raw)
	}

	owed := map[string]bool{}
	shareN := func(n int) {
		for i := 0; i < n; i++ {
			r := e.share("exley-csc", "social_worker", policeShare())
			if r.Status != 200 {
				t.Fatalf("share: %d %s", r.Status, r.Raw)
			}
			en := e.entry(r.Body["request_id"])
			if len(en.NotificationIDs) != 2 {
				t.Fatalf("a disclosure with a lead professional owes 2 notifications: %v", en.NotificationIDs)
			}
			for _, id := range en.NotificationIDs {
				owed[id] = true
			}
		}
	}
	pending := func() int { n, _ := e.g.app.Outbox().Pending(context.Background()); return n }

	// Webhook down: two shares; their notifications wait; webhook up: delivered.
	shareN(2)
	if pending() != 4 {
		t.Fatalf("pending %d, want 4", pending())
	}
	stop := rc.up(t, hook)
	waitUntil(t, "4 deliveries", 10*time.Second, func() bool { return rc.count() == 4 })
	waitUntil(t, "an empty queue", 10*time.Second, func() bool { return pending() == 0 })
	stop()

	// Webhook down again: one share, a gateway restart, one more share;
	// then the webhook comes back.
	shareN(1)
	e.g.cfg.Listen = e.g.app.Addr() // the provider keeps its key set URL
	e.g.restart()
	if pending() != 2 {
		t.Fatalf("after restart: pending %d, want 2", pending())
	}
	shareN(1)
	stop = rc.up(t, hook)
	defer stop()
	waitUntil(t, "8 deliveries", 10*time.Second, func() bool { return rc.count() == 8 })
	waitUntil(t, "an empty queue", 10*time.Second, func() bool { return pending() == 0 })

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != len(owed) {
		t.Fatalf("delivered %d distinct notifications; owed %d", len(rc.got), len(owed))
	}
	perRequest := map[string]string{}
	for id, n := range rc.got {
		if !owed[id] {
			t.Fatalf("delivered a notification that was not owed: %+v", n)
		}
		key := n.RequestID + "/" + n.Recipient
		if other, dup := perRequest[key]; dup {
			t.Fatalf("request %s notified %s twice, as %s and %s", n.RequestID, n.Recipient, other, id)
		}
		perRequest[key] = id
		if n.Requester.Partner != "exley-csc" || n.Requester.Practitioner != "prac-social_worker" || n.Purpose != "safeguarding" ||
			n.Protocol.Rule != "police-to-social-care" || n.Subject != child || !slices.Equal(n.Categories, []string{"household", "police_concerns"}) {
			t.Fatalf("notification %+v", n)
		}
		switch n.Recipient {
		case "exley-police":
			if n.As != provider.AsProvider {
				t.Fatalf("%+v", n)
			}
		case "exley-academy":
			if n.As != provider.AsLeadProfessional || n.LeadPractitioner != "t-0007" {
				t.Fatalf("%+v", n)
			}
		default:
			t.Fatalf("notification to %s", n.Recipient)
		}
	}

	// Each partner reads its own, and only its own.
	read := func(partner, role string) []any {
		r := e.g.do(http.MethodGet, "/v1/notifications", e.g.token(partner, role), nil)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", partner, r.Status, r.Raw)
		}
		return r.Body["notifications"].([]any)
	}
	for partner, role := range map[string]string{"exley-police": "police_officer", "exley-academy": "teacher"} {
		ns := read(partner, role)
		if len(ns) != 4 {
			t.Fatalf("%s reads %d notifications; want 4", partner, len(ns))
		}
		for _, n := range ns {
			if n.(map[string]any)["recipient"] != partner {
				t.Fatalf("%s read another partner's notification: %v", partner, n)
			}
		}
	}
	if ns := read("riverside-gp", "gp"); len(ns) != 0 {
		t.Fatalf("riverside-gp reads %v", ns)
	}
}

// TestLeadProfessionalAndNotificationReads: who may record a lead
// professional, what the audit keeps, what the notification endpoint
// accepts, and that a sensitive service's involvement is not told to the
// lead professional.
func TestLeadProfessionalAndNotificationReads(t *testing.T) {
	e := startShareGateway(t, nil)
	put := func(partner, role, nhs string, body any) response {
		return e.g.do(http.MethodPut, "/v1/subjects/"+nhs+"/lead-professional", e.g.token(partner, role), mustJSON(body))
	}
	if r := put("exley-csc", "social_worker", "9990000019", map[string]string{"practitioner": "sw-1"}); r.Status != 400 || errorOf(t, r)["field"] != "nhs" {
		t.Fatalf("bad NHS number: %d %s", r.Status, r.Raw)
	}
	if r := put("exley-academy", "teacher", child, map[string]string{"partner": "exley-csc", "practitioner": "sw-1"}); r.Status != 403 {
		t.Fatalf("a school naming a lead in social care: %d %s", r.Status, r.Raw)
	}
	if r := put("exley-academy", "teacher", child, map[string]string{"practitioner": "t 7"}); r.Status != 400 || errorOf(t, r)["field"] != "practitioner" {
		t.Fatalf("bad practitioner: %d %s", r.Status, r.Raw)
	}
	if r := put("exley-academy", "teacher", child, map[string]any{"practitioner": "t-0007", "nhs_number": child}); r.Status != 400 {
		t.Fatalf("unknown field: %d %s", r.Status, r.Raw)
	}
	r := put("exley-academy", "teacher", child, map[string]string{"practitioner": "t-0007"})
	if r.Status != 200 {
		t.Fatalf("a teacher recording themself: %d %s", r.Status, r.Raw)
	}
	en := e.entry(r.Body["request_id"])
	if en.Kind != audit.KindLead || en.LeadPartner != "exley-academy" || en.LeadPractitioner != "t-0007" || len(en.Subject) != 64 {
		t.Fatalf("audit entry %+v", en)
	}
	if strings.Contains(string(mustJSON(en)), child) {
		t.Fatalf("the NHS number is in the audit entry: %s", mustJSON(en))
	}
	if r := e.g.do(http.MethodGet, "/v1/subjects/"+child+"/lead-professional", e.g.token("exley-academy", "teacher"), nil); (r.Status != 404 && r.Status != 405) || strings.Contains(string(r.Raw), "t-0007") {
		t.Fatalf("a read-back of the lead professional: %d %s", r.Status, r.Raw)
	}
	for q, field := range map[string]string{"?since=x": "since", "?limit=0": "limit", "?subject=" + child: "subject"} {
		if r := e.g.do(http.MethodGet, "/v1/notifications"+q, e.g.token("exley-police", "police_officer"), nil); r.Status != 400 || errorOf(t, r)["field"] != field {
			t.Fatalf("%s: %d %s", q, r.Status, r.Raw)
		}
	}

	// A child known to CAMHS, with a lead professional: the disclosure is
	// notified to CAMHS only.
	camhs := startProvider(t, "exley-camhs", e.g)
	e.route(map[string]string{"exley-camhs": camhs.url}, nil)
	rs, err := provider.LoadRecords(preparedDemo(t)+"/records", "exley-camhs")
	if err != nil {
		t.Fatal(err)
	}
	known := rs.Subjects()[0]
	if r := put("exley-csc", "team_manager", known, map[string]string{"partner": "exley-academy", "practitioner": "t-0007"}); r.Status != 200 {
		t.Fatalf("lead: %d %s", r.Status, r.Raw)
	}
	r = e.share("exley-csc", "team_manager", map[string]any{"subject": known, "provider": "exley-camhs", "purpose": "child_protection",
		"categories": []string{"mental_health"}, "override_ground": "section_47_enquiry", "justification": overrideWhy})
	if r.Status != 200 {
		t.Fatalf("CAMHS share: %d %s", r.Status, r.Raw)
	}
	en = e.entry(r.Body["request_id"])
	if len(en.NotificationIDs) != 1 {
		t.Fatalf("a sensitive service's disclosure notified %d parties; want the service only", len(en.NotificationIDs))
	}
	if ns, _, _ := e.g.app.Outbox().List(context.Background(), "exley-academy", 0, 10); len(ns) != 0 {
		t.Fatalf("the lead professional was told of a sensitive service's involvement: %v", ns)
	}
}

// TestGatewayMinimisesWhatAProviderOversends: a provider that ignores its
// token and sends every category and field discloses nothing extra.
func TestGatewayMinimisesWhatAProviderOversends(t *testing.T) {
	e := startShareGateway(t, nil)
	held := fixture(t, "exley-police", child)
	everything, _ := json.Marshal(held)
	ts := httptest.NewServer(replyWith(200, string(everything)))
	defer ts.Close()
	e.route(map[string]string{"exley-police": ts.URL}, nil)
	r := e.share("exley-csc", "social_worker", policeShare())
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	raw, _ := rawRecord(t, r)
	var rec struct {
		Categories map[string]json.RawMessage `json:"categories"`
	}
	_ = json.Unmarshal(raw, &rec)
	if got := slices.Sorted(maps.Keys(rec.Categories)); !slices.Equal(got, []string{"household", "police_concerns"}) {
		t.Fatalf("categories %v (the provider sent %v)", got, held.CategoryNames())
	}
	if got := keysOf(t, rec.Categories["police_concerns"]); !slices.Equal(got, []string{"last_notification_date", "notification_count", "summary", "types"}) {
		t.Fatalf("police_concerns fields %v", got)
	}
	if got := keysOf(t, rec.Categories["household"]); !slices.Equal(got, []string{"members", "risks"}) {
		t.Fatalf("household fields %v", got)
	}
}

// TestShareForAChildTheProviderDoesNotHold: an allowed share about a
// child the provider does not know is 404 no_record — audited, nothing
// disclosed, nobody notified.
func TestShareForAChildTheProviderDoesNotHold(t *testing.T) {
	e := startShareGateway(t, nil)
	police := startProvider(t, "exley-police", e.g)
	e.route(map[string]string{"exley-police": police.url}, nil)
	body := policeShare()
	body["subject"] = "9990000034"
	r := e.share("exley-csc", "social_worker", body)
	if r.Status != http.StatusNotFound || errorOf(t, r)["code"] != "no_record" {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	en := e.entry(r.Body["request_id"])
	if en.Kind != audit.KindDecision || en.Decision != "allow" || en.ProviderError != "no_record" || len(en.NotificationIDs) != 0 || en.DisclosedSHA256 != "" {
		t.Fatalf("audit entry %+v", en)
	}
}

// TestHTTPSProviderIsVerifiedAgainstTheConfiguredCA: a provider process
// serving HTTPS is trusted only with a certificate from providers.ca_file.
func TestHTTPSProviderIsVerifiedAgainstTheConfiguredCA(t *testing.T) {
	trust, err := devcert.Generate(t.TempDir(), nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := devcert.Generate(t.TempDir(), nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := startShareGateway(t, func(c *config.Config) { c.Providers.CAFile = trust.CACert })
	police := startProvider(t, "exley-police", e.g, "--tls-cert", trust.ServerCert, "--tls-key", trust.ServerKey)
	gp := startProvider(t, "riverside-gp", e.g, "--tls-cert", foreign.ServerCert, "--tls-key", foreign.ServerKey)
	if !strings.HasPrefix(police.url, "https://") {
		t.Fatalf("provider url %s", police.url)
	}
	e.route(map[string]string{"exley-police": police.url, "riverside-gp": gp.url}, nil)
	if r := e.share("exley-csc", "social_worker", policeShare()); r.Status != 200 {
		t.Fatalf("https provider with the Trust's certificate: %d %s", r.Status, r.Raw)
	}
	r := e.share("exley-csc", "social_worker", map[string]any{"subject": child, "provider": "riverside-gp", "purpose": "child_protection", "categories": []string{"identity"}})
	if r.Status != http.StatusBadGateway || errorOf(t, r)["reason"] != "tls" {
		t.Fatalf("https provider with a foreign certificate: %d %s", r.Status, r.Raw)
	}
}
