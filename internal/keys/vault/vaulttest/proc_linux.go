package vaulttest

import "syscall"

// sysProcAttr kills the Vault server if the test binary dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
