//go:build !linux

package vaulttest

import "syscall"

// sysProcAttr has no parent-death signal outside Linux; a crashed test run
// may leave Vault behind there.
func sysProcAttr() *syscall.SysProcAttr { return nil }
