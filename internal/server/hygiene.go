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
	first    [32]byte // the first bytes of the current line (header names)
	nfirst   int
	last     [16]byte // its last bytes (the request line's " HTTP/1.1")
	nlast    int
	inHead   bool
	cl, te   bool
	head     []byte // the head held back, from the line after the request line
	out      []byte // bytes ready for the server: out[off:]
	off      int
	rbuf     []byte // the connection's read buffer, reused
	smuggled atomic.Bool
}

// keepHeld is the largest head buffer a connection keeps between requests
// (a longer one, up to maxHeldHead, is let go once passed on).
const keepHeld = 8 << 10

func (g *guardConn) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.rbuf) < len(p) {
		g.rbuf = make([]byte, max(len(p), 4096))
	}
	for g.off == len(g.out) {
		n, err := g.Conn.Read(g.rbuf)
		g.scan(g.rbuf[:n])
		if err != nil {
			// A deadline (the server's own, to interrupt its background
			// read) leaves a held head held; the end of the stream lets an
			// unfinished head go on as it is. Nothing is latched: the next
			// read asks the connection again.
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				g.release()
			}
			if g.off == len(g.out) {
				return 0, err
			}
			break
		}
	}
	n := copy(p, g.out[g.off:])
	g.off += n
	if g.off == len(g.out) {
		g.out, g.off = g.out[:0], 0
	}
	return n, nil
}

// release passes the held head on to the server.
func (g *guardConn) release() {
	g.out = append(g.out, g.head...)
	g.head, g.inHead = g.head[:0], false
	if cap(g.head) > keepHeld {
		g.head = nil
	}
}

// scan takes b line by line: a line (up to its '\n') goes to the held
// head or to the server, and its first and last bytes are noted; at the
// end of a line the state changes as the line says.
func (g *guardConn) scan(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i+1]
		}
		b = b[len(seg):]
		if g.inHead {
			g.head = append(g.head, seg...)
		} else {
			g.out = append(g.out, seg...)
		}
		line := seg
		if i >= 0 {
			line = seg[:i]
		}
		g.note(line)
		if i < 0 {
			return
		}
		first := bytes.TrimRight(g.first[:g.nfirst], "\r")
		last := bytes.TrimRight(g.last[:g.nlast], "\r")
		g.nfirst, g.nlast = 0, 0
		switch {
		case !g.inHead && (hasSuffixFold(last, " http/1.1") || hasSuffixFold(last, " http/1.0")):
			g.inHead, g.cl, g.te = true, false, false
		case g.inHead && len(first) == 0:
			if g.cl && g.te {
				g.smuggled.Store(true)
				renameTransferEncoding(g.head)
			}
			g.release()
		case g.inHead:
			g.cl = g.cl || hasPrefixFold(first, "content-length:")
			g.te = g.te || hasPrefixFold(first, "transfer-encoding:")
		}
		if g.inHead && len(g.head) > maxHeldHead {
			g.release()
		}
	}
}

// note adds part of a line to its first 32 and last 16 bytes.
func (g *guardConn) note(part []byte) {
	g.nfirst += copy(g.first[g.nfirst:], part)
	if len(part) >= len(g.last) {
		g.nlast = copy(g.last[:], part[len(part)-len(g.last):])
		return
	}
	if keep := len(g.last) - len(part); g.nlast > keep {
		copy(g.last[:], g.last[g.nlast-keep:g.nlast])
		g.nlast = keep
	}
	g.nlast += copy(g.last[g.nlast:], part)
}

// hasPrefixFold and hasSuffixFold compare in ASCII case only, as HTTP
// names and versions are compared (lower is lower case).
func hasPrefixFold(b []byte, lower string) bool {
	return len(b) >= len(lower) && asciiEqualFold(b[:len(lower)], lower)
}

func hasSuffixFold(b []byte, lower string) bool {
	return len(b) >= len(lower) && asciiEqualFold(b[len(b)-len(lower):], lower)
}

func asciiEqualFold(b []byte, lower string) bool {
	for i := range len(lower) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
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
