package hostile

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The gateway under attack runs as a process of its own: the trustgate
// binary built from ../../cmd/trustgate, `demo init` then `demo run`.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func trustgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hostile-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "trustgate")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			gobin = "go"
		}
		cmd := exec.Command(gobin, "build", "-o", binPath, "../../cmd/trustgate")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// demoGateway is a demo Trust prepared in dir, served by `trustgate demo
// run` with the gateway on base and the providers on ports chosen now.
type demoGateway struct {
	bin, dir, base string
	cmd            *exec.Cmd
	out            *syncBuffer
	done           chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePorts holds n listeners on 127.0.0.1:0 open together (so that the
// ports differ), then closes them and returns their addresses.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ls []net.Listener
	var addrs []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return addrs
}

var demoPort = regexp.MustCompile(`127\.0\.0\.1:(91[0-9][0-9])`)

// prepareDemo runs `trustgate demo init` with the gateway on a free port
// and moves every provider (and webhook) of the registry from its fixed
// demo port to a free one, so that the run does not need 9101–9118.
func prepareDemo(t *testing.T) *demoGateway {
	t.Helper()
	bin := trustgateBinary(t)
	dir := t.TempDir()
	ports := freePorts(t, 1+32)
	g := &demoGateway{bin: bin, dir: dir, base: "http://" + ports[0]}
	if out, err := exec.Command(bin, "demo", "init", "--dir", dir, "--listen", ports[0]).CombinedOutput(); err != nil {
		t.Fatalf("demo init: %v\n%s", err, out)
	}
	regPath := filepath.Join(dir, "protocols", "trust.yaml")
	reg, err := os.ReadFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	moved := map[string]string{}
	next := 1
	reg = demoPort.ReplaceAllFunc(reg, func(m []byte) []byte {
		old := string(m)
		if _, ok := moved[old]; !ok {
			if next >= len(ports) {
				t.Fatal("more demo ports than free ports")
			}
			moved[old] = ports[next]
			next++
		}
		return []byte(moved[old])
	})
	if len(moved) < 18 {
		t.Fatalf("only %d provider ports moved", len(moved))
	}
	if err := os.WriteFile(regPath, reg, 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}

// start runs `trustgate demo run` and waits for /readyz (and, with
// seeded, for the demo index to be seeded from the caseloads).
func (g *demoGateway) start(t *testing.T, seeded bool) {
	t.Helper()
	g.out = &syncBuffer{}
	g.cmd = exec.Command(g.bin, "demo", "run", "--dir", g.dir)
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.done = make(chan error, 1)
	go func() { g.done <- g.cmd.Wait() }()
	t.Cleanup(func() {
		if g.cmd != nil && g.cmd.ProcessState == nil {
			_ = g.cmd.Process.Kill()
			<-g.done
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-g.done:
			g.cmd = nil
			t.Fatalf("demo run exited before it was ready: %v\n%s", err, g.out.String())
		default:
		}
		resp, err := http.Get(g.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo gateway never became ready: %v\n%s", err, g.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for seeded {
		if _, err := os.Stat(filepath.Join(g.dir, "data", "index-seeded")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo index was never seeded:\n%s", g.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (g *demoGateway) stop(t *testing.T) {
	t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("demo run exited with %v:\n%s", err, tail(g.out.String(), 4000))
		}
	case <-time.After(60 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
		t.Fatalf("demo run did not stop in 60 s")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// export runs `trustgate audit export` on the stopped gateway's log.
func (g *demoGateway) export(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	cmd := exec.Command(g.bin, "audit", "export", "--db", g.auditFile(), "--format", "jsonl", "--out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("audit export: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (g *demoGateway) auditFile() string { return filepath.Join(g.dir, "data", "audit.db") }

var _ = strings.TrimSpace
