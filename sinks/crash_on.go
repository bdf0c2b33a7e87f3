//go:build crashtest

package sinks

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// With the crashtest build tag, CERTKEEPER_CRASH_AT=<point>:<n> makes the
// process SIGKILL itself the n-th time it reaches <point>, so tests can
// prove that every step of a set write survives a crash. With
// CERTKEEPER_CRASH_TRACE=<file>, every point reached is appended to file as
// "<point>:<n>", so a test can enumerate the points instead of guessing.
var (
	crashMu   sync.Mutex
	crashSeen = map[string]int{}
)

func crashPoint(point string) {
	want := os.Getenv("CERTKEEPER_CRASH_AT")
	if want == "" && os.Getenv("CERTKEEPER_CRASH_TRACE") == "" {
		return
	}
	crashMu.Lock()
	crashSeen[point]++
	n := crashSeen[point]
	if trace := os.Getenv("CERTKEEPER_CRASH_TRACE"); trace != "" {
		if f, err := os.OpenFile(trace, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			fmt.Fprintf(f, "%s:%d\n", point, n)
			f.Close()
		}
	}
	crashMu.Unlock()
	if want == fmt.Sprintf("%s:%d", point, n) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
