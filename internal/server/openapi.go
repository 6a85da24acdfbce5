package server

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/docs"
)

// contractRoutes serves the API's own contract, docs/openapi.yaml, as
// JSON. It is public and not audited, like /healthz: it says nothing about
// any child or any request.
func (s *Server) contractRoutes(v1 *mux.Router) {
	v1.HandleFunc("/openapi.json", s.openapi).Methods(http.MethodGet)
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	b, err := docs.OpenAPIJSON()
	if err != nil {
		s.log.Error("openapi document", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": errorBody{Code: "internal", Message: "the API document could not be read"}})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}
