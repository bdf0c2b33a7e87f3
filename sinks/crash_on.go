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
// prove that every step of a set write survives a crash.
var (
	crashMu   sync.Mutex
	crashSeen = map[string]int{}
)

func crashPoint(point string) {
	want := os.Getenv("CERTKEEPER_CRASH_AT")
	if want == "" {
		return
	}
	crashMu.Lock()
	crashSeen[point]++
	n := crashSeen[point]
	crashMu.Unlock()
	if want == fmt.Sprintf("%s:%d", point, n) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
