//go:build integration

package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestSystemdNotify plays systemd's part of Type=notify: READY=1 must come
// only once the certificates are on disk (so nginx, ordered after
// certkeeper, finds them), and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC), e.cert("api", vaulttest.RoleRSA, `key_type = "rsa"`))
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()

	d := startDaemon(t, cfg, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	if got := waitMsg(t, msgs, "READY=1", 60*time.Second); got != "READY=1" {
		t.Fatalf("first message %q", got)
	}
	for _, f := range []string{"web.crt", "web.key", "api.crt", "api.key"} {
		if _, err := os.Stat(filepath.Join(e.dir, f)); err != nil {
			t.Errorf("READY=1 sent before %s was written", f)
		}
	}
	// WATCHDOG_PID is unset, so the watchdog applies to this process.
	if got := waitMsg(t, msgs, "WATCHDOG=1", 5*time.Second); got != "WATCHDOG=1" {
		t.Errorf("no watchdog ping with WATCHDOG_USEC set")
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if got := waitMsg(t, msgs, "STOPPING=1", 5*time.Second); got != "STOPPING=1" {
		t.Errorf("no STOPPING=1 on SIGTERM")
	}
}

// waitMsg returns want once it arrives, skipping other messages.
func waitMsg(t *testing.T, msgs <-chan string, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-msgs:
			if m == want {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q within %v", want, timeout)
			return ""
		}
	}
}

// TestSystemdUnitReal runs the shipped unit's ExecStart under a real
// systemd, where one manages this machine.
func TestSystemdUnitReal(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		t.Skip("systemd is not running on this machine (no /run/systemd/system): the notify protocol is tested by TestSystemdNotify against a socket instead")
	}
	if _, err := exec.LookPath("systemd-run"); err != nil {
		t.Skip("systemd-run is not installed")
	}
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC))
	unit := fmt.Sprintf("certkeeper-test-%d", os.Getpid())
	// For a Type=notify unit, systemd-run returns once the start job is
	// done, which is when certkeeper sent READY=1.
	out, err := exec.Command("systemd-run", "--unit="+unit, "--collect", "--property=Type=notify",
		"--property=TimeoutStartSec=60", certkeeperBin, "run", "-config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-run: %v\n%s", err, out)
	}
	defer exec.Command("systemctl", "stop", unit).Run()
	if _, err := os.Stat(filepath.Join(e.dir, "web.crt")); err != nil {
		t.Error("systemd saw the unit ready before the certificate was written")
	}
	if out, err := exec.Command("systemctl", "stop", unit).CombinedOutput(); err != nil {
		t.Errorf("stopping the unit: %v\n%s", err, out)
	}
}
