package server

import (
	"context"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// jsonContentType refuses a body that is not declared application/json
// (parameters such as charset allowed): 415 naming the header.
func jsonContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		return nil
	}
	reason := "must be application/json"
	if ct == "" {
		reason = "is required: application/json"
	}
	return &apiError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Field: "Content-Type", Reason: reason, Kind: audit.KindRejected}
}

// allowedMethods lists the methods a route of router answers on r's path
// (sorted), empty when no route has the path.
func allowedMethods(router *mux.Router, r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		var match mux.RouteMatch
		if router.Match(probe, &match) && match.MatchErr == nil && match.Route != nil {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// methodNotAllowed is the 405 for a known path asked with another method,
// with Allow set as RFC 9110 §15.5.6 requires.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow []string) *apiError {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	return &apiError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Reason: r.Method + " is not allowed here: use " + strings.Join(allow, ", "), Kind: audit.KindRejected}
}

// GuardListener wraps a plain-HTTP listener so that a request head that
// carries both Content-Length and Transfer-Encoding (RFC 9112 §6.1: a
// sign of request smuggling, which Go's server would quietly resolve by
// dropping Content-Length while a proxy in front may not) is seen: the
// server then refuses the request (400, audited) and closes the
// connection (ConnContext must be the server's ConnContext). Under TLS
// the listener is not wrapped: the TLS terminator in front of a plain
// listener is where a disagreeing proxy would be.
func GuardListener(ln net.Listener) net.Listener { return guardListener{ln} }

// ConnContext is the http.Server ConnContext that lets handlers see a
// guarded connection's verdict.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if g, ok := c.(*guardConn); ok {
		return context.WithValue(ctx, guardKey{}, g)
	}
	return ctx
}

type guardKey struct{}

type guardListener struct{ net.Listener }

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, atLineStart: true}, nil
}

// guardConn scans what is read for header lines: from a request line
// (ending " HTTP/1.x") to the blank line after it, it notes
// Content-Length and Transfer-Encoding; both in one head marks the
// connection.
type guardConn struct {
	net.Conn
	mu          sync.Mutex
	line        []byte
	atLineStart bool
	inHead      bool
	cl, te      bool
	smuggled    atomic.Bool
}

func (g *guardConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	g.mu.Lock()
	for _, c := range p[:n] {
		if c != '\n' {
			if len(g.line) < 256 {
				g.line = append(g.line, c)
			}
			continue
		}
		line := strings.ToLower(strings.TrimRight(string(g.line), "\r"))
		g.line = g.line[:0]
		switch {
		case !g.inHead && (strings.HasSuffix(line, " http/1.1") || strings.HasSuffix(line, " http/1.0")):
			g.inHead, g.cl, g.te = true, false, false
		case g.inHead && line == "":
			g.inHead = false
			if g.cl && g.te {
				g.smuggled.Store(true)
			}
		case g.inHead:
			g.cl = g.cl || strings.HasPrefix(line, "content-length:")
			g.te = g.te || strings.HasPrefix(line, "transfer-encoding:")
		}
	}
	g.mu.Unlock()
	return n, err
}

// smuggled reports whether r came on a guarded connection whose request
// head carried both Content-Length and Transfer-Encoding.
func smuggled(r *http.Request) bool {
	g, ok := r.Context().Value(guardKey{}).(*guardConn)
	return ok && g.smuggled.Load()
}

var errSmuggled = &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Field: "Transfer-Encoding", Reason: "not allowed together with Content-Length (the connection is closed)", Kind: audit.KindRejected}
