package console

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/nhs"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// overview handles GET /console/: decisions by day, partner and purpose,
// the review queue's counts, protocols nearing their review date, the
// serving revision and the last reload.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	from := c.opts.Now().UTC().AddDate(0, 0, -30).Format(time.RFC3339)
	calls := map[string]func() answer{
		"day":      func() answer { return c.get(r, s, "/v1/audit/stats", url.Values{"by": {"day"}, "from": {from}}) },
		"partner":  func() answer { return c.get(r, s, "/v1/audit/stats", url.Values{"by": {"partner"}, "from": {from}}) },
		"purpose":  func() answer { return c.get(r, s, "/v1/audit/stats", url.Values{"by": {"purpose"}, "from": {from}}) },
		"reviews":  func() answer { return c.get(r, s, "/v1/reviews/summary", nil) },
		"policies": func() answer { return c.get(r, s, "/v1/policies", nil) },
		"status":   func() answer { return c.get(r, s, "/v1/admin/status", nil) },
	}
	// The calls are independent: made together, their audit entries
	// share a group commit.
	res := map[string]answer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for k, f := range calls {
		wg.Go(func() {
			a := f()
			mu.Lock()
			res[k] = a
			mu.Unlock()
		})
	}
	wg.Wait()
	data := map[string]any{"Title": "Overview", "Res": res}
	if a := res["day"]; a.OK() {
		st, _ := a.Body["stats"].(map[string]any)
		data["Total"] = st["total"]
		data["ByDay"] = newChart("by-day", "Decisions by day, last 30 days", list(st["rows"]), 30)
	}
	if a := res["partner"]; a.OK() {
		st, _ := a.Body["stats"].(map[string]any)
		data["ByPartner"] = newChart("by-partner", "Decisions by requesting partner, last 30 days", list(st["rows"]), 20)
	}
	if a := res["purpose"]; a.OK() {
		st, _ := a.Body["stats"].(map[string]any)
		data["ByPurpose"] = newChart("by-purpose", "Decisions by purpose, last 30 days", list(st["rows"]), 20)
	}
	c.render(w, r, http.StatusOK, "overview", s, data)
}

var reviewStatuses = []string{"open", "overdue", "closed"}

// reviews handles GET /console/reviews?status=&limit=: the IG review queue.
func (c *Console) reviews(w http.ResponseWriter, r *http.Request, s *session) {
	status := r.URL.Query().Get("status")
	if status == "" {
		status = "open"
	}
	limit := pageLimit(r, 50, 500)
	a := c.get(r, s, "/v1/reviews", url.Values{"status": {status}, "limit": {strconv.Itoa(limit)}})
	c.render(w, r, statusOf(a), "reviews", s, map[string]any{
		"Title": "Overrides awaiting review", "A": a, "Status": status, "Statuses": reviewStatuses,
		"Limit": limit, "More": limit + 50, "Closed": r.URL.Query().Get("closed"),
	})
}

// review handles GET /console/reviews/{id}: one override.
func (c *Console) review(w http.ResponseWriter, r *http.Request, s *session) {
	c.drawReview(w, r, s, http.StatusOK, "")
}

func (c *Console) drawReview(w http.ResponseWriter, r *http.Request, s *session, status int, problem string) {
	id := r.PathValue("id")
	a := c.get(r, s, "/v1/reviews/"+url.PathEscape(id), nil)
	data := map[string]any{"Title": "Override review", "A": a, "Problem": problem}
	if rv, ok := a.Body["review"].(map[string]any); ok {
		req, _ := rv["requester"].(map[string]any)
		// Four eyes: the person who made the override does not see a
		// form to close it (the API refuses it in any case).
		data["Own"] = str(req["partner"]) == s.Partner && str(req["practitioner"]) == s.Practitioner
		data["Fields"] = c.disclosedFields(r, s, rv)
	}
	if status == http.StatusOK {
		status = statusOf(a)
	}
	c.render(w, r, status, "review", s, data)
}

