package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

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
	good, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	future := filepath.Join(t.TempDir(), "future.db")
	if err := os.WriteFile(future, good, 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(future, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint64(nil, 5))
	}); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	legacy := filepath.Join(t.TempDir(), "v3.db")
	if err := audit.WriteLegacy(t.Context(), legacy, audit.LegacyFile{Version: 3, Entries: []audit.Entry{{Kind: audit.KindAccess, RequestID: "r-1"}}}); err != nil {
		t.Fatal(err)
	}
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Every odd file is a failed check (exit 1, README "Exit codes"), for
	// verify, for export and for the gateway's start, each saying what it
	// found.
	for _, c := range []struct {
		name string
		file []byte // nil: a directory at the path
		says []string
	}{
		// Cut within the pages in use (bbolt grows files in large sparse steps).
		{"cut in half", good[:6*4096], []string{"audit log damaged: page ", "truncated"}},
		{"empty", []byte{}, []string{"audit log damaged: page 0", "the file is empty"}},
		{"shorter than a page", good[:100], []string{"audit log damaged: page 1", "shorter than its two meta pages"}},
		{"not a log", []byte("listen: 127.0.0.1:8080\n"), []string{"audit log damaged: page 0", "not a log file"}},
		{"a future format", read(future), []string{"format version 5; this build reads format 4", "newer build"}},
		{"format 3", read(legacy), []string{"format version 3; this build reads format 4", "trustgate audit migrate --db"}},
		{"a directory", nil, []string{"audit log damaged: page 0", "is a directory, not an audit log file"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.RemoveAll(db); err != nil {
				t.Fatal(err)
			}
			if c.file == nil {
				err = os.Mkdir(db, 0o700)
			} else {
				err = os.WriteFile(db, c.file, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"audit", "verify", "--db", db},
				{"audit", "export", "--db", db, "--format", "jsonl"},
				{"serve", "--config", filepath.Join(dir, "trustgate.yaml"), "--listen", "127.0.0.1:0"},
			} {
				code, out := runCLI(t, args...)
				if code != exitFailure {
					t.Errorf("%s: exit %d, want %d (a failed check)\n%s", strings.Join(args[:2], " "), code, exitFailure, out)
				}
				for _, want := range c.says {
					if !strings.Contains(out, want) {
						t.Errorf("%s: the message does not say %q:\n%s", strings.Join(args[:2], " "), want, out)
					}
				}
			}
		})
	}
}
