//go:build integration

package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
)

// TestDemoCtrlC: `make demo` stopped with Ctrl-C (SIGINT to the whole
// foreground process group, as a terminal sends it) stops certkeeper and
// Vault cleanly, and make reports no error. Through `go run`, which exits
// 1 when it is interrupted, it ended with "make: *** [demo] Error 1".
func TestDemoCtrlC(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root := moduleRoot(t)
	if _, err := os.Stat(filepath.Join(root, "bin", "vault")); err != nil {
		t.Skip("bin/vault is not built (make vault); make test builds it first")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:9847", time.Second); err == nil {
		c.Close()
		t.Skip("127.0.0.1:9847, the demo's telemetry address, is taken")
	}
	cmd := exec.Command("make", "-o", "bin/vault", "demo")
	cmd.Dir = root
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &cktest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	deadline := time.After(5 * time.Minute)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		select {
		case err := <-done:
			t.Fatalf("make demo ended before it was interrupted: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("make demo never got to its end:\n%s", out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case err := <-done:
		// make itself gets the SIGINT too: once its child is done it
		// dies of it, as make does on any Ctrl-C, and says nothing
		// unless the child failed.
		if (err != nil && err.Error() != "signal: interrupt") || strings.Contains(out.String(), "make: ***") {
			t.Errorf("make demo after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("make demo did not stop within a minute of Ctrl-C:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "certkeeper stopped cleanly") {
		t.Errorf("the demo did not say certkeeper stopped cleanly:\n%s", out.String())
	}
}