// fieldsRow is one category disclosed on an override and the fields its
// protocol rule lets through (none listed: the whole category).
type fieldsRow struct {
	Category string
	Fields   []string
}

// disclosedFields reads, from the protocols the gateway serves (GET
// /v1/protocols), the fields the override's rule lets through for each
// category disclosed; nil when the rule is not served in that version.
func (c *Console) disclosedFields(r *http.Request, s *session, rv map[string]any) []fieldsRow {
	pr, _ := rv["protocol"].(map[string]any)
	if str(pr["id"]) == "" {
		return nil
	}
	a := c.get(r, s, "/v1/protocols", nil)
	for _, p := range list(a.Body["protocols"]) {
		pm, _ := p.(map[string]any)
		if str(pm["id"]) != str(pr["id"]) || str(pm["version"]) != str(pr["version"]) {
			continue
		}
		for _, rule := range list(pm["rules"]) {
			rm, _ := rule.(map[string]any)
			if str(rm["id"]) != str(pr["rule"]) {
				continue
			}
			fields, _ := rm["fields"].(map[string]any)
			var out []fieldsRow
			for _, cat := range list(rv["categories"]) {
				out = append(out, fieldsRow{Category: str(cat), Fields: strList(list(fields[str(cat)]))})
			}
			return out
		}
	}
	return nil
}

// closeReview handles POST /console/reviews/{id}: record the outcome.
func (c *Console) closeReview(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	outcome, note := r.PostFormValue("outcome"), strings.TrimSpace(r.PostFormValue("note"))
	if outcome == "" {
		c.drawReview(w, r, s, http.StatusBadRequest, "Choose an outcome: upheld or not upheld.")
		return
	}
	a := c.call(r.Context(), s, http.MethodPost, "/v1/reviews/"+url.PathEscape(id), nil, map[string]string{"outcome": outcome, "note": note})
	if !a.OK() {
		c.drawReview(w, r, s, a.Status, a.Message)
		return
	}
	http.Redirect(w, r, Prefix+"reviews?closed="+url.QueryEscape(id), http.StatusSeeOther)
}

// protocolRow is a protocol as the protocols page lists it.
type protocolRow struct {
	P          map[string]any
	Signatures []signatureRow
}

type signatureRow struct {
	Partner, KeyID, State string
	OK                    bool
}

// protocols handles GET /console/protocols.
func (c *Console) protocols(w http.ResponseWriter, r *http.Request, s *session) {
	c.drawProtocols(w, r, s, nil)
}

func (c *Console) drawProtocols(w http.ResponseWriter, r *http.Request, s *session, draft map[string]any) {
	a := c.get(r, s, "/v1/protocols", nil)
	var rows []protocolRow
	for _, p := range list(a.Body["protocols"]) {
		pm, _ := p.(map[string]any)
		row := protocolRow{P: pm}
		for _, sg := range list(pm["signatories"]) {
			sr := signatureRow{Partner: str(sg), State: "no signature on file"}
			for _, x := range list(pm["signatures"]) {
				xm, _ := x.(map[string]any)
				if str(xm["partner"]) != sr.Partner {
					continue
				}
				sr.KeyID = str(xm["kid"])
				if xm["ok"] == true {
					sr.OK, sr.State = true, "verified"
				} else {
					sr.State = "does not verify: " + str(xm["reason"])
				}
			}
			row.Signatures = append(row.Signatures, sr)
		}
		rows = append(rows, row)
	}
	status := statusOf(a)
	data := map[string]any{"Title": "Protocols", "A": a, "Rows": rows, "Draft": draft}
	if draft != nil {
		if st, ok := draft["Status"].(int); ok {
			status = st
		}
	}
	c.render(w, r, status, "protocols", s, data)
}

// lintProblem is one lint finding of a draft, located.
type lintProblem struct {
	Severity, Field, Message string
	Line                     int
}

