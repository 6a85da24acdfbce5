package console

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/server"
)

// answer is the gateway's answer to one /v1 call.
type answer struct {
	Status int
	Body   map[string]any
	// Code and Message are the API's error, for a 4xx or 5xx.
	Code, Message string
}

// OK reports a 2xx answer.
func (a answer) OK() bool { return a.Status >= 200 && a.Status < 300 }

// Refused reports that the person's role may not make this call.
func (a answer) Refused() bool {
	return a.Status == http.StatusForbidden || a.Status == http.StatusUnauthorized
}

// call makes one /v1 request as the session's person: the gateway's own
// handler serves it in-process, with the person's principal instead of a
// bearer token (server.WithPrincipal), so the same authorisation applies
// and the same audit entry is written (its token id names the session).
func (c *Console) call(ctx context.Context, s *session, method, path string, query url.Values, body any) answer {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{Status: http.StatusInternalServerError, Message: err.Error()}
		}
		rd = bytes.NewReader(b)
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	who := identity.Claims{Partner: s.Partner, Practitioner: s.Practitioner, Role: s.Role, JTI: "console:" + s.publicID}
	req := httptest.NewRequestWithContext(server.WithPrincipal(ctx, who), method, target, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	c.deps.API.ServeHTTP(rec, req)
	a := answer{Status: rec.Code}
	dec := json.NewDecoder(rec.Body)
	dec.UseNumber()
	if err := dec.Decode(&a.Body); err != nil {
		a.Body = map[string]any{}
	}
	if !a.OK() {
		if e, ok := a.Body["error"].(map[string]any); ok {
			a.Code, _ = e["code"].(string)
			a.Message, _ = e["message"].(string)
		}
		if a.Message == "" {
			a.Message = http.StatusText(a.Status)
		}
	}
	return a
}

// get is call with GET.
func (c *Console) get(r *http.Request, s *session, path string, query url.Values) answer {
	return c.call(r.Context(), s, http.MethodGet, path, query, nil)
}
