package hostile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the trustgate binary the tests built (trustgateBinary).
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
