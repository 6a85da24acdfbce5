package console_test

// The console in a real browser: Debian's headless Chromium driven with
// chromedp, against a real gateway (app.New on a demo Trust, real bbolt,
// real OPA) and a real OpenID provider (zitadel/oidc's example OP, with
// its own login form), with axe-core run in each page.

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"gopkg.in/yaml.v3"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/console"
	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/nhs"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

const (
	child    = "9990000018"
	clientID = "trustgate-console"
	password = "correct-horse-battery"
)

// roleStorage is the example OP's storage with a roles claim in the ID
// token, as an agency's provider would assert its staff's roles.
type roleStorage struct {
	*storage.Storage
	roles map[string][]string
}

func (s *roleStorage) SetUserinfoFromRequest(ctx context.Context, ui *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	ui.AppendClaims("roles", s.roles[req.GetSubject()])
	return nil
}

// startOP runs the OpenID provider of Exley children's social care on
// loopback; people sign in with a username and password on its own page.
func startOP(t *testing.T, redirect string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String() + "/"
	users := map[string]*storage.User{
		"ig-1":        {ID: "ig-1", Username: "ig.lead@exley-csc.example", Password: password, FirstName: "Ida", LastName: "Lead", EmailVerified: true},
		"nobody-0003": {ID: "nobody-0003", Username: "nobody@exley-csc.example", Password: password, FirstName: "No", LastName: "Role", EmailVerified: true},
		"ig-0001":     {ID: "ig-0001", Username: "both@exley-csc.example", Password: password, FirstName: "Two", LastName: "Roles", EmailVerified: true},
		"unapp-0004":  {ID: "unapp-0004", Username: "unappointed@exley-csc.example", Password: password, FirstName: "Not", LastName: "Appointed", EmailVerified: true},
	}
	b, _ := json.Marshal(users)
	path := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	us, err := storage.StoreFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st := &roleStorage{
		Storage: storage.NewStorageWithClients(us, map[string]*storage.Client{clientID: storage.NativeClient(clientID, redirect)}),
		roles:   map[string][]string{"ig-1": {"ig_lead", "not_a_trust_role"}, "nobody-0003": {"superuser"}, "ig-0001": {"social_worker"}, "unapp-0004": {"ig_lead", "auditor"}},
	}
	// The example OP logs each request through slog's default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	srv := &http.Server{Handler: exampleop.SetupServer(issuer, st, nil, false), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return issuer
}

