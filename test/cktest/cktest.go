// Package cktest runs the certkeeper binary the way users run it, for the
// integration and end-to-end tests: built once from the working tree, in
// an environment without the developer's VAULT_* variables, as a command
// or as a daemon whose logs a test can wait on.
package cktest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Main is TestMain for a package that runs certkeeper: it builds the
// binary from the working tree into *bin, so tests never exercise a stale
// one, runs the tests and removes the binary.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "certkeeper-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = dir + "/certkeeper"
	build := exec.Command("go", "build", "-o", *bin, "github.com/certkeeper/certkeeper/cmd/certkeeper")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building certkeeper:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Env is this process's environment without VAULT_* variables, so a
// developer's shell cannot change what a test sees, plus extra.
func Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Run runs bin with args and env and returns its stdout, stderr and exit
// code; failing to start it fails the test.
func Run(t testing.TB, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s %s: %v", bin, strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// Options start a Daemon.
type Options struct {
	Bin  string
	Args []string // e.g. run -config FILE -log-level debug
	Env  []string
	// User, when set, runs the daemon as another user.
	User *syscall.Credential
}

// Daemon is a running certkeeper process. It is killed when the test ends,
// and its logs are printed if the test failed.
type Daemon struct {
	T    testing.TB
	Cmd  *exec.Cmd
	Logs *SyncBuffer
	done chan struct{}
	err  error
}

// Start starts a daemon.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	d := &Daemon{T: t, Logs: &SyncBuffer{}, done: make(chan struct{})}
	d.Cmd = exec.Command(o.Bin, o.Args...)
	d.Cmd.Env = o.Env
	d.Cmd.Stdout, d.Cmd.Stderr = d.Logs, d.Logs
	if o.User != nil {
		d.Cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.User}
	}
	if err := d.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.Cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.Cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("certkeeper logs:\n%s", d.Logs.String())
		}
	})
	return d
}

// Done is closed when the process has exited; Err is then its exit error.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Err is how the process ended, once Done is closed.
func (d *Daemon) Err() error { return d.err }

// Stop sends SIGTERM and returns the exit code.
func (d *Daemon) Stop() int {
	d.T.Helper()
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(60 * time.Second):
		d.T.Fatal("certkeeper did not exit within 60s of SIGTERM")
	}
	if ee, ok := d.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 0
}

// Count is how many times re matches the logs so far.
func (d *Daemon) Count(re string) int {
	return len(regexp.MustCompile(re).FindAllStringIndex(d.Logs.String(), -1))
}

// WaitLog waits until re matches the logs at least n times, failing the
// test on timeout or if the process exits first.
func (d *Daemon) WaitLog(re string, n int, timeout time.Duration) {
	d.T.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for len(rx.FindAllStringIndex(d.Logs.String(), -1)) < n {
		if time.Now().After(deadline) {
			d.T.Fatalf("no %d log lines matching %q within %v", n, re, timeout)
		}
		select {
		case <-d.done:
			d.T.Fatalf("certkeeper exited while waiting for %q: %v", re, d.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SyncBuffer is a bytes.Buffer safe for a process writing while a test
// reads.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor polls cond until it holds, failing the test after timeout.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
