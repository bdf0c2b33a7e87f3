//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// profileRun runs certkeeper once more at the largest count with -pprof
// and saves a CPU profile of the initial pass, and heap and allocation
// profiles taken when the last set landed. It is not part of the table:
// profiling slows the agent down.
func profileRun(ctx context.Context, o *options, bv *benchVault) error {
	if len(o.ns) == 0 {
		return fmt.Errorf("-profile needs a count in -n")
	}
	n := slices.Max(o.ns)
	j := job{toolCertkeeper, n, "ec"}
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(o.work, "profile-")
	if err != nil {
		return err
	}
	// Kept until the bench ends, as runJob's directories are.
	l, err := prepare(o, bv, j, dir)
	if err != nil {
		return err
	}
	addr, err := freeLoopback()
	if err != nil {
		return err
	}
	w, err := newWatcher(l.tlsDir, l.sets, false)
	if err != nil {
		return err
	}
	defer w.close()
	p, err := startProc(l.bin, append(l.args, "-pprof", addr), dir, filepath.Join(dir, "run.log"), nil)
	if err != nil {
		return err
	}
	defer p.stop()
	base := "http://" + addr + "/debug/pprof/"
	// The listener comes up before the agent starts working; a CPU
	// profile asked for at once covers nearly all of the initial pass.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := fetch(base+"cmdline", filepath.Join(dir, "cmdline")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no pprof listener on %s", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cpuDone := make(chan error, 1)
	cpuPath := filepath.Join(o.profile, fmt.Sprintf("cpu-%d.pprof", n))
	go func() { cpuDone <- fetch(fmt.Sprintf("%sprofile?seconds=%d", base, profileSeconds(n)), cpuPath) }()
	done, err := w.wait(o.timeout+time.Duration(n)*100*time.Millisecond, p.exited)
	if err != nil {
		return err
	}
	say("profiled run: %d sets on disk after %.2fs", n, done.Sub(p.start).Seconds())
	for _, name := range []string{"heap", "allocs", "goroutine"} {
		if err := fetch(base+name, filepath.Join(o.profile, fmt.Sprintf("%s-%d.pprof", name, n))); err != nil {
			return err
		}
	}
	if err := <-cpuDone; err != nil {
		return err
	}
	say("profiles in %s: go tool pprof -top %s", o.profile, cpuPath)
	return nil
}

// profileSeconds covers an initial pass of n certificates with margin.
func profileSeconds(n int) int { return 3 + n/250 }
