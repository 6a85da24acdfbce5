// Package deploy holds what an operator installs beside the binary: the
// hardened systemd unit (systemd/trustgate.service, docs/operations.md).
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit: the unit keeps its hardening, and systemd-analyze
// verify accepts it where systemd is installed.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("systemd/trustgate.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=trustgate", "CapabilityBoundingSet=\n", "NoNewPrivileges=yes", "ProtectHome=yes", "PrivateTmp=yes"} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: only the unit's text is checked")
		return
	}
	// verify needs the ExecStart binary to exist: point a copy at a real
	// executable in a temporary directory.
	dir := t.TempDir()
	bin := filepath.Join(dir, "trustgate")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "trustgate.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(unit, "/usr/local/bin/trustgate", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "trustgate.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	// systemd's own exposure score (0 best, 10 worst) stays at most 1.5
	// ("OK"); offline analysis needs systemd 250 or later.
	out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=15", copyPath).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unrecognized option") {
			t.Logf("this systemd-analyze has no offline security analysis: %s", out)
			return
		}
		t.Errorf("systemd-analyze security: exposure above 1.5 (%v):\n%s", err, out)
	}
}
