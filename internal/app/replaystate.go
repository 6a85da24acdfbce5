package app

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The replay cache's state, kept so that a restart does not grow with
// traffic. Seeding the cache from the audit log decodes every entry of
// the replay horizon (about 15 µs each: 3 s for 200,000 recent tokens).
// So the gateway writes the cache to data_dir/replay.state every
// replayStateEvery and at shutdown, together with the seq and chain hash
// of the audit head read *before* the cache was copied (every entry up to
// that seq was appended after its token was claimed, so its token is in
// the copy). At start it restores the file — only if that entry is still
// in the log with that hash, so a state from another log or a log rolled
// back is never trusted — and reads the audit log back only to that seq:
// at most replayStateEvery of traffic after a crash, nothing after a
// clean stop. The audit log stays the ground truth: without the file, or
// with a file that does not match, the whole horizon is read as before.

// ReplayStatePath is where the replay cache's state lives.
func ReplayStatePath(dataDir string) string { return filepath.Join(dataDir, "replay.state") }

// replayStateEvery is how often the replay state is written while serving.
var replayStateEvery = 10 * time.Second

// replayMagic names the file's format: 2 holds key digests (identity.
// MemoryReplayCache.Snapshot); a file of format 1 is ignored (the audit log
// is read instead).
const replayMagic = "trustgate-replay-2\n"

// saveReplayState writes the state atomically (temporary file, fsync,
// rename).
func (a *App) saveReplayState() error {
	seq, hash := a.audit.Head()
	var buf bytes.Buffer
	buf.WriteString(replayMagic)
	buf.Write(binary.LittleEndian.AppendUint64(nil, seq))
	buf.WriteString(hash)
	if _, err := a.replay.Snapshot(&buf); err != nil {
		return err
	}
	path := ReplayStatePath(a.cfg.DataDir)
	f, err := os.CreateTemp(a.cfg.DataDir, ".replay.state-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// loadReplayState restores the state if it matches the audit log, and
// returns the seq up to which the log need not be read (0: read it all).
func (a *App) loadReplayState(ctx context.Context) (uint64, int, error) {
	b, err := os.ReadFile(ReplayStatePath(a.cfg.DataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	const hashLen = 64
	if len(b) < len(replayMagic)+8+hashLen || string(b[:len(replayMagic)]) != replayMagic {
		a.log.Warn("replay state ignored: not a replay state file; reading the audit log instead")
		return 0, 0, nil
	}
	b = b[len(replayMagic):]
	seq, hash := binary.LittleEndian.Uint64(b), string(b[8:8+hashLen])
	if head, _ := a.audit.Head(); seq > head {
		a.log.Warn("replay state ignored: it is ahead of the audit log; reading the audit log instead", "state_seq", seq, "head", head)
		return 0, 0, nil
	}
	if seq > 0 {
		e, err := a.audit.Get(ctx, seq)
		if err != nil || e.Hash != hash {
			a.log.Warn("replay state ignored: it does not match the audit log; reading the audit log instead", "state_seq", seq)
			return 0, 0, nil
		}
	}
	n, err := a.replay.Restore(b[8+hashLen:])
	if err != nil {
		return 0, n, fmt.Errorf("replay state: %w", err) // fail closed: keys may be missing
	}
	return seq, n, nil
}

// startReplayState writes the state every replayStateEvery until the
// returned stop, which writes it a last time.
func (a *App) startReplayState(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(replayStateEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := a.saveReplayState(); err != nil {
					a.log.Warn("replay state not written", "err", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
		if err := a.saveReplayState(); err != nil {
			a.log.Warn("replay state not written at shutdown", "err", err)
		}
	}
}