// draft handles POST /console/protocols/draft: a draft protocol uploaded
// is linted against the serving registry (a pure check, nothing read
// from the log) and its what-if against the decisions of the period is
// run through POST /v1/admin/whatif (audited; role ig_lead).
func (c *Console) draft(w http.ResponseWriter, r *http.Request, s *session) {
	d := map[string]any{"Status": http.StatusOK}
	f, hdr, err := r.FormFile("file")
	if err != nil {
		d["Status"], d["Error"] = http.StatusBadRequest, "Choose a protocol file (.yaml) to upload."
		c.drawProtocols(w, r, s, d)
		return
	}
	doc, err := io.ReadAll(io.LimitReader(f, maxForm))
	f.Close()
	name := path.Base(strings.ReplaceAll(hdr.Filename, "\\", "/"))
	if v := strings.TrimSpace(r.PostFormValue("name")); v != "" {
		name = v
	}
	d["Name"] = name
	if err != nil || len(doc) == 0 {
		d["Status"], d["Error"] = http.StatusBadRequest, "The file is empty or could not be read."
		c.drawProtocols(w, r, s, d)
		return
	}
	since := cmpOr(strings.TrimSpace(r.PostFormValue("since")), "30d")
	d["Since"] = since
	p, perr := protocol.Parse(doc)
	var problems []lintProblem
	if perr != nil {
		problems = append(problems, lintProblem{Severity: "error", Field: "(document)", Message: perr.Error()})
	} else {
		d["Protocol"] = p
		for _, pr := range protocol.Lint(p, c.deps.Registry(), c.opts.Now()) {
			problems = append(problems, lintProblem{Severity: string(pr.Severity), Field: pr.Field, Message: pr.Message, Line: protocol.Locate(doc, pr.Field)})
		}
	}
	d["Problems"] = problems
	errs := 0
	for _, pr := range problems {
		if pr.Severity == "error" {
			errs++
		}
	}
	d["Errors"] = errs
	if perr == nil {
		body := map[string]any{"since": since, "protocols": map[string]*string{name: ptr(string(doc))}, "examples": 5}
		a := c.call(r.Context(), s, http.MethodPost, "/v1/admin/whatif", nil, body)
		d["WhatIf"] = a
		if !a.OK() {
			d["Status"] = a.Status
		}
	}
	c.drawProtocols(w, r, s, d)
}

func ptr[T any](v T) *T { return &v }

// auditFilters are the search fields passed to /v1/audit/entries. The
// child is not among them: it is named in an address by the session's
// reference (child=, child.go), never by its NHS number.
var auditFilters = []string{"from", "to", "requester", "provider", "practitioner", "purpose", "kind", "protocol"}

// auditQuery reads the search from the page's address: the API's query,
// and the form's fields (the child's NHS number shown in the form, its
// reference in links). ok is false when the address names a child by a
// reference this session did not make, or by an NHS number.
func (c *Console) auditQuery(r *http.Request, s *session) (q url.Values, form map[string]string, problem string) {
	q = url.Values{}
	form = map[string]string{}
	in := r.URL.Query()
	for _, k := range auditFilters {
		v := strings.TrimSpace(in.Get(k))
		form[k] = v
		if v == "" {
			continue
		}
		if k == "from" || k == "to" {
			if t, err := time.Parse("2006-01-02", v); err == nil {
				if k == "to" {
					t = t.AddDate(0, 0, 1)
				}
				v = t.Format(time.RFC3339)
			}
		}
		q.Set(k, v)
	}
	if in.Has("subject") {
		return q, form, "A child is not searched for by an NHS number in the page address: enter it in the form."
	}
	if ref := in.Get("child"); ref != "" {
		n, ok := s.refs.nhs(ref)
		if !ok {
			return q, form, "This search's reference to a child has ended with the session that made it. Enter the NHS number again."
		}
		form["child"], form["subject"] = ref, n
		q.Set("subject", n)
	}
	return q, form, ""
}

