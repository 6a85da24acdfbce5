package server

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// chunkConn is a net.Conn whose reads return data in pieces of the given
// sizes (cycling), so that a test can split a stream at every boundary.
type chunkConn struct {
	net.Conn
	data  []byte
	sizes []int
	i     int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(c.sizes[c.i%len(c.sizes)], len(p), len(c.data))
	c.i++
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// readAllGuarded reads everything a guarded connection over data (split
// into reads of the given sizes) passes on, with reads of size rd.
func readAllGuarded(data []byte, sizes []int, rd int) ([]byte, bool) {
	g := &guardConn{Conn: &chunkConn{data: bytes.Clone(data), sizes: sizes}}
	var out []byte
	buf := make([]byte, rd)
	for {
		n, err := g.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, g.smuggled.Load()
		}
	}
}

// TestGuardConnSplits: whatever the split of the stream into reads and
// the server's read size, a guarded connection passes on exactly the
// bytes it read — save the renamed Transfer-Encoding lines of a head
// that also carries Content-Length, and only then marks the connection.
func TestGuardConnSplits(t *testing.T) {
	plain := "POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" +
		"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	smuggle := "POST /v1/decisions HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 5\r\nTRANSFER-encoding: identity, chunked\r\n\r\n0\r\n\r\n"
	renamed := "POST /v1/decisions HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 5\r\nx-smuggled-header: identity, chunked\r\n\r\n0\r\n\r\n"
	cases := []struct {
		name, in, want string
		smuggled       bool
	}{
		{"two requests, one length each", plain, plain, false},
		{"both lengths", smuggle, renamed, true},
	}
	for _, c := range cases {
		for size := 1; size <= len(c.in); size++ {
			for _, rd := range []int{1, 7, 4096} {
				got, sm := readAllGuarded([]byte(c.in), []int{size, 1, 3}, rd)
				if string(got) != c.want || sm != c.smuggled {
					t.Fatalf("%s, reads of %d, server reads of %d: passed on %q (smuggled %t), want %q (smuggled %t)", c.name, size, rd, got, sm, c.want, c.smuggled)
				}
			}
		}
	}
	// A head past maxHeldHead goes on as it is, unmarked.
	long := "GET / HTTP/1.1\r\nX: " + string(bytes.Repeat([]byte("a"), maxHeldHead)) + "\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	if got, sm := readAllGuarded([]byte(long), []int{4096}, 4096); string(got) != long || sm {
		t.Fatalf("a head over the bound: changed (%t) or marked (%t)", string(got) != long, sm)
	}
}

// BenchmarkGuardConn is the guard's cost on a stream of ordinary requests.
func BenchmarkGuardConn(b *testing.B) {
	req := []byte("POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer " + string(bytes.Repeat([]byte("x"), 600)) + "\r\nContent-Type: application/json\r\nContent-Length: 120\r\n\r\n" + string(bytes.Repeat([]byte("y"), 120)))
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	c := &chunkConn{sizes: []int{4096}}
	g := &guardConn{Conn: c}
	buf := make([]byte, 4096)
	for b.Loop() {
		c.data = req
		for {
			if _, err := g.Read(buf); err != nil {
				break
			}
		}
	}
}
