package hostile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The demo children the walk-throughs use (docs/): A has a team around it
// in the index (social care, police, GP); B gets an early help episode.
const (
	childA = "9990000018"
	childB = "9990000077"
	childC = "9990000026"
)

// The classes of the battery, in the order docs/security.md lists them.
var classes = []string{
	"privileged_unappointed", "out_of_scope", "scope_leak", "self_review", "hijack",
	"nhs_injection", "path_cleaning", "wrong_method", "content_type", "smuggling",
	"replay", "forged_flood", "after_restart",
}

// TestIndependentHostileClient is the "done when": an independent
// client, with only the documented API and the agencies' keys, against
// the demo Trust run as its own process. TRUSTGATE_HOSTILE_SEED chooses
// the seed (logged), TRUSTGATE_HOSTILE_SCALE multiplies the random
// classes for a longer run. Set TRUSTGATE_HOSTILE_REPORT=FILE to write the
// figures (the table docs/security.md carries) to FILE.
func TestIndependentHostileClient(t *testing.T) {
	seed, scale := seedFromEnv()
	t.Logf("seed %d (TRUSTGATE_HOSTILE_SEED), scale %d (TRUSTGATE_HOSTILE_SCALE)", seed, scale)
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))

	g := prepareDemo(t)
	tr := readTrust(t, g.dir)
	as := readAppointments(t)
	partners := tr.partnerIDs()
	if slices.Contains(partners, tr.ID) {
		t.Fatal("the Trust is listed as a partner")
	}
	keys, err := LoadKeys(g.dir, partners) // never the Trust's key
	if err != nil {
		t.Fatal(err)
	}
	g.start(t, true)
	c := NewClient(g.base)
	tl := newTally()
	tok := keys.Token

	// --- Set-up by legitimate users (positive controls) ---------------
	must := func(what string, a Answer, want int) map[string]any {
		t.Helper()
		if a.Err != nil || a.Status != want {
			t.Fatalf("%s: %d %v %s", what, a.Status, a.Err, a.Body)
		}
		return a.JSON()
	}
	override := func(p, sub, role, provider, child string) (reviewID string) {
		t.Helper()
		body := mustJSON(map[string]any{"subject": child, "provider": provider, "purpose": "safeguarding",
			"categories": []string{"health_summary"}, "override_ground": "risk_of_significant_harm",
			"justification": "Bruising seen at school on Monday and an unexplained absence; strategy discussion held with police today."})
		m := must("override by "+sub, c.Do("POST", "/v1/decisions", tok(p, sub, role), body, nil), 200)
		rv, _ := m["review"].(map[string]any)
		id, _ := rv["id"].(string)
		if id == "" {
			t.Fatalf("override by %s opened no review: %v", sub, m)
		}
		return id
	}
	// Overrides made by practitioners who are also appointed IG leads
	// (the self-review class), and one by a plain social worker.
	overrides := []ovr{
		{"exley-csc", "ig-0001", "social_worker", "riverside-gp", ""},
		{"exley-csc", "prac-ig_lead", "team_manager", "exley-hospital", ""},
		{"exley-csc", "sw-5001", "social_worker", "riverside-gp", ""},
	}
	for i := range overrides {
		o := &overrides[i]
		o.review = override(o.partner, o.sub, o.role, o.provider, childA)
	}
	legitLead := map[string]bool{}
	a := c.Do("PUT", "/v1/subjects/"+childA+"/lead-professional", tok("exley-csc", "sw-0042", "social_worker"),
		mustJSON(map[string]string{"partner": "exley-csc", "practitioner": "sw-0042"}), nil)
	must("the lead professional of child A", a, 200)
	legitLead[a.RequestID] = true
	m := must("open an episode", c.Do("POST", "/v1/early-help", tok("exley-csc", "ehw-0011", "early_help_worker"),
		mustJSON(map[string]string{"subject": childB}), nil), 201)
	ep, _ := m["episode"].(map[string]any)["id"].(string)
	a = c.Do("POST", "/v1/early-help/"+ep+"/team", tok("exley-csc", "ehw-0011", "early_help_worker"),
		mustJSON(map[string]string{"partner": "exley-academy", "practitioner": "dsl-0009", "role": "designated_safeguarding_lead"}), nil)
	must("the academy's DSL joins", a, 200)
	legitLead[a.RequestID] = true
	a = c.Do("PUT", "/v1/early-help/"+ep+"/lead-professional", tok("exley-csc", "ehw-0011", "early_help_worker"),
		mustJSON(map[string]string{"partner": "exley-academy", "practitioner": "dsl-0009"}), nil)
	must("the episode's lead", a, 200)
	legitLead[a.RequestID] = true

	// --- The hostile batch --------------------------------------------
	var jobs []job
	add := func(class string, run func() (Answer, string)) { jobs = append(jobs, job{class, run}) }
	refuse := func(class, who, method, path string, body []byte, token func() string) {
		add(class, func() (Answer, string) {
			a := c.Do(method, path, token(), body, nil)
			if is2xx(a.Status) {
				return a, fmt.Sprintf("%s: %s %s → %d %s", who, method, path, a.Status, tail(string(a.Body), 200))
			}
			return a, ""
		})
	}
	note := mustJSON(map[string]string{"outcome": "upheld", "note": "Reviewed: proportionate and limited to the health summary."})
	type ep_ struct {
		method, path string
		body         []byte
	}
	privileged := func(rev string) []ep_ {
		return []ep_{
			{"GET", "/v1/audit/entries", nil},
			{"GET", "/v1/audit/snapshot", nil},
			{"GET", "/v1/audit/stats?by=partner", nil},
			{"GET", "/v1/audit/proofs/inclusion?seq=1", nil},
			{"GET", "/v1/subjects/" + childA + "/access-report", nil},
			{"GET", "/v1/reviews", nil},
			{"GET", "/v1/reviews/summary", nil},
			{"GET", "/v1/reviews/" + rev, nil},
			{"POST", "/v1/reviews/" + rev, note},
			{"POST", "/v1/admin/reload", []byte("{}")},
			{"GET", "/v1/admin/status", nil},
			{"POST", "/v1/admin/whatif", []byte(`{"since":"1d"}`)},
			{"POST", "/v1/admin/index/retention", []byte("{}")},
		}
	}

	// 1. Every agency claims every appointed role (and one it holds) for
	// people nobody appointed, on every privileged endpoint.
	var appointees []string
	for _, ap := range as {
		appointees = append(appointees, ap.Practitioner, strings.ToUpper(ap.Practitioner), ap.Practitioner+" ")
	}
	for _, p := range partners {
		roles := append(tr.appointedRoles(), tr.heldRoles(p)[:min(1, len(tr.heldRoles(p)))]...)
		for _, role := range roles {
			for _, e := range privileged(pick(r, overrides).review) {
				subs := []string{randSub(r)}
				for {
					s := pick(r, appointees)
					if _, ok := appointed(as, p, s, role); !ok {
						subs = append(subs, s)
						break
					}
				}
				for _, sub := range subs {
					refuse("privileged_unappointed", p+" "+sub+" as "+role, e.method, e.path, e.body,
						func() string { return tok(p, sub, role) })
				}
			}
		}
	}

	// 2. Appointed people beyond their scope.
	reps := 6 * scale
	for i := 0; i < reps; i++ {
		for _, ap := range as {
			var out []ep_
			switch {
			case ap.Role == "ig_lead" && ap.Scope == "agency":
				out = append(out, ep_{"POST", "/v1/admin/reload", []byte("{}")}, ep_{"GET", "/v1/admin/status", nil},
					ep_{"POST", "/v1/admin/whatif", []byte(`{"since":"1d"}`)}, ep_{"GET", "/v1/audit/entries", nil}, ep_{"GET", "/v1/audit/snapshot", nil})
				for _, o := range overrides {
					if ap.Partner != o.partner && ap.Partner != o.provider { // another agency's override
						out = append(out, ep_{"GET", "/v1/reviews/" + o.review, nil}, ep_{"POST", "/v1/reviews/" + o.review, note})
					}
				}
			case ap.Role == "ig_lead": // Trust scope: not an auditor
				out = append(out, ep_{"GET", "/v1/audit/entries", nil}, ep_{"GET", "/v1/audit/snapshot", nil})
				for _, o := range overrides {
					if ap.Partner != o.partner && ap.Partner != o.provider {
						out = append(out, ep_{"POST", "/v1/reviews/" + o.review, note})
					}
				}
			case ap.Role == "auditor" && ap.Scope == "agency":
				out = append(out, ep_{"GET", "/v1/audit/entries", nil}, ep_{"GET", "/v1/audit/snapshot", nil},
					ep_{"POST", "/v1/admin/reload", []byte("{}")}, ep_{"GET", "/v1/admin/status", nil},
					ep_{"POST", "/v1/admin/whatif", []byte(`{"since":"1d"}`)}, ep_{"GET", "/v1/reviews", nil},
					ep_{"POST", "/v1/reviews/" + overrides[0].review, note})
			case ap.Role == "auditor": // Trust scope: reads, never changes
				out = append(out, ep_{"POST", "/v1/admin/reload", []byte("{}")}, ep_{"GET", "/v1/admin/status", nil},
					ep_{"POST", "/v1/admin/whatif", []byte(`{"since":"1d"}`)}, ep_{"GET", "/v1/reviews", nil},
					ep_{"POST", "/v1/reviews/" + overrides[0].review, note}, ep_{"POST", "/v1/admin/index/retention", []byte("{}")})
			}
			for _, e := range out {
				refuse("out_of_scope", ap.Partner+" "+ap.Practitioner+" ("+ap.Role+", "+ap.Scope+")", e.method, e.path, e.body,
					func() string { return tok(ap.Partner, ap.Practitioner, ap.Role) })
			}
			// What an agency-scope appointee may read holds only its own
			// agency's affairs.
			if ap.Scope == "agency" {
				add("scope_leak", func() (Answer, string) {
					a := c.Do("GET", "/v1/subjects/"+childA+"/access-report", tok(ap.Partner, ap.Practitioner, ap.Role), nil, nil)
					for _, name := range []string{"sw-0042", "ig-0001", "sw-5001", "ehw-0011"} {
						if bytes.Contains(a.Body, []byte(`"`+name+`"`)) {
							return a, fmt.Sprintf("%s (agency scope) saw practitioner %s in an access report", ap.Practitioner, name)
						}
					}
					return a, ""
				})
				if ap.Role == "ig_lead" {
					add("scope_leak", func() (Answer, string) {
						a := c.Do("GET", "/v1/reviews", tok(ap.Partner, ap.Practitioner, ap.Role), nil, nil)
						for _, o := range overrides {
							if ap.Partner != o.partner && ap.Partner != o.provider && bytes.Contains(a.Body, []byte(o.review)) {
								return a, fmt.Sprintf("%s of %s listed review %s of %s→%s", ap.Practitioner, ap.Partner, o.review, o.partner, o.provider)
							}
						}
						return a, ""
					})
				}
			}
		}
	}

	// 3. Self-reviews: the maker of an override, now claiming ig_lead.
	for i := 0; i < 10*scale; i++ {
		for _, o := range overrides {
			for _, outcome := range []string{"upheld", "not_upheld"} {
				body := mustJSON(map[string]string{"outcome": outcome, "note": "Closing my own override: it was proportionate."})
				refuse("self_review", o.sub+" closes own "+o.review, "POST", "/v1/reviews/"+o.review, body,
					func() string { return tok(o.partner, o.sub, "ig_lead") })
			}
		}
	}

	// 4. Lead professional hijacks: every other agency, as every role it
	// holds, takes child A's lead (held by social care) for itself; names
	// an agency with no basis; joins or leads child B's episode.
	convenor := func(p, role string) bool {
		return tr.typeOf(p) == "local_authority" && (role == "social_worker" || role == "team_manager" || role == "early_help_worker")
	}
	// Agencies with no basis for child A: no rule in force under which they
	// receive (they only provide, under youth-justice), no involvement in
	// the index, no early help team. (District housing and Connexions
	// receive under early-help and so may be named: docs/security.md.)
	uninvolved := []string{"exley-jcp", "exley-lsc", "exley-college"}
	for i := 0; i < 2*scale; i++ {
		for _, p := range partners {
			for _, role := range tr.heldRoles(p) {
				sub := randSub(r)
				// (a colleague of the lead's own agency may take over: the
				// documented rule; so social care is not among them)
				if !convenor(p, role) && p != "exley-csc" {
					refuse("hijack", p+" "+role+" takes child A's lead", "PUT", "/v1/subjects/"+childA+"/lead-professional",
						mustJSON(map[string]string{"partner": p, "practitioner": sub}), func() string { return tok(p, sub, role) })
					refuse("hijack", p+" "+role+" takes child A's lead (partner defaulted)", "PUT", "/v1/subjects/"+childA+"/lead-professional",
						mustJSON(map[string]string{"practitioner": sub}), func() string { return tok(p, sub, role) })
				}
				if p != "exley-csc" && p != "exley-academy" && !convenor(p, role) {
					refuse("hijack", p+" "+role+" leads child B's episode", "PUT", "/v1/early-help/"+ep+"/lead-professional",
						mustJSON(map[string]string{"partner": p, "practitioner": sub}), func() string { return tok(p, sub, role) })
					refuse("hijack", p+" "+role+" joins child B's team", "POST", "/v1/early-help/"+ep+"/team",
						mustJSON(map[string]string{"partner": p, "practitioner": sub, "role": role}), func() string { return tok(p, sub, role) })
				}
			}
		}
		for _, u := range uninvolved {
			refuse("hijack", "social care names uninvolved "+u, "PUT", "/v1/subjects/"+childA+"/lead-professional",
				mustJSON(map[string]string{"partner": u, "practitioner": "x-0001"}), func() string { return tok("exley-csc", "sw-0042", "social_worker") })
			refuse("hijack", "the team names non-member "+u, "PUT", "/v1/early-help/"+ep+"/lead-professional",
				mustJSON(map[string]string{"partner": u, "practitioner": "x-0001"}), func() string { return tok("exley-academy", "dsl-0009", "designated_safeguarding_lead") })
		}
	}

	// 5. Valid NHS numbers in every field of random bad requests.
	injected := map[string]bool{}
	routes := readRoutes(t)
	nInject := 1200 * scale
	for i := 0; i < nInject; i++ {
		n := RandomNHS(r)
		injected[n] = true
		f := FormatNHS(r, n)
		jobs = append(jobs, injectionJob(r, c, keys, tr, routes, n, f))
	}

	// 6. Paths the router would clean or redirect, over raw TCP.
	dirty := []string{
		"/v1/protocols/../audit/entries", "/v1//decisions", "/v1/./protocols", "/v1/%2e%2e/v1/audit/entries",
		"/v1/protocols/%2e%2e/audit/snapshot", "/v1/audit/entries/..", "/v1/subjects/" + childA + "/../../audit/entries",
		"/v1/reviews/%2F..%2Fadmin%2Fstatus", "//v1/audit/entries", "/v1/admin/status/.", "/v1/audit//entries",
		"/v1/./admin/reload", "/v1/protocols/./", "/v1/%2E/audit/snapshot", "/v1/protocols/..%2Faudit%2Fentries", "/v1/",
	}
	for i := 0; i < 6*scale; i++ {
		for _, p := range dirty {
			method := "GET"
			if strings.Contains(p, "reload") {
				method = "POST"
			}
			who := pick(r, as) // even an appointed Trust auditor gets no cleaned answer
			add("path_cleaning", func() (Answer, string) {
				raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
					method, p, tok(who.Partner, who.Practitioner, who.Role))
				a, _ := c.Raw(raw, "/v1 (raw) "+p)
				if a.Err == nil && (a.Status != 404 || a.RequestID == "") {
					return a, fmt.Sprintf("%s %s → %d (request id %q)", method, p, a.Status, a.RequestID)
				}
				return a, ""
			})
		}
	}

	// 7. Every documented path with every method it does not answer.
	for _, rt := range routes {
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			path := rt.concrete()
			if answers(routes, path, m) { // e.g. POST /v1/reviews/summary is POST /v1/reviews/{id}
				continue
			}
			add("wrong_method", func() (Answer, string) {
				a := c.Do(m, path, tok("exley-csc", "sw-0042", "social_worker"), nil, nil)
				allow := strings.Split(strings.ReplaceAll(a.Allow, " ", ""), ",")
				for _, want := range rt.methods {
					if !slices.Contains(allow, want) {
						return a, fmt.Sprintf("%s %s → %d Allow %q lacks %s", m, path, a.Status, a.Allow, want)
					}
				}
				if a.Status != 405 || slices.Contains(allow, m) {
					return a, fmt.Sprintf("%s %s → %d Allow %q", m, path, a.Status, a.Allow)
				}
				return a, ""
			})
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/.well-known/jwks.json"} {
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			add("wrong_method", func() (Answer, string) {
				a := c.Do(m, p, "", nil, nil)
				if a.Status != 405 || a.Allow != "GET" {
					return a, fmt.Sprintf("%s %s → %d Allow %q", m, p, a.Status, a.Allow)
				}
				return a, ""
			})
		}
	}

	// 8. A body in a media type the route does not document (for most,
	// anything but application/json).
	cts := []string{"", "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data; boundary=x", "text/json", "application/json-seq", "application/xml"}
	for _, rt := range routes {
		for _, m := range rt.methods {
			if m == "GET" {
				continue
			}
			path := rt.concrete()
			for _, ct := range cts {
				if rt.documented(m, ct) {
					continue // e.g. a witness's cosignature is a text/plain note
				}
				add("content_type", func() (Answer, string) {
					hdr := map[string]string{"Content-Type": ct}
					if ct == "" {
						hdr["Content-Type"] = "" // removed
					}
					// someone who may call it, so that only the header is wrong
					who := tok("exley-csc", "sw-0042", "social_worker")
					if strings.HasPrefix(path, "/v1/admin/") || strings.HasPrefix(path, "/v1/reviews") {
						who = tok("exley-csc", "ig-0001", "ig_lead")
					}
					a := c.Do(m, path, who, []byte(`{}`), hdr)
					if a.Status != 415 {
						return a, fmt.Sprintf("%s %s with Content-Type %q → %d", m, path, ct, a.Status)
					}
					return a, ""
				})
			}
		}
	}

	// 9. Content-Length with Transfer-Encoding, over raw TCP; the second
	// request hidden in the body must never be answered.
	for i := 0; i < 5*scale; i++ {
		for v := 0; v < 6; v++ {
			jobs = append(jobs, smugglingJob(c, keys, v))
		}
	}

	// 10. Replays: an accepted token sent again.
	for i := 0; i < 25*scale; i++ {
		add("replay", func() (Answer, string) {
			tk := tok("exley-police", "ppu-0003", "police_officer")
			if a := c.Do("GET", "/v1/protocols", tk, nil, nil); a.Status != 200 {
				return a, fmt.Sprintf("the first use → %d", a.Status)
			}
			a := c.Do("GET", "/v1/protocols", tk, nil, nil)
			if a.Status != 401 {
				return a, fmt.Sprintf("the replay → %d", a.Status)
			}
			return a, ""
		})
	}

	// 11. A flood of forged tokens before the restart: each jti is used
	// again after it, by a real token, which must be accepted.
	var forgedJTIs []string
	for i := 0; i < 400*scale; i++ {
		p := pick(r, partners)
		cl := Standard(p, randSub(r), pick(r, append(tr.heldRoles(p), "ig_lead")))
		jti := cl["jti"].(string)
		forgedJTIs = append(forgedJTIs, jti)
		add("forged_flood", func() (Answer, string) {
			tk, _ := keys.Sign(p, cl)
			parts := strings.Split(tk, ".")
			// the payload changed after signing: the signature fails
			cl2 := Claims{}
			for k, v := range cl {
				cl2[k] = v
			}
			cl2["sub"] = "someone-else"
			pb, _ := json.Marshal(cl2)
			forged := parts[0] + "." + b64(pb) + "." + parts[2]
			a := c.Do("GET", "/v1/protocols", forged, nil, nil)
			if a.Status != 401 {
				return a, fmt.Sprintf("a forged token → %d", a.Status)
			}
			return a, ""
		})
	}

	r.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	start := time.Now()
	runJobs(tl, jobs, 6)
	t.Logf("%d hostile requests in %s", len(jobs), time.Since(start).Round(time.Millisecond))

	// --- Legitimate controls after the batch ---------------------------
	// A second IG lead closes each self-reviewed override: four eyes, not
	// a locked door. The plain social worker's is closed by the GP's
	// agency-scope IG lead (it concerns the GP).
	must("a second person closes "+overrides[0].review, c.Do("POST", "/v1/reviews/"+overrides[0].review, tok("exley-csc", "ig-1", "ig_lead"), note, nil), 200)
	must("a second person closes "+overrides[1].review, c.Do("POST", "/v1/reviews/"+overrides[1].review, tok("exley-csc", "ig-0001", "ig_lead"), note, nil), 200)
	must("the GP's IG lead closes "+overrides[2].review, c.Do("POST", "/v1/reviews/"+overrides[2].review, tok("riverside-gp", "prac-ig_lead", "ig_lead"), note, nil), 200)
	// A change of lead notifies the previous lead's agency.
	a = c.Do("PUT", "/v1/subjects/"+childA+"/lead-professional", tok("exley-csc", "sw-0042", "social_worker"),
		mustJSON(map[string]string{"partner": "riverside-gp", "practitioner": "gp-0001"}), nil)
	must("social care names the GP lead", a, 200)
	legitLead[a.RequestID] = true
	a = c.Do("PUT", "/v1/subjects/"+childA+"/lead-professional", tok("exley-csc", "tm-0001", "team_manager"),
		mustJSON(map[string]string{"partner": "exley-csc", "practitioner": "sw-0042"}), nil)
	must("social care takes the lead back", a, 200)
	legitLead[a.RequestID] = true
	m = must("the GP's notifications", c.Do("GET", "/v1/notifications?limit=500", tok("riverside-gp", "gp-0001", "gp"), nil, nil), 200)
	if !hasEvent(m, "lead_professional_changed") {
		t.Errorf("the previous lead's agency was not told of the change: %v", m)
	}
	// The episode's lead is still the academy's DSL.
	m = must("child B's lookup", c.Do("GET", "/v1/subjects/"+childB+"/involvements", tok("exley-csc", "ehw-0011", "early_help_worker"), nil, nil), 200)
	if lp := fmt.Sprint(m["early_help"].(map[string]any)["lead_professional"]); !strings.Contains(lp, "dsl-0009") {
		t.Errorf("child B's episode lead is now %s", lp)
	}
	// A disclosure about child A: no hijacking agency is told of it.
	must("a disclosure about child A", c.Do("POST", "/v1/share-requests", tok("exley-csc", "sw-0042", "social_worker"),
		mustJSON(map[string]any{"subject": childA, "provider": "exley-police", "purpose": "safeguarding", "categories": []string{"police_concerns", "household"}}), nil), 200)
	for _, p := range partners {
		if p == "exley-csc" || p == "exley-police" || p == "riverside-gp" || p == "exley-hospital" || p == "exley-academy" {
			continue // the requester, the providers, the GP (a lead for a while), the episode's lead
		}
		rs := tr.heldRoles(p)
		if len(rs) == 0 {
			continue
		}
		a := c.Do("GET", "/v1/notifications?limit=500", tok(p, randSub(r), rs[0]), nil, nil)
		if hasEvent(a.JSON(), "record_disclosed") {
			tl.add("hijack", a, p+" was notified of a disclosure it is not entitled to know of")
		}
	}

	// --- A real restart ---------------------------------------------------
	// Tokens accepted before it, with five minutes to run.
	var before []string
	for i := 0; i < 20; i++ {
		cl := Standard("exley-csc", "sw-0042", "social_worker")
		cl["exp"] = time.Now().Add(5 * time.Minute).Unix()
		tk, _ := keys.Sign("exley-csc", cl)
		must("a token before the restart", c.Do("GET", "/v1/protocols", tk, nil, nil), 200)
		before = append(before, tk)
	}
	g.stop(t)
	g.start(t, false)
	var after []job
	for i, jti := range forgedJTIs {
		if i%4 != 0 {
			continue
		}
		after = append(after, job{"after_restart", func() (Answer, string) {
			cl := Standard("exley-police", "ppu-0003", "police_officer")
			cl["jti"] = jti // a forged token used this jti before the restart
			tk, _ := keys.Sign("exley-police", cl)
			a := c.Do("GET", "/v1/protocols", tk, nil, nil)
			if a.Status != 200 {
				return a, fmt.Sprintf("a real token whose jti a forged one used → %d %s", a.Status, a.Body)
			}
			return a, ""
		}})
	}
	for _, tk := range before {
		after = append(after, job{"after_restart", func() (Answer, string) {
			a := c.Do("GET", "/v1/protocols", tk, nil, nil)
			if a.Status != 401 {
				return a, fmt.Sprintf("a token used before the restart, replayed after → %d", a.Status)
			}
			return a, ""
		}})
	}
	runJobs(tl, after, 6)
	g.stop(t)

	// --- The log, read independently -------------------------------------
	export := g.export(t)
	raw, err := os.ReadFile(g.auditFile())
	if err != nil {
		t.Fatal(err)
	}
	lf := checkLog(t, export, raw, c, as, overrides, legitLead, injected)

	// --- The figures ------------------------------------------------------
	total := 0
	for _, cl := range classes {
		total += tl.total(cl)
	}
	tbl := tl.table(classes)
	t.Logf("\n%s", tbl)
	t.Logf("log: %s", lf)
	if total < 3000 {
		t.Errorf("only %d hostile requests", total)
	}
	for _, cl := range classes {
		for i, v := range tl.violations[cl] {
			if i == 10 {
				t.Errorf("%s: … %d more", cl, len(tl.violations[cl])-10)
				break
			}
			t.Errorf("%s: %s", cl, v)
		}
	}
	for i, e := range tl.errors {
		if i == 10 {
			break
		}
		t.Errorf("transport error: %s", e)
	}
	if f := os.Getenv("TRUSTGATE_HOSTILE_REPORT"); f != "" {
		_ = os.WriteFile(f, []byte(fmt.Sprintf("seed %d scale %d\n\n%s\n%s\n", seed, scale, tbl, lf)), 0o644)
	}
}