// auditAsk handles POST /console/audit: the search form, sent in a body
// (it may carry a child's NHS number), becomes the search page's address
// with the child named by a reference in the session.
func (c *Console) auditAsk(w http.ResponseWriter, r *http.Request, s *session) {
	q := url.Values{}
	for _, k := range auditFilters {
		if v := strings.TrimSpace(r.PostFormValue(k)); v != "" {
			q.Set(k, v)
		}
	}
	if raw := strings.TrimSpace(r.PostFormValue("subject")); raw != "" {
		n, err := nhs.Normalize(raw)
		if err != nil {
			_, form, _ := c.auditQuery(r, s)
			for _, k := range auditFilters {
				form[k] = q.Get(k)
			}
			c.drawAudit(w, r, s, http.StatusBadRequest, form, answer{Status: http.StatusBadRequest,
				Code: "invalid_request", Message: "Child: that is not a valid NHS number: " + err.Error() + "."}, "")
			return
		}
		q.Set("child", s.refs.ref(n))
	}
	target := Prefix + "audit"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// auditSearch handles GET /console/audit: search the log, a page at a
// time (newest first; "older" follows the API's cursor).
func (c *Console) auditSearch(w http.ResponseWriter, r *http.Request, s *session) {
	q, form, problem := c.auditQuery(r, s)
	if problem != "" {
		c.drawAudit(w, r, s, http.StatusBadRequest, form, answer{Status: http.StatusBadRequest, Code: "invalid_request", Message: problem}, "")
		return
	}
	q.Set("limit", strconv.Itoa(pageLimit(r, 50, 500)))
	if v := r.URL.Query().Get("cursor"); v != "" {
		q.Set("cursor", v)
	}
	a := c.get(r, s, "/v1/audit/entries", q)
	older := ""
	if nc := str(a.Body["next_cursor"]); nc != "" {
		oq := r.URL.Query()
		oq.Set("cursor", nc)
		older = Prefix + "audit?" + oq.Encode()
	}
	c.drawAudit(w, r, s, statusOf(a), form, a, older)
}

func (c *Console) drawAudit(w http.ResponseWriter, r *http.Request, s *session, status int, form map[string]string, a answer, older string) {
	exp := url.Values{}
	for _, k := range append(auditFilters, "child") {
		if v := form[k]; v != "" {
			exp.Set(k, v)
		}
	}
	reg := c.deps.Registry()
	c.render(w, r, status, "audit", s, map[string]any{
		"Title": "Audit log", "A": a, "Form": form, "Older": template.URL(older),
		"ExportCSV":   template.URL(Prefix + "audit/export?" + withFormat(exp, "csv")),
		"ExportJSONL": template.URL(Prefix + "audit/export?" + withFormat(exp, "jsonl")),
		"Partners":    reg.Partners(), "Purposes": reg.Purposes(), "Kinds": auditKinds,
	})
}

// auditKinds are the outcomes and kinds the API's search accepts.
var auditKinds = audit.FilterKinds

// maxExport bounds one export (each page of it is an audited API call).
const maxExport = 20_000

// auditExport handles GET /console/audit/export?...&format=csv|jsonl:
// the entries matching the search, streamed page by page.
func (c *Console) auditExport(w http.ResponseWriter, r *http.Request, s *session) {
	q, _, problem := c.auditQuery(r, s)
	if problem != "" {
		c.render(w, r, http.StatusBadRequest, "error", s, map[string]any{"Title": "Export", "Message": problem})
		return
	}
	format := r.URL.Query().Get("format")
	if format != "csv" && format != "jsonl" {
		c.render(w, r, http.StatusBadRequest, "error", s, map[string]any{"Title": "Export", "Message": "Choose CSV or JSON Lines."})
		return
	}
	q.Set("limit", "1000")
	first := c.get(r, s, "/v1/audit/entries", q)
	if !first.OK() {
		c.render(w, r, statusOf(first), "error", s, map[string]any{"Title": "Export", "Message": first.Message})
		return
	}
	ext := map[string]string{"csv": "csv", "jsonl": "jsonl"}[format]
	w.Header().Set("Content-Disposition", `attachment; filename="audit-export.`+ext+`"`)
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/jsonl")
	}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	cw := csv.NewWriter(bw)
	cols := []string{"seq", "time", "kind", "requester", "practitioner", "role", "provider", "purpose", "subject", "categories", "decision", "allowed_categories", "protocol", "protocol_version", "rule", "override", "review_id", "status", "hash"}
	if format == "csv" {
		_ = cw.Write(cols)
	}
	n := 0
	for a := first; ; {
		for _, e := range list(a.Body["entries"]) {
			em, _ := e.(map[string]any)
			if format == "jsonl" {
				b, _ := json.Marshal(em)
				bw.Write(b)
				bw.WriteByte('\n')
			} else {
				row := make([]string, len(cols))
				for i, k := range cols {
					if l := list(em[k]); l != nil {
						row[i] = strings.Join(strList(l), " ")
					} else {
						row[i] = str(em[k])
					}
				}
				_ = cw.Write(row)
			}
			n++
		}
		nc := str(a.Body["next_cursor"])
		if nc == "" || n >= maxExport {
			break
		}
		q.Set("cursor", nc)
		if a = c.get(r, s, "/v1/audit/entries", q); !a.OK() {
			fmt.Fprintf(bw, "\n# export stopped: %s\n", a.Message)
			break
		}
	}
	cw.Flush()
}

