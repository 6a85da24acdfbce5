package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// backupFile is one file of a backup, as `backup --format json` reports it.
type backupFile struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
	Check string `json:"check"` // what was checked of the copy
}

func backupCommand() *cobra.Command {
	var (
		g      gatewayFlags
		out    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "backup --out DIR",
		Short: "Back up a running gateway's data directory: a consistent copy of each of its files, checked (role auditor)",
		Long: `Asks the running gateway for a backup (GET /v1/admin/backup, role auditor
appointed Trust-wide): a consistent copy of each bbolt file of its data
directory - state.db, outbox.db, index.db, witness.db and, last, audit.db - each from one
read transaction while the gateway goes on serving. The copies are written
into a new directory DIR (it must not exist), each fsynced, and checked:
the audit log verified (chain, Merkle tree, checkpoints, index), every other
file opened read-only and its pages checked. DIR appears only once every copy
is written and checked. The local key backend's private keys are not part of
it: back them up apart (docs/operations.md A3). To restore, stop the
gateway and put the files back in its data directory (A4).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &usageError{errors.New("--out is required: the directory to create")}
			}
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("%s: refusing to write a backup into an existing path: %w", out, os.ErrExist)
			}
			tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp) // gone after the rename
			files, err := fetchBackup(cmd, &g, tmp)
			if err != nil {
				return err
			}
			for i := range files {
				if err := checkBackupFile(cmd, tmp, &files[i]); err != nil {
					return fmt.Errorf("%w: backup: %s: %w", errFound, files[i].Name, err)
				}
			}
			if err := os.Rename(tmp, out); err != nil {
				return err
			}
			return emit(cmd, asJSON, map[string]any{"dir": out, "files": files}, func(w io.Writer) {
				fmt.Fprintf(w, "backup written to %s:\n", out)
				for _, f := range files {
					fmt.Fprintf(w, "  %-10s %10d bytes  %s\n", f.Name, f.Bytes, f.Check)
				}
			})
		},
	}
	g.add(cmd, "auditor", 10*time.Minute)
	cmd.Flags().StringVar(&out, "out", "", "the directory to create for the backup (required)")
	addFormat(cmd, &asJSON)
	return cmd
}

// fetchBackup writes the files of the gateway's backup archive into dir.
func fetchBackup(cmd *cobra.Command, g *gatewayFlags, dir string) ([]backupFile, error) {
	resp, err := g.get(cmd.Context(), "/v1/admin/backup")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var files []backupFile
	tr := tar.NewReader(resp.Body)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: backup: the archive is incomplete: %w", errFound, err)
		}
		name := filepath.Base(h.Name)
		if h.Typeflag != tar.TypeReg || name != h.Name || name == "." || name == ".." {
			return nil, fmt.Errorf("%w: backup: unexpected archive member %q", errFound, h.Name)
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(f, tr)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%w: backup: %s: %w", errFound, name, err)
		}
		files = append(files, backupFile{Name: name, Bytes: n})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: backup: the archive holds no file", errFound)
	}
	return files, nil
}

// checkBackupFile checks one copy: the audit log is verified, every other
// file opened read-only with its pages checked (bbolt's Tx.Check).
func checkBackupFile(cmd *cobra.Command, dir string, f *backupFile) error {
	path := filepath.Join(dir, f.Name)
	if f.Name == "audit.db" {
		rep, err := audit.VerifyFile(cmd.Context(), path, audit.VerifyOptions{})
		if err != nil {
			return err
		}
		f.Check = fmt.Sprintf("verified: %d entries, root %s", rep.Entries, rep.Root)
		return nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the checker runs to its end
			if first == nil {
				first = err
			}
		}
		return first
	}); err != nil {
		return err
	}
	f.Check = "pages checked"
	return nil
}
