package devcert

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// A server using the generated certificate is trusted by a client that
// trusts only the generated CA, over real loopback TLS.
func TestGeneratedCertificatesServeTLS(t *testing.T) {
	f, err := Generate(t.TempDir(), nil, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(f.ServerKey)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("server key mode %v", st.Mode().Perm())
	}
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(f.CACert)
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	resp, err := c.Get("https://localhost:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	// A client without the CA refuses the server.
	c2 := &http.Client{Timeout: 5 * time.Second}
	if _, err := c2.Get("https://localhost:" + port + "/"); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
}