func withFormat(q url.Values, f string) string {
	c := url.Values{}
	for k, v := range q {
		c[k] = v
	}
	c.Set("format", f)
	return c.Encode()
}

func strList(l []any) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = str(v)
	}
	return out
}

// auditEntry handles GET /console/audit/entries/{seq}: one entry and its
// inclusion proof against a signed checkpoint, which the page checks in
// the browser (assets/verify.js).
func (c *Console) auditEntry(w http.ResponseWriter, r *http.Request, s *session) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		c.render(w, r, http.StatusBadRequest, "error", s, map[string]any{"Title": "Audit entry", "Message": "An entry is named by its sequence number, a whole number from 1."})
		return
	}
	a := c.get(r, s, "/v1/audit/entries", url.Values{"cursor": {strconv.FormatUint(seq+1, 10)}, "limit": {"1"}})
	data := map[string]any{"Title": fmt.Sprintf("Audit entry %d", seq), "A": a, "Seq": seq}
	if a.OK() {
		es := list(a.Body["entries"])
		if len(es) == 1 && num(es[0].(map[string]any)["seq"]) == int(seq) {
			data["Entry"] = es[0]
			p := c.get(r, s, "/v1/audit/proofs/inclusion", url.Values{"seq": {strconv.FormatUint(seq, 10)}})
			data["P"] = p
			if p.OK() {
				data["Proof"] = map[string]any{"proof": p.Body["proof"], "checkpoint": get(p.Body["checkpoint"], "jws")}
			}
		} else {
			a.Status, a.Message = http.StatusNotFound, fmt.Sprintf("There is no entry %d in the log.", seq)
			data["A"] = a
		}
	}
	c.render(w, r, statusOf(data["A"].(answer)), "entry", s, data)
}

func get(m any, k string) any {
	mm, _ := m.(map[string]any)
	return mm[k]
}

// pageLimit reads ?limit= within [1, max], default def.
func pageLimit(r *http.Request, def, max int) int {
	n, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || n < 1 {
		return def
	}
	return min(n, max)
}

// statusOf is the page's status for an API answer: the page is drawn in
// any case (with the API's message), but its status says how it went.
func statusOf(a answer) int {
	if a.Status == 0 {
		return http.StatusOK
	}
	return a.Status
}
