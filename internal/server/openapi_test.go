package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/docs"
	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/witness"
)

// loadContract loads and validates docs/openapi.yaml with kin-openapi.
func loadContract(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPIYAML())
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// TestOpenAPIListsEveryRoute: the router and docs/openapi.yaml name the
// same /v1 routes with the same methods. A route added to the router and
// not to the document (or the other way round) fails here.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	doc := loadContract(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
	}
	routed := map[string]bool{}
	err := fullServer(t).router().Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := rt.GetPathTemplate()
		if err != nil || !strings.HasPrefix(path, "/v1/") {
			return nil
		}
		methods, err := rt.GetMethods()
		if err != nil {
			t.Errorf("route %s has no methods", path)
			return nil
		}
		for _, m := range methods {
			routed[m+" "+path] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			documented[m+" "+path] = true
		}
	}
	for _, r := range sortedKeys(routed) {
		if !documented[r] {
			t.Errorf("route %s is served but not in docs/openapi.yaml", r)
		}
	}
	for _, d := range sortedKeys(documented) {
		if !routed[d] {
			t.Errorf("docs/openapi.yaml documents %s, which no route serves", d)
		}
	}
	if len(routed) < 20 {
		t.Errorf("only %d /v1 routes found by walking the router", len(routed))
	}
}

// TestOpenAPIServed: GET /v1/openapi.json answers the document, as JSON,
// without a token.
func TestOpenAPIServed(t *testing.T) {
	rec := httptest.NewRecorder()
	New(Options{}, Deps{}).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	doc, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if doc.Paths.Find("/v1/decisions") == nil {
		t.Errorf("served document lacks /v1/decisions")
	}
}

// fullServer is a server with every optional part wired (a real audit log
// and local keys in a temporary directory), so that every route is routed.
func fullServer(t *testing.T) *Server {
	t.Helper()
	dir := t.TempDir()
	log, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	ks, err := keys.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ks.Close() })
	cp, err := audit.NewCheckpointer(context.Background(), log, ks, audit.CheckpointOptions{LogID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := witness.Open(ks, log, witness.Options{Origin: "test/audit", Path: filepath.Join(dir, "witness.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return New(Options{}, Deps{Audit: log, Keys: ks, AuditQuery: log, Checkpoints: cp, Notary: n, Backup: []BackupFile{{Name: "audit.db", Snapshot: log.SnapshotStream}}})
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
