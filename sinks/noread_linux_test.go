package sinks

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"
)

// Linux capability numbers and the capget/capset ABI version the syscall
// package does not export.
const (
	capVersion3      = 0x20080522
	capDacOverride   = 1
	capDacReadSearch = 2
)

// withoutReadOverride runs fn on an OS thread of its own that has lost
// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so file modes bind root as
// they bind any user: root then stands for a state_dir owner who may
// replace another user's 0600 file but not read it. Capabilities are per
// thread on Linux, and the goroutine ends still locked to the thread, so
// the runtime discards it: no other goroutine ever runs without them.
func withoutReadOverride(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		hdr := struct {
			version uint32
			pid     int32
		}{version: capVersion3}
		var data [2]struct{ effective, permitted, inheritable uint32 }
		if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
			errc <- fmt.Errorf("capget: %w", errno)
			return
		}
		data[0].effective &^= 1<<capDacOverride | 1<<capDacReadSearch
		if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
			errc <- fmt.Errorf("capset: %w", errno)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
