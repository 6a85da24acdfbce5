package hostile

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// injectionJob is one random bad request carrying the NHS number n
// (formatted as f) in one place: a path segment, the query, a header, a
// claim of a validly signed token, or a body field. Whatever the answer,
// the number must not reach the log in clear (checked on the file).
func injectionJob(r *rand.Rand, c *Client, keys Keys, tr trust, routes []route, n, f string) job {
	partners := tr.partnerIDs()
	p := pick(r, partners)
	roles := tr.heldRoles(p)
	role := "ig_lead"
	if len(roles) > 0 {
		role = pick(r, roles)
	}
	sub := randSub(r)
	claims := Standard(p, sub, role)
	method, path := "POST", "/v1/decisions"
	var body []byte
	hdr := map[string]string{}
	good := map[string]any{"subject": RandomNHS(r), "provider": pick(r, partners), "purpose": "safeguarding", "categories": []string{"household"}}
	where := ""
	switch shape := r.IntN(6); shape {
	case 0: // a path segment
		rt := pick(r, routes)
		method = pick(r, append(rt.methods, "GET"))
		segs := strings.Split(strings.TrimPrefix(rt.concrete(), "/"), "/")
		i := 1 + r.IntN(len(segs)-1)
		switch r.IntN(3) {
		case 0:
			segs[i] = f
		case 1:
			segs[i] = f + "x"
		default:
			segs = append(segs[:i+1], append([]string{f}, segs[i+1:]...)...)
		}
		for k := range segs {
			segs[k] = url.PathEscape(segs[k])
		}
		path = "/" + strings.Join(segs, "/")
		if method != "GET" {
			body = []byte("{}")
		}
		where = "path"
	case 1: // the query
		rt := pick(r, routes)
		method = "GET"
		q := url.Values{}
		switch r.IntN(4) {
		case 0:
			q.Set("subject", f)
		case 1:
			q.Set(f, "1")
		case 2:
			q.Set("since", f)
			q.Set("limit", n)
		default:
			q.Set(pick(r, []string{"practitioner", "provider", "purpose", "status", "seq", "from", "cursor", "kind"}), f)
		}
		path = rt.concrete() + "?" + q.Encode()
		where = "query"
	case 2: // a header
		body = mustJSON(good)
		hdr[pick(r, []string{"X-Request-Id", "User-Agent", "Referer", "X-Forwarded-For", "X-Nhs-Number", "Accept", "X-Practitioner"})] = f
		where = "header"
	case 3: // a claim of a validly signed token
		switch r.IntN(6) {
		case 0:
			claims["sub"] = f
		case 1:
			claims["role"] = f
		case 2:
			claims["jti"] = f
		case 3:
			claims["aud"] = f
		case 4:
			claims["nhs_number"] = f
		default:
			claims["sub"] = []string{f}
		}
		body = mustJSON(good)
		where = "claim"
	default: // a body field
		where = "body"
		switch r.IntN(12) {
		case 0:
			good["provider"] = f
		case 1:
			good["purpose"] = f
		case 2:
			good["categories"] = []string{"household", f}
		case 3:
			good[f] = true
		case 4:
			good["subject"] = f + "1"
		case 5:
			good["override_ground"] = "risk_of_significant_harm"
			good["justification"] = "child " + f + " at risk"
		case 6:
			good["override_ground"] = f
		case 7:
			method, path = "PUT", "/v1/subjects/"+RandomNHS(r)+"/lead-professional"
			good = map[string]any{"partner": f, "practitioner": f}
		case 8:
			method, path = "POST", "/v1/consents"
			good = map[string]any{"subject": RandomNHS(r), "outcome": "given", "given_by": f, "purposes": []string{"safeguarding"},
				"recipients": map[string]any{"types": []string{"local_authority"}}, "obtained": "verbal", "evidence_ref": f}
		case 9:
			method, path = "POST", "/v1/involvements"
			good = map[string]any{"subject": RandomNHS(r), "practitioner": f, "phone": f, "service": f, "kind": "universal"}
		case 10:
			method, path = "POST", "/v1/reviews/rev-"+n
			good = map[string]any{"outcome": f, "note": f}
		default:
			method, path = "POST", "/v1/early-help"
			good = map[string]any{"subject": f + "0", "role": f}
		}
		body = mustJSON(good)
		if r.IntN(8) == 0 { // and now and then not JSON at all
			body = []byte(fmt.Sprintf(`{"subject": %s, "note": "%s"`, n, f))
		}
	}
	return job{"nhs_injection", func() (Answer, string) {
		claims["iat"] = time.Now().Unix()
		claims["exp"] = time.Now().Add(time.Minute).Unix()
		tk, err := keys.Sign(p, claims)
		if err != nil {
			return Answer{Err: err}, ""
		}
		a := c.Do(method, path, tk, body, hdr)
		_ = where
		return a, ""
	}}
}

// smugglingJob sends a request with both Content-Length and
// Transfer-Encoding (variant v), a second request hidden behind it: the
// first must be refused with 400 and the connection closed; the second
// must never be answered.
func smugglingJob(c *Client, keys Keys, v int) job {
	return job{"smuggling", func() (Answer, string) {
		hidden := "GET /v1/audit/entries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keys.Token("exley-jcp", "wc-0001", "auditor") + "\r\n\r\n"
		body := `{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["household"]}`
		chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
		te := []string{"chunked", "chunked", "Chunked", " chunked", "identity, chunked", "chunked"}[v]
		cl := len(chunked)
		rest := chunked
		switch v {
		case 1: // CL covers the chunked body and the hidden request: TE wins, the rest would be a second request
			cl = len(chunked) + len(hidden)
			rest = chunked + hidden
		case 5: // CL short: a CL-reading proxy would forward the hidden request as the next one
			cl = 5
			rest = chunked + hidden
		}
		raw := fmt.Sprintf("POST /v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nTransfer-Encoding: %s\r\n\r\n%s",
			keys.Token("exley-csc", "sw-0042", "social_worker"), cl, te, rest)
		a, second := c.Raw(raw, "/v1/decisions")
		switch {
		case a.Err != nil:
			return a, ""
		case second != nil:
			return a, fmt.Sprintf("variant %d: a second answer %d on the same connection", v, second.Status)
		case a.Status != 400 && a.Status != 501:
			return a, fmt.Sprintf("variant %d: %d", v, a.Status)
		case !a.Closed:
			return a, fmt.Sprintf("variant %d: the connection stayed open", v)
		}
		return a, ""
	}}
}