func hasEvent(m map[string]any, event string) bool {
	ns, _ := m["notifications"].([]any)
	for _, n := range ns {
		if nm, ok := n.(map[string]any); ok && nm["event"] == event {
			return true
		}
	}
	return false
}

// ovr is an override the set-up made, and the review it opened.
type ovr struct{ partner, sub, role, provider, review string }

// route is a documented path and its methods (docs/openapi.yaml).
type route struct {
	path    string
	methods []string
	bodies  map[string][]string // method → the documented request body media types
}

// documented says whether the route documents media type ct for a
// request body of method (application/json where it documents none).
func (rt route) documented(method, ct string) bool {
	types := rt.bodies[method]
	if len(types) == 0 {
		types = []string{"application/json"}
	}
	return slices.Contains(types, ct)
}

func (rt route) concrete() string {
	p := strings.ReplaceAll(rt.path, "{nhs}", childC)
	return strings.ReplaceAll(p, "{id}", "x-0001")
}

// answers says whether a documented route answers method on path.
func answers(routes []route, path, method string) bool {
	for _, rt := range routes {
		if !slices.Contains(rt.methods, method) {
			continue
		}
		ts, ps := strings.Split(rt.path, "/"), strings.Split(path, "/")
		if len(ts) != len(ps) {
			continue
		}
		ok := true
		for i := range ts {
			if ts[i] != ps[i] && !strings.HasPrefix(ts[i], "{") {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func readRoutes(t *testing.T) []route {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var rs []route
	for p, ops := range doc.Paths {
		rt := route{path: p, bodies: map[string][]string{}}
		for m, op := range ops {
			switch m {
			case "get", "post", "put", "patch", "delete":
				rt.methods = append(rt.methods, strings.ToUpper(m))
				body, _ := op.(map[string]any)["requestBody"].(map[string]any)
				content, _ := body["content"].(map[string]any)
				for ct := range content {
					rt.bodies[strings.ToUpper(m)] = append(rt.bodies[strings.ToUpper(m)], ct)
				}
			}
		}
		rs = append(rs, rt)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].path < rs[j].path })
	if len(rs) < 30 {
		t.Fatalf("only %d documented paths", len(rs))
	}
	return rs
}

var _ = http.MethodGet
