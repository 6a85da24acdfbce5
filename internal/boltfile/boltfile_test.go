package boltfile

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesBucketsAndGuardsTheVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	meta, ver, data := []byte("meta"), []byte("version"), []byte("data")
	db, err := Open(path, time.Second, meta, ver, 3, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(data) == nil || tx.Bucket(meta) == nil {
			t.Error("buckets not created")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, 50*time.Millisecond, meta, ver, 3, data); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open while held: %v, want ErrLocked", err)
	}
	db.Close()
	if _, err := Open(path, time.Second, meta, ver, 4, data); err == nil || errors.Is(err, ErrLocked) || errors.Is(err, ErrOpen) {
		t.Fatalf("open as format 4 of a format-3 file: %v, want a version error", err)
	}
	db, err = Open(path, time.Second, meta, ver, 3, data)
	if err != nil {
		t.Fatalf("reopen as format 3: %v", err)
	}
	db.Close()
}
