package server

import (
	"bytes"
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
	return &guardConn{Conn: c}, nil
}

// maxHeldHead bounds the request head a guarded connection holds back:
// past it the bytes go on as they are (the server refuses a head over its
// MaxHeaderBytes with 431 itself).
const maxHeldHead = 64 << 10

// guardConn scans what is read for request heads: from a request line
// (ending " HTTP/1.x") to the blank line after it, it holds the head back
// and notes Content-Length and Transfer-Encoding. A head with both marks
// the connection, and its Transfer-Encoding lines are renamed (to
// X-Smuggled-Header, the same length) before the server reads them, so
// that whatever the encoding claims (chunked, "identity, chunked", …) the
// request reaches the handler, which refuses it (400, audited) and closes
// the connection, instead of the HTTP layer answering 501 on its own,
// unaudited. Holding the whole head makes this independent of how the
// bytes were split into reads.
type guardConn struct {
	net.Conn
	mu       sync.Mutex
	first    []byte // the first bytes of the current line (header names)
	last     []byte // its last bytes (the request line's " HTTP/1.1")
	inHead   bool
	cl, te   bool
	head     []byte // the head held back, from the line after the request line
	out      []byte // bytes ready for the server
	smuggled atomic.Bool
}

func (g *guardConn) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	buf := make([]byte, max(len(p), 4096))
	for len(g.out) == 0 {
		n, err := g.Conn.Read(buf)
		g.scan(buf[:n])
		if err != nil {
			// A deadline (the server's own, to interrupt its background
			// read) leaves a held head held; the end of the stream lets an
			// unfinished head go on as it is. Nothing is latched: the next
			// read asks the connection again.
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				g.out = append(g.out, g.head...)
				g.head, g.inHead = nil, false
			}
			if len(g.out) == 0 {
				return 0, err
			}
			break
		}
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	if len(g.out) == 0 {
		g.out = nil
	}
	return n, nil
}

func (g *guardConn) scan(b []byte) {
	for _, c := range b {
		if g.inHead {
			g.head = append(g.head, c)
		} else {
			g.out = append(g.out, c)
		}
		if c != '\n' {
			if len(g.first) < 32 {
				g.first = append(g.first, c)
			}
			g.last = append(g.last, c)
			if len(g.last) > 16 {
				g.last = g.last[1:]
			}
			continue
		}
		first := strings.ToLower(strings.TrimRight(string(g.first), "\r"))
		last := strings.ToLower(strings.TrimRight(string(g.last), "\r"))
		g.first, g.last = g.first[:0], g.last[:0]
		switch {
		case !g.inHead && (strings.HasSuffix(last, " http/1.1") || strings.HasSuffix(last, " http/1.0")):
			g.inHead, g.cl, g.te = true, false, false
		case g.inHead && first == "":
			g.inHead = false
			if g.cl && g.te {
				g.smuggled.Store(true)
				renameTransferEncoding(g.head)
			}
			g.out = append(g.out, g.head...)
			g.head = nil
		case g.inHead:
			g.cl = g.cl || strings.HasPrefix(first, "content-length:")
			g.te = g.te || strings.HasPrefix(first, "transfer-encoding:")
		}
		if g.inHead && len(g.head) > maxHeldHead {
			g.inHead = false
			g.out = append(g.out, g.head...)
			g.head = nil
		}
	}
}

// renameTransferEncoding renames, in place, every Transfer-Encoding
// header line of head (a request's header lines) to X-Smuggled-Header.
func renameTransferEncoding(head []byte) {
	const name, repl = "transfer-encoding:", "x-smuggled-header:"
	for i := 0; i+len(name) <= len(head); {
		if strings.EqualFold(string(head[i:i+len(name)]), name) {
			copy(head[i:], repl)
		}
		j := bytes.IndexByte(head[i:], '\n')
		if j < 0 {
			return
		}
		i += j + 1
	}
}

// smuggled reports whether r came on a guarded connection whose request
// head carried both Content-Length and Transfer-Encoding.
func smuggled(r *http.Request) bool {
	g, ok := r.Context().Value(guardKey{}).(*guardConn)
	return ok && g.smuggled.Load()
}

var errSmuggled = &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Field: "Transfer-Encoding", Reason: "not allowed together with Content-Length (the connection is closed)", Kind: audit.KindRejected}
