package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// cliGateway is a demo Trust prepared with `demo init` and served with
// `trustgate serve` (or `demo run`) in this process, on a free loopback
// port.
type cliGateway struct {
	dir, base string
	stop      func() // stops the gateway (once); the test's cleanup calls it too
	out       *bytes.Buffer
}

func startCLIGateway(t *testing.T) *cliGateway {
	t.Helper()
	return startCLIDemo(t, func(dir string) []string { return []string{"serve", "--config", filepath.Join(dir, "trustgate.yaml")} })
}

// startCLIDemo prepares a demo Trust and runs the command serve gives for
// its directory until the test ends.
func startCLIDemo(t *testing.T, serve func(dir string) []string) *cliGateway {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if code, out := runCLI(t, "demo", "init", "--dir", dir, "--listen", addr); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	g := &cliGateway{dir: dir, base: "http://" + addr}
	g.stop, g.out = runGateway(t, g.base, serve(dir)...)
	return g
}

// runGateway runs a gateway command (serve, demo run) in this process until
// it answers ready at base, and returns what stops it (once; the test's
// cleanup calls it too) and its output.
func runGateway(t *testing.T, base string, args ...string) (stop func(), out *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	out = &bytes.Buffer{}
	go func() { done <- run(ctx, args, out, out) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("%v exited %d: %s", args, code, out.String())
			}
		}
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return stop, out
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v never became ready: %s", args, out.String())
		}
	}
}
