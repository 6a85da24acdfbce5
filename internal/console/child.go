package console

import (
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/childrens-trust/trustgate/internal/nhs"
)

// No console address carries an NHS number: browsers keep addresses in
// their history and proxies in their logs. A child's NHS number reaches
// the console only in a form's body (POST, CSRF-checked); the console
// keeps it in the person's session under a random reference and
// redirects to an address naming the reference (/console/child/{ref},
// /console/audit?child={ref}). A reference means nothing outside the
// session that made it, and ends with it.

// maxRefs bounds the children one session holds references for; the
// oldest is forgotten first (its pages then ask for the number again).
const maxRefs = 200

// childRefs maps a session's references to NHS numbers.
type childRefs struct {
	mu    sync.Mutex
	byRef map[string]string
	order []string
}

// ref returns the reference for NHS number n (normalised), making one
// the first time. A reference never holds a valid NHS number.
func (cr *childRefs) ref(n string) string {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	for r, v := range cr.byRef {
		if v == n {
			return r
		}
	}
	if cr.byRef == nil {
		cr.byRef = map[string]string{}
	}
	if len(cr.order) >= maxRefs {
		delete(cr.byRef, cr.order[0])
		cr.order = cr.order[1:]
	}
	r := nhs.FreeOf(func() string { return "c" + randomHex(12) })
	cr.byRef[r] = n
	cr.order = append(cr.order, r)
	return r
}

// nhs returns the NHS number a reference names, if this session made it.
func (cr *childRefs) nhs(ref string) (string, bool) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	n, ok := cr.byRef[ref]
	return n, ok
}

// childForm handles GET /console/child: ask for the child's NHS number.
func (c *Console) childForm(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, http.StatusOK, "child", s, map[string]any{"Title": "A child"})
}

// childViews are what the child form can open.
var childViews = map[string]string{"report": "", "team": "/team"}

