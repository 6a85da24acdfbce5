package procfs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestMappedFilesCountsTheResidentPagesOfAMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mapped file")
	const size = 1 << 20
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)

	before, err := MappedFiles(0)
	if err != nil {
		t.Fatal(err)
	}
	if before[path] != 0 {
		t.Fatalf("%d bytes resident before any page was read", before[path])
	}
	var sum byte
	for i := 0; i < size/2; i += 4096 {
		sum += m[i] // touch the first half, a page at a time
	}
	after, err := MappedFiles(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got := after[path]; got < size/2 || got > size {
		t.Fatalf("%d bytes resident after reading %d (sum %d): want between %d and %d", got, size/2, sum, size/2, size)
	}
}
