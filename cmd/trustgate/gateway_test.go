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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var serveOut bytes.Buffer
	go func() {
		done <- run(ctx, serve(dir), &serveOut, &serveOut)
	}()
	stopped := false
	g := &cliGateway{dir: dir, base: "http://" + addr, out: &serveOut}
	g.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("serve exited %d: %s", code, serveOut.String())
			}
		}
	}
	t.Cleanup(g.stop)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(g.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never became ready: %s", serveOut.String())
		}
	}
	return g
}
