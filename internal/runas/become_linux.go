package runas

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"
)

// Linux constants the syscall package does not export.
const (
	prCapAmbient      = 0x2f
	prCapAmbientRaise = 2
	capVersion3       = 0x20080522
	capKill           = 5
)

// become sets groups, then gid, then uid, on every thread (Go's syscall
// wrappers do that for setgroups/setresgid/setresuid). It keeps CAP_KILL,
// and only it, as the packaged unit's AmbientCapabilities=CAP_KILL does, so
// a root `once` or `rotate` can still signal a root-owned nginx or Apache
// master for a reload. Capabilities are per thread and only a binary
// without cgo (the release build) can change them on every thread at
// once; a cgo build switches without CAP_KILL and says so (keptKill false).
func become(o Owner) (keptKill bool, err error) {
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, syscall.PR_SET_KEEPCAPS, 1, 0)
	keep := errno == 0
	if !keep && errno != syscall.ENOTSUP {
		return false, fmt.Errorf("keeping capabilities across the switch: %w", errno)
	}
	if err := syscall.Setgroups(o.Groups); err != nil {
		return false, fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(o.GID, o.GID, o.GID); err != nil {
		return false, fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(o.UID, o.UID, o.UID); err != nil {
		return false, fmt.Errorf("setresuid: %w", err)
	}
	if syscall.Geteuid() != o.UID || syscall.Getegid() != o.GID {
		return false, errors.New("the switch did not take")
	}
	if !keep {
		return false, nil
	}
	// Permitted still holds everything root had: narrow it to CAP_KILL,
	// effective and inheritable too, then raise it as ambient so check
	// and reload commands get it like they do under the unit.
	hdr := struct {
		version uint32
		pid     int32
	}{version: capVersion3}
	var data [2]struct{ effective, permitted, inheritable uint32 }
	data[0].effective, data[0].permitted, data[0].inheritable = 1<<capKill, 1<<capKill, 1<<capKill
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return false, fmt.Errorf("capset: %w", errno)
	}
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientRaise, capKill); errno != 0 {
		return false, fmt.Errorf("raising ambient CAP_KILL: %w", errno)
	}
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, syscall.PR_SET_KEEPCAPS, 0, 0); errno != 0 {
		return false, fmt.Errorf("clearing keepcaps: %w", errno)
	}
	return true, nil
}
