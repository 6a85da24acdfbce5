package app

import (
	"context"
	"io"
	"path/filepath"

	"github.com/childrens-trust/trustgate/internal/server"
)

// snapshotter is a store that copies its file consistently while in use.
type snapshotter interface {
	Snapshot(start func(size int64) (io.Writer, error)) (int64, error)
}

// backupFiles are the data directory's bbolt files for GET
// /v1/admin/backup (docs/operations.md A3): the state store, the outbox,
// the involvement index and the witnesses' cosignatures, then the audit log, last, so that it records
// at least what the other copies hold. The local key backend's keys are
// not among them: they are backed up apart, encrypted.
func (a *App) backupFiles() []server.BackupFile {
	file := func(name string, s snapshotter) server.BackupFile {
		return server.BackupFile{Name: name, Snapshot: func(_ context.Context, start func(int64) (io.Writer, error)) (int64, error) {
			return s.Snapshot(start)
		}}
	}
	return []server.BackupFile{
		file(filepath.Base(StatePath(a.cfg.DataDir)), a.state),
		file(filepath.Base(OutboxPath(a.cfg.DataDir)), a.share.notes),
		file(filepath.Base(IndexPath(a.cfg.DataDir)), a.index),
		file(filepath.Base(WitnessPath(a.cfg.DataDir)), a.ckpt.notary),
		{Name: filepath.Base(AuditPath(a.cfg.DataDir)), Snapshot: a.audit.SnapshotStream},
	}
}
