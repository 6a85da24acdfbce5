// Package boltfile opens the gateway's small bbolt stores (the outbox, the
// involvement index, the witnesses' cosignatures) the one way they share:
// one Open with a timeout, every bucket created on open, and a format
// version in a meta bucket that a later build refuses to read past.
//
// Promises: Open returns a database whose buckets all exist and whose
// recorded format version is version (written on first open); a file
// locked by another process is ErrLocked (wrapped), never a hang past the
// timeout; on any error the file is closed.
package boltfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrLocked: another process holds the file's lock beyond the timeout.
var ErrLocked = errors.New("locked by another process")

// ErrOpen wraps any other failure to open the file itself (as opposed to
// preparing its buckets or checking its version).
var ErrOpen = errors.New("open")

// ErrVersion: the file records another format version than the caller's.
var ErrVersion = errors.New("unsupported format version")

// Open opens (creating if need be) the bbolt file at path, creates meta and
// buckets, and checks or records the format version under versionKey in
// meta as a big-endian uint64.
func Open(path string, timeout time.Duration, meta, versionKey []byte, version uint64, buckets ...[]byte) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %w", ErrLocked, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range append([][]byte{meta}, buckets...) {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(meta)
		if v := m.Get(versionKey); v != nil {
			if len(v) != 8 || binary.BigEndian.Uint64(v) != version {
				return fmt.Errorf("%w: format version %x is not %d", ErrVersion, v, version)
			}
			return nil
		}
		return m.Put(versionKey, binary.BigEndian.AppendUint64(nil, version))
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Snapshot writes a consistent copy of db, from one read transaction, while
// writers go on: start is called inside the transaction with the size of
// the copy and returns the writer to copy to (a backup; bbolt's
// Tx.WriteTo). It returns the bytes written.
func Snapshot(db *bolt.DB, start func(size int64) (io.Writer, error)) (int64, error) {
	var n int64
	err := db.View(func(tx *bolt.Tx) error {
		w, err := start(tx.Size())
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
