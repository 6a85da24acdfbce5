package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/childrens-trust/trustgate/docs"
)

// contract is the OpenAPI document a gateway serves, loaded the way an
// independent client would (GET /v1/openapi.json, kin-openapi), with a
// router for its base URL.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

// loadContract fetches and loads the gateway's served OpenAPI document.
func (g *gateway) loadContract() *contract {
	g.t.Helper()
	g.contractMu.Lock()
	defer g.contractMu.Unlock()
	if g.contract != nil && g.contract.base == g.base {
		return g.contract.c
	}
	resp, err := http.Get(g.base + "/v1/openapi.json")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("GET /v1/openapi.json: %d %s", resp.StatusCode, raw)
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		g.t.Fatalf("served OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		g.t.Fatalf("served OpenAPI document is invalid: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: g.base}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		g.t.Fatal(err)
	}
	c := &contract{doc: doc, router: router}
	g.contract = &servedContract{base: g.base, c: c}
	return c
}

type servedContract struct {
	base string
	c    *contract
}

// checkAnswer validates one real answer of the gateway against its served
// OpenAPI document: the status must be documented for the route and the
// body must match its schema. An answer to an undocumented /v1 path or
// method must have the error shape. Requests are not validated: tests
// send bad requests on purpose.
func (g *gateway) checkAnswer(req *http.Request, status int, header http.Header, body []byte) {
	g.t.Helper()
	if status == http.StatusRequestHeaderFieldsTooLarge {
		return // net/http's own answer to oversized headers, before any route (docs/api.md#errors)
	}
	c := g.loadContract()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		if !strings.HasPrefix(req.URL.Path, "/v1/") {
			return
		}
		schema := c.doc.Components.Schemas["Error"].Value
		var v any
		if jerr := json.Unmarshal(body, &v); jerr != nil {
			g.t.Errorf("contract: %s %s (no route: %v) answered %d, not JSON: %s", req.Method, req.URL.Path, err, status, body)
			return
		}
		if verr := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); verr != nil {
			g.t.Errorf("contract: %s %s (no route: %v) answered %d without the error shape: %v", req.Method, req.URL.Path, err, status, verr)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		g.t.Errorf("contract: %s %s answered %d, which docs/openapi.yaml does not allow: %v\nbody: %.600s", req.Method, req.URL.Path, status, err, body)
		return
	}
	validated.add(req.Method, route.Path, status)
}

// validated records which documented operations had a real answer of
// which status class validated against the served document, over the
// whole package's tests (contractCoverage, checked by TestMain).
var validated = &answersSeen{seen: map[string]bool{}}

type answersSeen struct {
	mu   sync.Mutex
	seen map[string]bool // "GET /v1/reviews/{id} 4xx"
}

func (a *answersSeen) add(method, path string, status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen[fmt.Sprintf("%s %s %dxx", method, path, status/100)] = true
}

// contractCoverage lists what the package's tests left unvalidated: every
// documented operation must have had a success (2xx) and an error (4xx)
// answer validated, and the fail-closed answers (5xx) of the routes that
// disclose or record must have been validated too.
func contractCoverage() []string {
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPIYAML())
	if err != nil {
		return []string{err.Error()}
	}
	validated.mu.Lock()
	defer validated.mu.Unlock()
	var missing []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			classes := []string{"2xx"}
			if op.Responses.Default() != nil || slices.ContainsFunc(slices.Collect(maps.Keys(op.Responses.Map())), func(c string) bool { return strings.HasPrefix(c, "4") }) {
				classes = append(classes, "4xx") // an operation that documents errors
			}
			for _, class := range classes {
				if k := method + " " + path + " " + class; !validated.seen[k] {
					missing = append(missing, k)
				}
			}
		}
	}
	for _, k := range failClosed {
		if !validated.seen[k] {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	return missing
}

// failClosed are the answers that must be seen failing closed (503) and
// validated: a decision, a share, a consent and an index write with the
// audit log, the keys or the policy unavailable.
var failClosed = []string{
	"POST /v1/decisions 5xx",
	"POST /v1/share-requests 5xx",
	"POST /v1/consents 5xx",
}
