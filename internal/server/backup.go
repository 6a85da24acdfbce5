package server

import (
	"archive/tar"
	"context"
	"io"
	"net/http"

	"github.com/gorilla/mux"
)

// BackupFile is one bbolt file of the data directory that a backup copies
// (GET /v1/admin/backup): Snapshot writes a consistent copy of it from one
// read transaction while the gateway goes on writing, calling start with
// the copy's size first (audit.Log.SnapshotStream, boltfile.Snapshot).
type BackupFile struct {
	Name     string // its name in the data directory: audit.db
	Snapshot func(ctx context.Context, start func(size int64) (io.Writer, error)) (int64, error)
}

// backupRoutes registers the backup of the data directory when the
// gateway was given its files.
func (s *Server) backupRoutes(v1 *mux.Router) {
	if len(s.deps.Backup) == 0 {
		return
	}
	v1.Handle("/admin/backup", s.audited(s.backup)).Methods(http.MethodGet)
}

// backup answers a tar archive of a consistent copy of every file of
// s.deps.Backup, in their order (the audit log last, so that it records at
// least what the other copies hold). Only an auditor appointed Trust-wide
// may take it: the one who may copy the audit log. A copy that fails midway
// ends the archive without its end marker, which the reader sees as
// truncated. The local key backend's private keys are never in it.
func (s *Server) backup(x *exchange) (int, any, error) {
	return s.auditorCopy(x, "back up the data directory", func(sctx context.Context, w http.ResponseWriter, status int) {
		h := w.Header()
		h.Set("Content-Type", "application/x-tar")
		h.Set("Content-Disposition", `attachment; filename="trustgate-backup.tar"`)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(status)
		tw := tar.NewWriter(w)
		now := s.opts.Now().UTC()
		for _, f := range s.deps.Backup {
			_, err := f.Snapshot(sctx, func(size int64) (io.Writer, error) {
				return tw, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: 0o600, Size: size, ModTime: now})
			})
			if err != nil {
				x.log.Error("backup stream failed", "file", f.Name, "err", err)
				return
			}
		}
		if err := tw.Close(); err != nil {
			x.log.Error("backup stream failed", "err", err)
		}
	})
}
