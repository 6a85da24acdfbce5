package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// scanChunk is how many entries Scan and ReverseScan read per read
// transaction. The callback runs between transactions, never inside one,
// so a slow callback does not hold a transaction open (which would stall
// an append that needs to grow the file's memory map) and may itself
// append.
const scanChunk = 256

// view runs fn in a read transaction, classifying a closed database.
func (l *Log) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := l.settle(); err != nil { // apply.go
		return err
	}
	err := l.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// Get returns entry seq with Hash filled in, or an error wrapping
// ErrNotFound. A stored value that does not decode as entry seq is a
// *TamperError. Get does not check the chain; Verify does.
func (l *Log) Get(ctx context.Context, seq uint64) (*Entry, error) {
	var e *Entry
	err := l.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get(seqKey(seq))
		if v == nil {
			return ErrNotFound
		}
		var err error
		e, err = decodeEntry(seq, v) // copies out of v
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: get entry %d: %w", seq, err)
	}
	return e, nil
}

// Stored returns the stored bytes of entry seq: what its chain hash and
// Merkle leaf hash are computed over. Errors wrap ErrNotFound.
func (l *Log) Stored(ctx context.Context, seq uint64) ([]byte, error) {
	var out []byte
	err := l.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get(seqKey(seq))
		if v == nil {
			return ErrNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: stored entry %d: %w", seq, err)
	}
	return out, nil
}

// Scan calls fn for each entry from seq from (1 if from is 0) upwards, in
// seq order, until the last entry, an error from fn (returned as is), or
// the end of ctx. Entries appended during the scan may or may not be
// visited. A missing seq within the scanned range is a *TamperError.
func (l *Log) Scan(ctx context.Context, from uint64, fn func(*Entry) error) error {
	next := max(from, 1)
	for {
		chunk, err := l.readChunk(ctx, next, false)
		if err != nil {
			return fmt.Errorf("audit: scan from %d: %w", from, err)
		}
		if len(chunk) == 0 {
			return nil
		}
		for _, e := range chunk {
			if err := fn(e); err != nil {
				return err
			}
		}
		next = chunk[len(chunk)-1].Seq + 1
	}
}

// ReverseScan calls fn for each entry from the newest downwards, until fn
// returns more == false or an error (returned as is), entry 1 has been
// visited, or ctx ends. Entries appended during the scan are not visited.
// A missing seq is a *TamperError.
func (l *Log) ReverseScan(ctx context.Context, fn func(*Entry) (more bool, err error)) error {
	var before uint64 // 0: start at the newest entry
	for {
		chunk, err := l.readChunk(ctx, before, true)
		if err != nil {
			return fmt.Errorf("audit: reverse scan: %w", err)
		}
		for _, e := range chunk {
			more, err := fn(e)
			if err != nil || !more {
				return err
			}
		}
		if len(chunk) == 0 || chunk[len(chunk)-1].Seq == 1 {
			return nil
		}
		before = chunk[len(chunk)-1].Seq
	}
}

// readChunk reads up to scanChunk decoded entries in one read
// transaction. Forward, it starts at seq at. Reverse, it starts just
// below seq at, or at the last entry if at is 0. Seqs must be contiguous.
func (l *Log) readChunk(ctx context.Context, at uint64, reverse bool) ([]*Entry, error) {
	var out []*Entry
	err := l.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		var k, v []byte
		switch {
		case !reverse:
			k, v = c.Seek(seqKey(at))
		case at == 0:
			k, v = c.Last()
		default:
			if k, _ = c.Seek(seqKey(at)); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for ; k != nil && len(out) < scanChunk; k, v = advance(c, reverse) {
			seq, ok := keySeq(k)
			if !ok {
				return tampered(0, "malformed key %x", k)
			}
			var want uint64
			switch {
			case len(out) > 0 && reverse:
				want = out[len(out)-1].Seq - 1
			case len(out) > 0:
				want = out[len(out)-1].Seq + 1
			case !reverse:
				want = at
			case at > 0:
				want = at - 1
			default: // the newest entry
				want = seq
			}
			if seq != want {
				return tampered(want, "missing (the next stored entry is %d)", seq)
			}
			e, err := decodeEntry(seq, v) // copies out of v
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		if reverse && k == nil {
			lowest := at
			if len(out) > 0 {
				lowest = out[len(out)-1].Seq
			}
			if lowest > 1 {
				return tampered(lowest-1, "missing (no stored entry below %d)", lowest)
			}
		}
		return nil
	})
	return out, err
}

func advance(c *bolt.Cursor, reverse bool) (k, v []byte) {
	if reverse {
		return c.Prev()
	}
	return c.Next()
}

// Snapshot writes a consistent copy of the whole log file to w, as of
// the moment it starts, while appends continue. The copy is a bbolt file
// that Open and Verify accept. It returns the bytes written. A long
// snapshot keeps a read transaction open, which can delay an append that
// needs to grow the file's memory map.
func (l *Log) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	n, err := l.snapshot(ctx, w)
	if err != nil {
		return n, fmt.Errorf("audit: snapshot: %w", err)
	}
	return n, nil
}

func (l *Log) snapshot(ctx context.Context, w io.Writer) (n int64, err error) {
	err = l.view(ctx, func(tx *bolt.Tx) error {
		n, err = tx.WriteTo(ctxWriter{ctx: ctx, w: w})
		return err
	})
	return n, err
}

// SnapshotStream is Snapshot for a caller that must know the size
// before the first byte (an HTTP answer with a Content-Length): start is
// called inside the read transaction with the size of the copy and
// returns the writer to copy to.
func (l *Log) SnapshotStream(ctx context.Context, start func(size int64) (io.Writer, error)) (int64, error) {
	var n int64
	err := l.view(ctx, func(tx *bolt.Tx) error {
		w, err := start(tx.Size())
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(ctxWriter{ctx: ctx, w: w})
		return err
	})
	if err != nil {
		return n, fmt.Errorf("audit: snapshot: %w", err)
	}
	return n, nil
}

// ctxWriter fails writes once ctx has ended, so that a snapshot stops.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// SnapshotFile writes a snapshot to path atomically: to a temporary file
// in the same directory, fsynced, then renamed over path, and the
// directory fsynced. The file has mode 0600. path must not be the log's
// own file.
func (l *Log) SnapshotFile(ctx context.Context, path string) (err error) {
	if same, err := sameFile(l.path, path); err != nil {
		return fmt.Errorf("audit: snapshot to %s: %w", path, err)
	} else if same {
		return fmt.Errorf("audit: snapshot to %s: that is the live log file", path)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("audit: snapshot to %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("audit: snapshot to %s: %w", path, err)
	}
	if _, err := l.snapshot(ctx, f); err != nil {
		return fmt.Errorf("audit: snapshot to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit: snapshot to %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit: snapshot to %s: close: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("audit: snapshot to %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("audit: snapshot to %s: sync directory: %w", path, err)
	}
	return nil
}

// sameFile reports whether a and b name the same existing file.
func sameFile(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}
