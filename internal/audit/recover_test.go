package audit_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// TestRecoversAfterDiskFull fills a real file system (a 40 MiB tmpfs
// mounted for the test: the disk is full for real, the writes fail with
// ENOSPC in the kernel) under a log taking appends, frees the space, and
// checks that the log recovers by itself within seconds, with every
// acknowledged entry kept and the chain and tree intact.
func TestRecoversAfterDiskFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("this test mounts a small tmpfs to fill it (needs root or CAP_SYS_ADMIN, as make test has in CI): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	path := filepath.Join(dir, "audit.db")
	l, err := audit.Open(path, audit.Options{ProbeInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acked := map[uint64]string{}
	appendOne := func(i int) error {
		e := audit.TypicalEntry(i)
		seq, hash, err := l.Append(t.Context(), &e)
		if err == nil {
			acked[seq] = hash
		}
		return err
	}
	for i := range 50 {
		if err := appendOne(i); err != nil {
			t.Fatal(err)
		}
	}
	// Fill the disk.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	var failErr error
	for i := 50; i < 50_000 && failErr == nil; i++ {
		failErr = appendOne(i)
	}
	if !errors.Is(failErr, audit.ErrUnavailable) {
		t.Fatalf("appends on a full disk: err = %v, want ErrUnavailable", failErr)
	}
	if h := l.Health(); h.State != "failed" || h.Failures != 1 || l.Err() == nil {
		t.Fatalf("after the failure: health %+v, Err %v", h, l.Err())
	}
	time.Sleep(300 * time.Millisecond) // probes fail while the disk is full
	if h := l.Health(); h.State != "failed" {
		t.Fatalf("recovered while the disk is still full: %+v", h)
	}
	if err := appendOne(99_999); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("append while failed: err = %v, want ErrUnavailable", err)
	}
	// Free the space: the log recovers by itself.
	freed := time.Now()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for l.Health().State != "ok" {
		if time.Since(freed) > 10*time.Second {
			t.Fatalf("not recovered 10 s after space returned: %+v", l.Health())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("recovered %v after the space was freed; %d entries acknowledged before", time.Since(freed).Round(time.Millisecond), len(acked))
	if h := l.Health(); h.Recoveries != 1 || l.Err() != nil {
		t.Fatalf("after recovery: health %+v, Err %v", h, l.Err())
	}
	for i := range 30 {
		if err := appendOne(100_000 + i); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyFile(t.Context(), path, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("verify after recovery: %v", err)
	}
	r, err := audit.Open(path, audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for seq, hash := range acked {
		e, err := r.Get(t.Context(), seq)
		if err != nil || e.Hash != hash {
			t.Fatalf("acknowledged entry %d lost or changed: %v", seq, err)
		}
	}
	if rep.Entries < uint64(len(acked)) {
		t.Fatalf("%d entries, %d acknowledged", rep.Entries, len(acked))
	}
}
