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

	"github.com/certkeeper/certkeeper/test/faultproxy"
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

// TestReadyWaitsForVault: with Vault unreachable at start, certkeeper
// keeps trying and systemd hears nothing (no READY=1, no files) however
// many passes fail; once Vault is back, every certificate and the trust
// bundle are written and only then READY=1 comes.
func TestReadyWaitsForVault(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	p := e.proxy()
	p.SetMode(faultproxy.Reset)
	bundle := fmt.Sprintf(`
trust_bundle "clients" {
  mounts   = ["pki_int", "pki"]
  ca_file  = "%[1]s/clients-ca.pem"
  crl_file = "%[1]s/clients.crl.pem"
}
telemetry {
  listen = ""
}
`, e.dir)
	cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", p.Addr), `timeout = "3s"`),
		e.cert("web", vaulttest.RoleEC), e.cert("api", vaulttest.RoleEC), bundle)
	files := append(append(e.setPaths("web"), e.setPaths("api")...), filepath.Join(e.dir, "clients-ca.pem"), filepath.Join(e.dir, "clients.crl.pem"))

	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type note struct {
		msg     string
		at      time.Time
		missing []string // files not on disk when it arrived
	}
	notes := make(chan note, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			nt := note{msg: string(buf[:n]), at: time.Now()}
			for _, f := range files {
				if _, err := os.Stat(f); err != nil {
					nt.missing = append(nt.missing, f)
				}
			}
			notes <- nt
		}
	}()

	d := startDaemon(t, cfg, "NOTIFY_SOCKET="+sock)
	// Two failed passes of each certificate: Vault is not coming back on
	// its own, and a daemon that counted a failed first pass as done
	// would have said READY=1 by now.
	d.WaitLog(`renewal failed.*cert=web`, 2, 90*time.Second)
	d.WaitLog(`renewal failed.*cert=api`, 2, 90*time.Second)
	d.WaitLog(`trust bundle refresh failed.*bundle=clients`, 1, 90*time.Second)
	select {
	case nt := <-notes:
		t.Fatalf("systemd was told %q while Vault was unreachable", nt.msg)
	default:
	}
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s exists although Vault was never reached", f)
		}
	}
	if d.Count(`not ready yet.*certificate web`) == 0 {
		t.Error("the log does not say what READY=1 waits for")
	}

	p.SetMode(faultproxy.Pass)
	var ready note
	deadline := time.After(3 * time.Minute)
	for ready.msg == "" {
		select {
		case nt := <-notes:
			if nt.msg == "READY=1" {
				ready = nt
			}
		case <-deadline:
			t.Fatal("no READY=1 within 3 minutes of Vault coming back")
		}
	}
	if len(ready.missing) > 0 {
		t.Errorf("READY=1 arrived before these files existed: %v", ready.missing)
	}
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if info.ModTime().After(ready.at) {
			t.Errorf("%s was written after READY=1 (%v > %v)", f, info.ModTime(), ready.at)
		}
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
}
