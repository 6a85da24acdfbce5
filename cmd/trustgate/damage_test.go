package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// A damaged log — here cut in half, the way a full disk or a careless
// copy leaves it — is reported by `audit verify` with exit 1, and the
// gateway refuses to start on it with the same message and exit code,
// instead of dying in bbolt's memory map (docs/operations.md §
// "A damaged audit log").
func TestDamagedLogExitsOne(t *testing.T) {
	dir := t.TempDir()
	if code, out := runCLI(t, "demo", "init", "--dir", dir, "--listen", "127.0.0.1:0"); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	db := filepath.Join(dir, "data", "audit.db")
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(db, audit.Options{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				e := audit.Entry{Kind: audit.KindAccess, Method: "GET", Path: "/v1/protocols", Status: 200, Requester: "exley-csc", RequestID: fmt.Sprintf("r-%d-%d", w, i)}
				if _, _, err := l.Append(t.Context(), &e); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	// Cut within the pages in use (bbolt grows files in large sparse steps).
	if err := os.WriteFile(db, b[:6*4096], 0o600); err != nil {
		t.Fatal(err)
	}
	code, verifyOut := runCLI(t, "audit", "verify", "--db", db)
	if code != exitFailure || !strings.Contains(verifyOut, "audit log damaged: page ") || !strings.Contains(verifyOut, "truncated") {
		t.Fatalf("verify: exit %d, %s; want exit 1 naming the page and the truncation", code, verifyOut)
	}
	code, serveOut := runCLI(t, "serve", "--config", filepath.Join(dir, "trustgate.yaml"), "--listen", "127.0.0.1:0")
	msg := verifyOut[strings.Index(verifyOut, "audit log damaged"):]
	if code != exitFailure || !strings.Contains(serveOut, strings.TrimSpace(msg)) {
		t.Fatalf("serve: exit %d, %s; want exit 1 with verify's message %q", code, serveOut, msg)
	}
}
