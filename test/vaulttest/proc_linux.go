package vaulttest

import "syscall"

// sysProcAttr makes the kernel kill Vault if the test binary dies first (a
// `go test -timeout` panic skips cleanups), so no orphan keeps its port.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