// childAsk handles POST /console/child: the NHS number, checked, is
// given a reference in the session and the browser is sent to the page
// asked for (the access report, or the team around the child).
func (c *Console) childAsk(w http.ResponseWriter, r *http.Request, s *session) {
	n, err := nhs.Normalize(strings.TrimSpace(r.PostFormValue("nhs")))
	if err != nil {
		c.render(w, r, http.StatusBadRequest, "child", s, map[string]any{"Title": "A child", "Error": "That is not a valid NHS number: " + err.Error() + "."})
		return
	}
	view := cmpOr(r.PostFormValue("view"), "report")
	suffix, ok := childViews[view]
	if !ok {
		c.render(w, r, http.StatusBadRequest, "child", s, map[string]any{"Title": "A child", "Error": "Choose the access report or the team around the child."})
		return
	}
	target := Prefix + "child/" + s.refs.ref(n) + suffix
	if view == "report" && r.PostFormValue("withhold") == "on" {
		target += "?withhold=1"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// childOf resolves the page's {ref}; when this session made no such
// reference it draws the form again and returns false.
func (c *Console) childOf(w http.ResponseWriter, r *http.Request, s *session) (string, bool) {
	n, ok := s.refs.nhs(r.PathValue("ref"))
	if !ok {
		c.render(w, r, http.StatusNotFound, "child", s, map[string]any{"Title": "A child",
			"Error": "This page's reference to a child has ended with the session that made it (a child's NHS number is never in a page address). Enter the NHS number again."})
	}
	return n, ok
}

// childReport handles GET /console/child/{ref}: the child's access
// report (every disclosure and refusal, each with its inclusion proof,
// checked in the browser) and consents.
func (c *Console) childReport(w http.ResponseWriter, r *http.Request, s *session) {
	n, ok := c.childOf(w, r, s)
	if !ok {
		return
	}
	withhold := r.URL.Query().Get("withhold") == "1"
	data := map[string]any{"Title": "A child's access report", "Withhold": withhold, "NHS": n, "Ref": r.PathValue("ref"), "View": "report"}
	var q url.Values
	if withhold {
		q = url.Values{"withhold_practitioners": {"true"}}
	}
	var rep, cons answer
	var wg sync.WaitGroup
	wg.Go(func() { rep = c.get(r, s, "/v1/subjects/"+n+"/access-report", q) })
	wg.Go(func() { cons = c.get(r, s, "/v1/subjects/"+n+"/consents", nil) })
	wg.Wait()
	data["Report"], data["Consents"] = rep, cons
	if rp, ok := rep.Body["report"].(map[string]any); ok {
		rp = c.reportPage(r, rp, data)
		data["R"] = rp
		data["Proofs"] = map[string]any{"checkpoint": rp["checkpoint"], "entries": proofsOf(rp)}
	}
	c.render(w, r, statusOf(rep), "child", s, data)
}

// reportPageSize is how many of a report's entries one page shows (and
// the browser checks); ?all=1 shows every entry, to print the whole.
const reportPageSize = 100

// reportPage returns the report with only the entries of the page asked
// for (?page=, from 1, newest first), and puts the paging in data.
func (c *Console) reportPage(r *http.Request, rp map[string]any, data map[string]any) map[string]any {
	es := list(rp["entries"])
	total := len(es)
	data["Total"] = total
	q := r.URL.Query()
	if q.Get("all") == "1" || total <= reportPageSize {
		data["First"], data["Last"] = min(1, total), total
		return rp
	}
	page, _ := strconv.Atoi(q.Get("page"))
	pages := (total + reportPageSize - 1) / reportPageSize
	page = max(1, min(page, pages))
	lo, hi := (page-1)*reportPageSize, min(page*reportPageSize, total)
	out := make(map[string]any, len(rp))
	for k, v := range rp {
		out[k] = v
	}
	out["entries"] = es[lo:hi]
	data["First"], data["Last"], data["Paged"] = lo+1, hi, true
	link := func(set map[string]string) template.URL {
		v := url.Values{}
		if q.Get("withhold") == "1" {
			v.Set("withhold", "1")
		}
		for k, x := range set {
			v.Set(k, x)
		}
		return template.URL(Prefix + "child/" + r.PathValue("ref") + "?" + v.Encode())
	}
	if page > 1 {
		data["Newer"] = link(map[string]string{"page": strconv.Itoa(page - 1)})
	}
	if page < pages {
		data["Older"] = link(map[string]string{"page": strconv.Itoa(page + 1)})
	}
	data["All"] = link(map[string]string{"all": "1"})
	return out
}

// proofsOf extracts what the browser needs to check each report entry:
// its stored bytes (base64), seq and proof.
func proofsOf(rp map[string]any) []any {
	var out []any
	for _, e := range list(rp["entries"]) {
		em, _ := e.(map[string]any)
		out = append(out, map[string]any{"stored": em["stored"], "proof": em["proof"], "seq": get(em["entry"], "seq")})
	}
	return out
}

// childTeam handles GET /console/child/{ref}/team?purpose=: the team
// around the child — the early help episode, its team, lead professional
// and the history of leads, and the involvements the viewer may see —
// as the involvement index's lookup answers this person
// (GET /v1/subjects/{nhs}/involvements, decided by policies/index.rego
// and audited about the child). What the lookup hides (shielded
// services) the page cannot show; a person with no basis sees the
// API's refusal and its reasons.
func (c *Console) childTeam(w http.ResponseWriter, r *http.Request, s *session) {
	n, ok := c.childOf(w, r, s)
	if !ok {
		return
	}
	purpose := strings.TrimSpace(r.URL.Query().Get("purpose"))
	var q url.Values
	if purpose != "" {
		q = url.Values{"purpose": {purpose}}
	}
	a := c.get(r, s, "/v1/subjects/"+n+"/involvements", q)
	data := map[string]any{"Title": "The team around the child", "NHS": n, "Ref": r.PathValue("ref"), "View": "team",
		"A": a, "Purpose": purpose, "Purposes": c.deps.Registry().Purposes()}
	if d, ok := a.Body["decision"].(map[string]any); ok {
		data["Decision"] = d
	}
	if a.OK() {
		data["EarlyHelp"], _ = a.Body["early_help"].(map[string]any)
		data["Involvements"] = list(a.Body["involvements"])
		data["Shielded"] = a.Body["shielded_services"]
		names := map[string]string{}
		for _, p := range c.deps.Registry().Partners() {
			names[p.ID] = p.Name
		}
		data["Names"] = names
	}
	c.render(w, r, statusOf(a), "team", s, data)
}
