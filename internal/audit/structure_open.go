package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// openChecked checks the structure of the file at path (structure.go)
// and only then lets bbolt map it. The check runs under the same flock
// bbolt takes (shared to read, exclusive to write), so that a writer in
// another process cannot change the file under it: a file locked by a
// running gateway is ErrBusy, as before, never "damaged". bbolt takes its
// own lock on its own descriptor; a shared lock is held across its open,
// an exclusive one is released just before (flock conflicts between two
// descriptors of one process), and the meta pages are compared after
// bbolt holds the lock, the check repeated if another writer committed in
// between. A path that does not exist is left to bbolt (a new log).
func openChecked(path string, readOnly bool, timeout time.Duration, open func() (*bolt.DB, error)) (*bolt.DB, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !readOnly {
		return open()
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	how := syscall.LOCK_SH
	if !readOnly {
		how = syscall.LOCK_EX
	}
	if err := flockWait(f, how, timeout); err != nil {
		return nil, err
	}
	unlock := func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
	metas, err := checkFile(f)
	if err != nil {
		unlock()
		return nil, err
	}
	if !readOnly {
		unlock()
	}
	db, err := open()
	if readOnly {
		unlock()
	}
	if err != nil || readOnly {
		return db, err
	}
	if now, _ := readMetas(f); !bytes.Equal(now, metas) {
		if _, err := checkFile(f); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return db, nil
}

// checkFile checks the structure of f and returns its meta pages' first
// bytes, to tell later whether it changed.
func checkFile(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, &StructureError{Reason: "the path is a directory, not an audit log file"}
	}
	metas, _ := readMetas(f)
	return metas, checkStructureOf(f, fi.Size())
}

// readMetas reads the first 4 KiB of the file and of its second meta page
// (whatever the page size, that is where the txid lives).
func readMetas(f *os.File) ([]byte, error) {
	b := make([]byte, 2*4096)
	n, err := f.ReadAt(b[:4096], 0)
	if m, perr := parseMeta(b[:n]); perr == nil {
		k, _ := f.ReadAt(b[4096:], int64(m.pageSize))
		return b[:4096+k], nil
	}
	return b[:n], err
}

// flockWait takes the flock, polling like bbolt, for at most timeout.
func flockWait(f *os.File, how int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock: %w", err)
		}
		if time.Now().After(deadline) {
			return berrors.ErrTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}