// freePort reserves a loopback port for the gateway, whose address must
// be known before it starts (it is the OIDC redirect URI).
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// addOIDC names the OP in the demo registry's entry for partner.
func addOIDC(t *testing.T, regPath, partner, issuer string) {
	t.Helper()
	doc, err := os.ReadFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		t.Fatal(err)
	}
	found := false
	for i, n := range root.Content[0].Content {
		if n.Value != "partners" {
			continue
		}
		for _, p := range root.Content[0].Content[i+1].Content {
			for j := 0; j+1 < len(p.Content); j += 2 {
				if p.Content[j].Value == "id" && p.Content[j+1].Value == partner {
					var o yaml.Node
					_ = o.Encode(map[string]string{"issuer": issuer, "client_id": clientID})
					p.Content = append(p.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "oidc"}, &o)
					found = true
				}
			}
		}
	}
	if !found {
		t.Fatalf("no partner %s in the registry", partner)
	}
	out, err := yaml.Marshal(&root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(regPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// gateway is the demo Trust's gateway serving the console.
type gateway struct {
	t    *testing.T
	app  *app.App
	base string
	dir  string
	cfg  config.Config
}

func startGateway(t *testing.T) *gateway {
	t.Helper()
	dir := t.TempDir()
	listen := freePort(t)
	base := "http://" + listen
	issuer := startOP(t, base+console.Prefix+"callback")
	if err := demo.Init(dir, demo.Options{Listen: listen}); err != nil {
		t.Fatal(err)
	}
	addOIDC(t, filepath.Join(dir, "protocols", protocol.RegistryFile), "exley-csc", issuer)
	cfg, err := config.Load(filepath.Join(dir, "trustgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = listen
	cfg.Policy.Watch = false
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		a.Close()
	})
	return &gateway{t: t, app: a, base: base, dir: dir, cfg: cfg}
}

// as makes one API request as an agency system would.
func (g *gateway) as(partner, sub, role, method, path string, body any) map[string]any {
	g.t.Helper()
	key, _, err := protocol.ReadPrivateKey(filepath.Join(g.dir, "keys", partner+".jwk"))
	if err != nil {
		g.t.Fatal(err)
	}
	tok, err := identity.Mint(key, identity.MintClaims{Issuer: partner, Subject: sub, Role: role, Lifetime: time.Minute})
	if err != nil {
		g.t.Fatal(err)
	}
	var rd *strings.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, g.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode >= 300 {
		g.t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
	}
	return out
}

// seed gives the gateway the demo Trust's history, as `make run` does
// (demo.SeedIndex: the agencies' caseloads; an allowed share, a denial,
// a safeguarding override by sw-0042 of social care awaiting review; an
// early help episode for the child with its team and lead professional),
// and returns the id of the override's review.
func (g *gateway) seed() (reviewID string) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := demo.SeedIndex(ctx, g.dir, g.base, g.cfg.GatewayID); err != nil {
		g.t.Fatal(err)
	}
	r := g.as("exley-csc", "ig-0001", "ig_lead", "GET", "/v1/reviews?status=open", nil)
	rs, _ := r["reviews"].([]any)
	if len(rs) != 1 {
		g.t.Fatalf("the demo's seed leaves %d reviews open, not the override's one: %v", len(rs), r)
	}
	id, _ := rs[0].(map[string]any)["id"].(string)
	return id
}

// browser starts headless Chromium (Debian's package; the Makefile
// installs it) in a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := os.Getenv("TRUSTGATE_CHROMIUM")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("chromium"); err != nil {
			t.Fatal("no chromium on PATH: run `make test`, which installs Debian's chromium, or set TRUSTGATE_CHROMIUM")
		}
	}
	// A fresh profile, removed after the browser has gone (not with
	// t.TempDir, whose removal races Chromium's last writes).
	profile, err := os.MkdirTemp("", "trustgate-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 150*time.Second)
	t.Cleanup(func() {
		cancelT()
		cancelB()
		cancelA()
		for range 20 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// axeSource is axe-core's browser build, fetched from npm by the Makefile.
func axeSource(t *testing.T) string {
	t.Helper()
	p := os.Getenv("TRUSTGATE_AXE")
	if p == "" {
		p = filepath.Join("..", "..", ".cache", "npm", "node_modules", "axe-core", "axe.min.js")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("axe-core: %v (run `make test`, which fetches it from npm)", err)
	}
	return string(b)
}

// screenshots is where each page's picture is kept (git-ignored).
func screenshots(t *testing.T) string {
	d := os.Getenv("TRUSTGATE_SCREENSHOTS")
	if d == "" {
		d = filepath.Join("..", "..", ".artifacts", "console")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

type violation struct {
	ID, Impact, Help string
	Nodes            []string
}

// check runs axe-core in the page (WCAG 2.0–2.2 A and AA rules) and fails
// on any serious or critical violation; then keeps a screenshot.
func check(t *testing.T, ctx context.Context, axe, shots, name string) {
	t.Helper()
	for _, v := range axeRun(t, ctx, axe, name) {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("%s: accessibility: %s (%s): %s at %v", name, v.ID, v.Impact, v.Help, v.Nodes)
		} else {
			t.Logf("%s: accessibility (%s): %s: %s", name, v.Impact, v.ID, v.Help)
		}
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// axeRun runs axe-core in the page and returns its violations.
func axeRun(t *testing.T, ctx context.Context, axe, name string) []violation {
	t.Helper()
	var loaded bool
	if err := chromedp.Run(ctx, chromedp.Evaluate(`typeof axe !== "undefined"`, &loaded)); err != nil {
		t.Fatal(err)
	}
	if !loaded {
		if err := chromedp.Run(ctx, chromedp.Evaluate(axe, nil)); err != nil {
			t.Fatalf("%s: load axe-core: %v", name, err)
		}
	}
	var out string
	run := `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]}})
	  .then(r => JSON.stringify(r.violations.map(v => ({ID: v.id, Impact: v.impact, Help: v.help, Nodes: v.nodes.map(n => n.target.join(" "))}))))`
	if err := chromedp.Run(ctx, chromedp.Evaluate(run, &out, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })); err != nil {
		t.Fatalf("%s: axe: %v", name, err)
	}
	var vs []violation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	var s string
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Run(wctx, chromedp.WaitVisible(sel, chromedp.ByQuery), chromedp.Text(sel, &s, chromedp.ByQuery)); err != nil {
		var body, at string
		_ = chromedp.Run(ctx, chromedp.Location(&at), chromedp.Evaluate(`document.body ? document.body.innerText : ""`, &body))
		t.Fatalf("%s: %v; the page at %s says:\n%s", sel, err, at, body)
	}
	return s
}

func TestConsoleInBrowser(t *testing.T) {
	g := startGateway(t)
	reviewID := g.seed()
	ctx := browser(t)
	axe, shots := axeSource(t), screenshots(t)
	urls := recordURLs(t, ctx)

	// 1. An IG lead signs in through her agency's OpenID provider: the
	// console sends her there, she types her password on its page, and
	// comes back signed in (authorization code + PKCE).
	must(t, ctx, chromedp.Navigate(g.base+"/console/reviews"))
	check(t, ctx, axe, shots, "01-signin")
	// Keyboard: the first Tab reaches the skip link, which moves the
	// focus to the main content; the next reaches the agency's button.
	var focus string
	must(t, ctx, chromedp.KeyEvent("\t"), chromedp.Evaluate(`document.activeElement.className`, &focus))
	if focus != "skip" {
		t.Fatalf("the first Tab focuses %q, not the skip link", focus)
	}
	must(t, ctx, chromedp.KeyEvent("\r"), chromedp.Evaluate(`document.activeElement.id`, &focus))
	if focus != "main" {
		t.Fatalf("the skip link moves the focus to %q", focus)
	}
	must(t, ctx, chromedp.KeyEvent("\t"), chromedp.Evaluate(`document.activeElement.textContent`, &focus))
	if !strings.Contains(focus, "Sign in with Exley Borough Council") {
		t.Fatalf("after the skip link, Tab focuses %q", focus)
	}
	must(t, ctx, chromedp.Click(`a[href^="/console/signin/exley-csc"]`, chromedp.ByQuery))
	must(t, ctx, chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, "ig.lead@exley-csc.example", chromedp.ByID),
		chromedp.SendKeys(`#password`, password, chromedp.ByID),
		chromedp.Submit(`#password`, chromedp.ByID))
	if who := text(t, ctx, ".who"); !strings.Contains(who, "ig-1") || !strings.Contains(who, "ig_lead") {
		t.Fatalf("after sign-in: %q", who)
	}
	var url string
	must(t, ctx, chromedp.Location(&url))
	if !strings.HasSuffix(url, "/console/reviews") {
		t.Fatalf("after sign-in the browser is at %s, not the page it asked for", url)
	}

	// 2. The review queue holds the override; she closes it with an
	// outcome and a note, and it leaves the queue.
	if q := text(t, ctx, "#review-queue"); !strings.Contains(q, reviewID[:12]) || !strings.Contains(q, "sw-0042") {
		t.Fatalf("review queue: %q", q)
	}
	check(t, ctx, axe, shots, "02-reviews")
	must(t, ctx, chromedp.Click(`a[href="/console/reviews/`+reviewID+`"]`, chromedp.ByQuery), chromedp.WaitVisible(`#close-review`, chromedp.ByID))
	if d := text(t, ctx, ".facts"); !strings.Contains(d, "Bruising seen at school") || !strings.Contains(d, "health_summary") {
		t.Fatalf("review detail: %q", d)
	}
	if f := text(t, ctx, "#disclosed-fields"); !strings.Contains(f, "health_summary: only the fields") {
		t.Fatalf("the fields disclosed: %q", f)
	}
	check(t, ctx, axe, shots, "03-review")
	must(t, ctx, chromedp.Click(`#o-up`, chromedp.ByID),
		chromedp.SendKeys(`#note`, "Checked the strategy discussion minutes; the override was needed.", chromedp.ByID),
		chromedp.Submit(`#note`, chromedp.ByID))
	if n := text(t, ctx, ".notice.ok"); !strings.Contains(n, "has left the queue") {
		t.Fatalf("after closing: %q", n)
	}
	if e := text(t, ctx, "#review-queue-empty"); !strings.Contains(e, "No open override reviews") {
		t.Fatalf("the queue is not empty: %q", e)
	}
	must(t, ctx, chromedp.Navigate(g.base+"/console/reviews?status=closed"))
	if q := text(t, ctx, "#review-queue"); !strings.Contains(q, reviewID[:12]) {
		t.Fatalf("closed reviews: %q", q)
	}

	// 3. Protocols: signatures and rules; a draft that drops the
	// police-to-social-care rule is linted and its what-if shows the
	// share recorded above turning to a denial.
	must(t, ctx, chromedp.Navigate(g.base+"/console/protocols"))
	if p := text(t, ctx, "#h-list + article, article.protocol"); !strings.Contains(p, "verified") {
		t.Fatalf("protocols: %q", p)
	}
	check(t, ctx, axe, shots, "04-protocols")
	draft := dropRule(t, filepath.Join(g.dir, "protocols", "safeguarding.yaml"), "police-to-social-care")
	must(t, ctx, chromedp.SetUploadFiles(`#draft-file`, []string{draft}, chromedp.ByID),
		chromedp.SendKeys(`#draft-name`, "safeguarding.yaml", chromedp.ByID),
		chromedp.Submit(`#draft-file`, chromedp.ByID))
	if s := text(t, ctx, "#whatif-summary"); !strings.Contains(s, "1 of") {
		t.Fatalf("what-if summary: %q", s)
	}
	if d := text(t, ctx, "#whatif-diff"); !strings.Contains(d, "allow_to_deny") || !strings.Contains(d, "police-to-social-care") {
		t.Fatalf("what-if diff: %q", d)
	}
	check(t, ctx, axe, shots, "05-draft-whatif")

	// 4. The overview's charts.
	must(t, ctx, chromedp.Navigate(g.base+"/console/"))
	if c := text(t, ctx, "#by-partner-t"); !strings.Contains(c, "partner") {
		t.Fatalf("overview: %q", c)
	}
	var bars int
	must(t, ctx, chromedp.Evaluate(`document.querySelectorAll("figure.chart rect").length`, &bars))
	if bars < 3 {
		t.Fatalf("overview charts draw %d bars", bars)
	}
	check(t, ctx, axe, shots, "06-overview")

	// 5. An auditor signs in with a development link (one-time) and
	// answers "who saw what about this child, and was it allowed".
	must(t, ctx, chromedp.Click(`.who button`, chromedp.ByQuery), chromedp.WaitVisible(`.agencies`, chromedp.ByQuery))
	key, _, err := protocol.ReadPrivateKey(filepath.Join(g.dir, "keys", "exley-csc.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	link, err := console.Link(key, "exley-csc", "auditor-07", "auditor", g.cfg.GatewayID, g.base, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	must(t, ctx, chromedp.Navigate(link), chromedp.WaitVisible(`#link-signin`, chromedp.ByID))
	check(t, ctx, axe, shots, "14-link")
	must(t, ctx, chromedp.Click(`#link-signin`, chromedp.ByID))
	if who := text(t, ctx, ".who"); !strings.Contains(who, "auditor-07") || !strings.Contains(who, "auditor") {
		t.Fatalf("after the link: %q", who)
	}
	// The link works once.
	must(t, ctx, chromedp.Navigate(link), chromedp.Click(`#link-signin`, chromedp.ByID))
	if e := text(t, ctx, ".notice.bad"); !strings.Contains(e, "already been used") {
		t.Fatalf("a used link: %q", e)
	}
	must(t, ctx, chromedp.Navigate(g.base+"/console/audit?kind=allow"))
	if r := text(t, ctx, "#audit-results"); !strings.Contains(r, "sw-0042") {
		t.Fatalf("audit search: %q", r)
	}
	check(t, ctx, axe, shots, "07-audit")
	must(t, ctx, chromedp.Click(`#audit-results tbody a`, chromedp.ByQuery),
		chromedp.WaitVisible(`#verify-proof`, chromedp.ByID),
		chromedp.WaitReady(`html[data-ready]`, chromedp.ByQuery), // the script has wired the button
		chromedp.Click(`#verify-proof`, chromedp.ByID),
		chromedp.WaitVisible(`#proof-result[data-verified]`, chromedp.ByQuery))
	if r := text(t, ctx, "#proof-result"); !strings.HasPrefix(r, "✓ Verified in this browser") {
		t.Fatalf("proof: %q", r)
	}
	check(t, ctx, axe, shots, "08-entry-proof")

	must(t, ctx, chromedp.Navigate(g.base+"/console/child"), chromedp.WaitVisible(`#nhs`, chromedp.ByID))
	check(t, ctx, axe, shots, "15-child-form")
	must(t, ctx, chromedp.SendKeys(`#nhs`, "999 000 0018", chromedp.ByID),
		chromedp.Submit(`#nhs`, chromedp.ByID),
		chromedp.WaitVisible(`#report-verdict[data-verified]`, chromedp.ByQuery))
	if v := text(t, ctx, "#report-verdict"); !strings.HasPrefix(v, "✓ All ") {
		t.Fatalf("report verdict: %q", v)
	}
	rep := text(t, ctx, "#report-entries")
	if !strings.Contains(rep, "t-0007") || !strings.Contains(rep, "deny") || !strings.Contains(rep, "on override") || strings.Contains(rep, "not yet checked") {
		t.Fatalf("report: %q", rep)
	}
	check(t, ctx, axe, shots, "09-child-report")
	// Printable: in print media the navigation, forms and buttons are
	// gone and the report stays; the browser's print gives a PDF.
	var hidden string
	must(t, ctx, emulation.SetEmulatedMedia().WithMedia("print"),
		chromedp.Evaluate(`[".top nav", ".who", ".childnav", "[data-print]", "#report-entries"].map(s => document.querySelector(s).getClientRects().length > 0 ? "shown" : "hidden").join(",")`, &hidden),
		emulation.SetEmulatedMedia().WithMedia(""))
	if hidden != "hidden,hidden,hidden,hidden,shown" {
		t.Fatalf("print styles (navigation, who, child links, print button | report): %s", hidden)
	}
	var pdf []byte
	must(t, ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		pdf, _, err = page.PrintToPDF().Do(ctx)
		return err
	}))
	if !bytes.HasPrefix(pdf, []byte("%PDF")) {
		t.Fatalf("print to PDF gave %d bytes", len(pdf))
	}
	if err := os.WriteFile(filepath.Join(shots, "09-child-report.pdf"), pdf, 0o644); err != nil {
		t.Fatal(err)
	}

	// The audit search by child: the NHS number goes in the form's body;
	// the results page, its "older" and export links name the child by
	// the session's reference.
	must(t, ctx, chromedp.Navigate(g.base+"/console/audit"),
		chromedp.WaitVisible(`#f-child`, chromedp.ByID),
		chromedp.SendKeys(`#f-child`, child, chromedp.ByID),
		chromedp.Submit(`#f-child`, chromedp.ByID))
	waitURL(t, ctx, "child=")
	if r := text(t, ctx, "#audit-results"); !strings.Contains(r, "t-0007") || !strings.Contains(r, "(override)") {
		t.Fatalf("audit search by child: %q", r)
	}
	var loc, csvOut string
	must(t, ctx, chromedp.Location(&loc))
	if !strings.Contains(loc, "child=c") {
		t.Fatalf("the search by child is at %s", loc)
	}
	// The export of that search, fetched by the page as a click would.
	must(t, ctx, chromedp.Evaluate(`fetch(document.querySelector('a[href*="format=csv"]').href).then(r => r.text())`, &csvOut,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
	if lines := strings.Split(strings.TrimSpace(csvOut), "\n"); len(lines) < 4 || !strings.HasPrefix(lines[0], "seq,time,kind") || !strings.Contains(csvOut, "t-0007") {
		t.Fatalf("export of the search by child: %q", csvOut)
	}
	check(t, ctx, axe, shots, "10-audit-child")

	// The auditor has no basis to see the team around the child: the
	// page shows the API's refusal and its reasons.
	openChild(t, ctx, g.base, child, "team")
	if r := text(t, ctx, "#team-refused"); !strings.Contains(r, "no basis") || !strings.Contains(r, "no active involvement") {
		t.Fatalf("the auditor's view of the team: %q", r)
	}
	if n := count(t, ctx, "#team, #involvements"); n != 0 {
		t.Fatalf("a refused person sees %d team tables", n)
	}
	check(t, ctx, axe, shots, "11-team-refused")

	// The child's lead professional (sw-0042 of social care) signs in and
	// sees the team around the child: the episode, its members with who
	// left, the lead and the history of leads, and the involvements —
	// not CAMHS, a shielded service, whose practitioner is in the team.
	signOut(t, ctx)
	signInLink(t, ctx, g, "exley-csc", "sw-0042", "social_worker")
	openChild(t, ctx, g.base, child, "team")
	if l := text(t, ctx, "#lead-professional"); !strings.Contains(l, "sw-0042") || !strings.Contains(l, "Exley Borough Council") {
		t.Fatalf("lead professional: %q", l)
	}
	team := text(t, ctx, "#team")
	for _, want := range []string{"gp-0101", "ppu-0003", "ewo-0005", "sw-0042", "police_officer"} {
		if !strings.Contains(team, want) {
			t.Fatalf("the team lacks %s: %q", want, team)
		}
	}
	var left string
	must(t, ctx, chromedp.Evaluate(`[...document.querySelectorAll("#team tbody tr")].find(r => r.textContent.includes("ewo-0005")).cells[4].textContent`, &left))
	if left == "—" || left == "" {
		t.Fatalf("the member who left shows no date: %q", left)
	}
	if h := text(t, ctx, "#lead-history"); !strings.Contains(h, "gp-0101") || !strings.Contains(h, "sw-0042") {
		t.Fatalf("the history of leads: %q", h)
	}
	inv := text(t, ctx, "#involvements")
	for _, want := range []string{"exley-csc", "exley-police", "riverside-gp"} {
		if !strings.Contains(inv, want) {
			t.Fatalf("involvements lack %s: %q", want, inv)
		}
	}
	var page string
	must(t, ctx, chromedp.Evaluate(`document.body.innerText`, &page))
	if strings.Contains(strings.ToLower(page), "camhs") || strings.Contains(page, "cl-0007") || strings.Contains(page, "mental_health") {
		t.Fatalf("the shielded service is shown to the lead professional: %q", page)
	}
	if b := text(t, ctx, "#team-basis"); !strings.Contains(b, "involved") {
		t.Fatalf("basis: %q", b)
	}
	check(t, ctx, axe, shots, "12-team")
	// A child with no early help episode: the page says so and what to do.
	openChild(t, ctx, g.base, "9990000026", "team")
	if e := text(t, ctx, "#no-episode"); !strings.Contains(e, "opens one") {
		t.Fatalf("no episode: %q", e)
	}
	if inv := text(t, ctx, "#involvements"); !strings.Contains(inv, "st-annes-primary") {
		t.Fatalf("involvements of the second child: %q", inv)
	}

	// A designated safeguarding lead of a school, on a protocol's basis
	// for safeguarding: the team, and only that a sensitive service is
	// involved and was told of the enquiry.
	signOut(t, ctx)
	signInLink(t, ctx, g, "st-annes-primary", "dsl-0002", "designated_safeguarding_lead")
	openChild(t, ctx, g.base, child, "team")
	if r := text(t, ctx, "#team-refused"); !strings.Contains(r, "no purpose") {
		t.Fatalf("the DSL without a purpose: %q", r)
	}
	must(t, ctx, chromedp.SetValue(`#purpose`, "safeguarding", chromedp.ByID), chromedp.Submit(`#purpose`, chromedp.ByID))
	if sh := text(t, ctx, "#team-shielded"); !strings.Contains(sh, "sensitive service is also involved") {
		t.Fatalf("the DSL's safeguarding view: %q", sh)
	}
	must(t, ctx, chromedp.Evaluate(`document.body.innerText`, &page))
	if strings.Contains(strings.ToLower(page), "camhs") || strings.Contains(page, "cl-0007") || !strings.Contains(page, "sw-0042") {
		t.Fatalf("the DSL's safeguarding view of the team: %q", page)
	}
	check(t, ctx, axe, shots, "13-team-protocol")

	// No address the browser asked for carried the NHS number, in any
	// writing; the listener itself is live: the legacy address with the
	// number in it is seen, and refused.
	checkURLs(t, g.base, urls, false)
	must(t, ctx, chromedp.Navigate(g.base+"/console/audit?subject=999+000+0018"))
	if e := text(t, ctx, ".notice"); !strings.Contains(e, "not searched for by an NHS number in the page address") {
		t.Fatalf("the legacy address: %q", e)
	}
	checkURLs(t, g.base, urls, true)

	// A page that is not there, and the choice of role of a person whose
	// agency asserts one role and the Trust appoints another.
	must(t, ctx, chromedp.Navigate(g.base+"/console/no-such-page"))
	if e := text(t, ctx, "main"); !strings.Contains(e, "no such page") {
		t.Fatalf("not found: %q", e)
	}
	check(t, ctx, axe, shots, "16-not-found")
	signOut(t, ctx)
	must(t, ctx, chromedp.Navigate(g.base+"/console/protocols"),
		chromedp.Click(`a[href^="/console/signin/exley-csc"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, "both@exley-csc.example", chromedp.ByID),
		chromedp.SendKeys(`#password`, password, chromedp.ByID),
		chromedp.Submit(`#password`, chromedp.ByID))
	if r := text(t, ctx, "form[action=\"/console/role\"]"); !strings.Contains(r, "ig_lead") || !strings.Contains(r, "social_worker") {
		t.Fatalf("the choice of role: %q", r)
	}
	check(t, ctx, axe, shots, "17-role")

	// The checker is live: text of too low a contrast and an unlabelled
	// field, added to the page, are found.
	// (An inline style attribute would not apply: the console's CSP
	// allows only its own stylesheet, so the rule goes in through CSSOM.)
	must(t, ctx, chromedp.Evaluate(`document.styleSheets[0].insertRule(".faint { color: #bbb; }");
		document.querySelector("main").insertAdjacentHTML("beforeend", '<p class="faint">faint</p><input type="text" id="unlabelled">')`, nil))
	found := map[string]bool{}
	for _, v := range axeRun(t, ctx, axe, "sanity") {
		found[v.ID] = v.Impact == "serious" || v.Impact == "critical"
	}
	if !found["color-contrast"] || !found["label"] {
		t.Fatalf("axe-core did not find the planted violations: %v", found)
	}
	t.Logf("screenshots in %s", shots)
}

// openChild opens a child's page through the form (the NHS number in
// the body): view is "report" or "team".
func openChild(t *testing.T, ctx context.Context, base, nhsNumber, view string) {
	t.Helper()
	must(t, ctx, chromedp.Navigate(base+"/console/child"),
		chromedp.WaitVisible(`#nhs`, chromedp.ByID),
		chromedp.SendKeys(`#nhs`, nhsNumber, chromedp.ByID),
		chromedp.Click(`#show-`+view, chromedp.ByID),
		chromedp.WaitVisible(`.childnav`, chromedp.ByQuery))
}

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	must(t, ctx, chromedp.Click(`.who button`, chromedp.ByQuery), chromedp.WaitVisible(`.agencies`, chromedp.ByQuery))
}

// signInLink signs a demo person in with a development link.
func signInLink(t *testing.T, ctx context.Context, g *gateway, partner, sub, role string) {
	t.Helper()
	key, _, err := protocol.ReadPrivateKey(filepath.Join(g.dir, "keys", partner+".jwk"))
	if err != nil {
		t.Fatal(err)
	}
	link, err := console.Link(key, partner, sub, role, g.cfg.GatewayID, g.base, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	must(t, ctx, chromedp.Navigate(link), chromedp.Click(`#link-signin`, chromedp.ByID))
	if who := text(t, ctx, ".who"); !strings.Contains(who, sub) || !strings.Contains(who, role) {
		t.Fatalf("after the link for %s: %q", sub, who)
	}
}

func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	var n int
	must(t, ctx, chromedp.Evaluate(`document.querySelectorAll(`+strconv.Quote(sel)+`).length`, &n))
	return n
}

// urlLog is every address the browser requested (pages, redirects,
// assets, fetches), from Chromium's network events.
type urlLog struct {
	mu   sync.Mutex
	urls []string
}

func recordURLs(t *testing.T, ctx context.Context) *urlLog {
	t.Helper()
	l := &urlLog{}
	chromedp.ListenTarget(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			l.mu.Lock()
			l.urls = append(l.urls, e.Request.URL)
			l.mu.Unlock()
		}
	})
	must(t, ctx, network.Enable())
	return l
}

// checkURLs fails if an address requested carries an NHS number — or,
// with want, if none does. On the console's own origin no address may
// hold a valid NHS number anywhere (as written or unescaped), except
// inside the two tokens that arrive from elsewhere: the OpenID
// provider's authorization code (/console/callback?code=) and a signed
// development link (/console/link?t=), random or base64 text in which
// ten digits may pass the check digit by chance. On other origins (the
// OpenID provider's pages) none may hold the children's NHS numbers of
// this test, in any writing.
func checkURLs(t *testing.T, base string, l *urlLog, want bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	children := []string{child, "9990000026"}
	holds := func(s string) bool {
		un, err := url.QueryUnescape(s)
		if err != nil {
			un = s
		}
		return nhs.Redact(s) != s || nhs.Redact(un) != un
	}
	var with []string
	childPages := 0
	for _, raw := range l.urls {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("an address the browser requested: %v", err)
		}
		if strings.HasPrefix(u.Path, "/console/child/c") {
			childPages++
		}
		if strings.HasPrefix(raw, base+"/") {
			q := u.Query()
			q.Del("code")
			q.Del("t")
			if holds(u.EscapedPath()) || holds(u.Path) || holds(q.Encode()) || holds(u.Fragment) {
				with = append(with, raw)
			}
			continue
		}
		for _, n := range children {
			if strings.Contains(nhs.Redact(raw), nhs.Mask) && strings.Contains(digitsOf(raw), n) {
				with = append(with, raw)
			}
		}
	}
	if childPages == 0 {
		t.Fatalf("no child page among the %d addresses recorded", len(l.urls))
	}
	if want && len(with) == 0 {
		t.Fatalf("the address with the NHS number was not seen among %d", len(l.urls))
	}
	if !want && len(with) > 0 {
		t.Fatalf("addresses the browser requested carry an NHS number: %v", with)
	}
	t.Logf("%d addresses requested, %d with an NHS number", len(l.urls), len(with))
}

// digitsOf is s unescaped, with the separators nhs.Redact allows between
// digits removed: a number written 999-000-0018 or 999+000+0018 shows
// as 9990000018.
func digitsOf(s string) string {
	if un, err := url.QueryUnescape(s); err == nil {
		s = un
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(" -._/,:+\t", s[i]) >= 0 && i > 0 && i+1 < len(s) && isDigit(s[i-1]) && isDigit(s[i+1]) {
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// waitURL waits until the page's address contains part (a form's
// submission has navigated).
func waitURL(t *testing.T, ctx context.Context, part string) {
	t.Helper()
	var loc string
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if chromedp.Run(ctx, chromedp.Location(&loc)) == nil && strings.Contains(loc, part) {
			return
		}
	}
	t.Fatalf("the browser is at %s, not an address with %q", loc, part)
}

func must(t *testing.T, ctx context.Context, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// dropRule writes a copy of the protocol file without the named rule.
func dropRule(t *testing.T, path, rule string) string {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		t.Fatal(err)
	}
	m := root.Content[0]
	dropped := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != "rules" {
			continue
		}
		rules := m.Content[i+1]
		var keep []*yaml.Node
		for _, r := range rules.Content {
			id := ""
			for j := 0; j+1 < len(r.Content); j += 2 {
				if r.Content[j].Value == "id" {
					id = r.Content[j+1].Value
				}
			}
			if id == rule {
				dropped = true
				continue
			}
			keep = append(keep, r)
		}
		rules.Content = keep
	}
	if !dropped {
		t.Fatalf("no rule %s in %s", rule, path)
	}
	out, _ := yaml.Marshal(&root)
	p := filepath.Join(t.TempDir(), "safeguarding-draft.yaml")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
