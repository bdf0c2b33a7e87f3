//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/faultproxy"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// checkedService is a service "web" whose check fails while the file
// e.dir/break exists, and whose reload appends a line to e.dir/reloads.
func (e *env) checkedService() string {
	return fmt.Sprintf(`
service "web" {
  check  = ["/bin/sh", "-c", "if [ -e %[1]s/break ]; then echo 'config test failed' >&2; exit 1; fi"]
  reload = ["/bin/sh", "-c", "echo reloaded >> %[1]s/reloads"]
  settle = "100ms"
}
`, e.dir)
}

// reloads is how many times the checked service was reloaded.
func (e *env) reloads(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(e.path("reloads"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "reloaded\n")
}

// TestRolledBackIsNotIssued: when a service's check fails after `once`
// or `rotate` (without a daemon) wrote a new certificate, the files are
// rolled back, and the command says so and exits 1: it never claims the
// certificate was issued or rotated.
func TestRolledBackIsNotIssued(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.checkedService(), e.cert("web", vaulttest.RoleEC, `notify = ["web"]`))
	out, errOut, code := once(t, cfg)
	if code != 0 || !strings.Contains(out, "web: issued") || !strings.Contains(out, "service web: reloaded") {
		t.Fatalf("first once exited %d:\n%s\n%s", code, out, errOut)
	}
	first := cktest.ReadLeaf(t, e.path("web.crt"))
	if err := os.WriteFile(e.path("break"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rolledBack := regexp.MustCompile(`(?m)^web: FAILED: rolled back: service web failed its check: .*config test failed.*; serial=\S+ is not on disk, the files are those from before this run$`)

	out, errOut, code = ckRun(t, "rotate", "-config", cfg)
	if code != 1 || !rolledBack.MatchString(out) || strings.Contains(out, "rotated") {
		t.Errorf("rotate whose check failed: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := cktest.ReadLeaf(t, e.path("web.crt")); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("web.crt does not hold the certificate from before the rotation")
	}

	// A new SAN: once obtains a new certificate, the check fails.
	cfg = e.writeConfig(e.checkedService(), withSAN(e.cert("web", vaulttest.RoleEC, `notify = ["web"]`), "www.example.internal"))
	out, errOut, code = once(t, cfg)
	if code != 1 || !rolledBack.MatchString(out) || strings.Contains(out, "issued") {
		t.Errorf("once whose check failed: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "service web: FAILED (check_failed)") {
		t.Errorf("once does not report the service's failed check:\n%s", out)
	}
	if got := cktest.ReadLeaf(t, e.path("web.crt")); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("web.crt does not hold the certificate from before once")
	}
	if n := e.reloads(t); n != 1 {
		t.Errorf("%d reloads, want 1 (the first once; the failed checks reload nothing)", n)
	}
}

// withSAN is a certificate block from e.cert with one more DNS name.
func withSAN(block, name string) string {
	return strings.Replace(block, `"localhost"]`, fmt.Sprintf(`"localhost", %q]`, name), 1)
}

// TestOnceThroughDaemon: with the daemon running, a SAN changed in the
// config and `once` run at once (what the Ansible role does) cost exactly
// one issuance and one reload: once asks the daemon, which reads the
// config again, does the passes and one batch of reloads, and once prints
// the daemon's outcome as its own, exit 0. A once for another config file
// on the same state_dir is refused.
func TestOnceThroughDaemon(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	web := e.cert("web", vaulttest.RoleEC, `notify = ["web"]`)
	cfg := e.writeConfig(e.checkedService(), web)
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, time.Minute)
	waitFor(t, "the first reload", 30*time.Second, func() bool { return e.reloads(t) == 1 })
	issued, reloads := e.vault.CountCerts(t, "pki_int"), e.reloads(t)

	// The daemon is stopped (SIGSTOP) while the config changes and once
	// starts, and continued a second later: a once that did not wait for
	// it would issue first, and the daemon, holding the old certificate,
	// would issue again when it reads the new config (as it did).
	d.Cmd.Process.Signal(syscall.SIGSTOP)
	e.writeConfig(e.checkedService(), withSAN(web, "www.example.internal"))
	go func() {
		time.Sleep(time.Second)
		d.Cmd.Process.Signal(syscall.SIGCONT)
	}()
	out, errOut, code := once(t, cfg)
	if code != 0 {
		t.Fatalf("once exited %d:\n%s\n%s", code, out, errOut)
	}
	t.Logf("once printed:\n%s", out)
	if !strings.Contains(errOut, "the running daemon did the passes") || d.Count(`once requested over the control socket`) != 1 {
		t.Errorf("once did not go through the daemon:\n%s", errOut)
	}
	leaf := cktest.ReadLeaf(t, e.path("web.crt"))
	if !slices.Contains(leaf.DNSNames, "www.example.internal") {
		t.Errorf("web.crt has %v, not the new SAN", leaf.DNSNames)
	}
	// The daemon's own file watch sees the edit too; whichever comes
	// first issues, the other finds the certificate fitting.
	line := regexp.MustCompile(`(?m)^web: (issued|ok) serial=(\S+) `).FindStringSubmatch(out)
	if line == nil || line[2] != pki.Serial(leaf) {
		t.Errorf("once's line for web does not name the serial on disk (%s):\n%s", pki.Serial(leaf), out)
	}
	time.Sleep(3 * time.Second) // any second reload would be settled by now
	if n := e.vault.CountCerts(t, "pki_int") - issued; n != 1 {
		t.Errorf("Vault issued %d certificates for one SAN change, want 1", n)
	}
	if n := e.reloads(t) - reloads; n != 1 {
		t.Errorf("the service was reloaded %d times for one SAN change, want 1", n)
	}

	other := filepath.Join(e.dir, "other.hcl")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = once(t, other)
	if code != 1 || !strings.Contains(errOut, "runs "+cfg+", not "+other) {
		t.Errorf("once for another config on the daemon's state_dir: exit %d\n%s\n%s", code, out, errOut)
	}
	if n := e.vault.CountCerts(t, "pki_int") - issued; n != 1 {
		t.Errorf("the refused once issued %d certificates", n-1)
	}
}

// TestOnceWithoutVaultSaysWhatIs: once against a Vault that does not
// answer, with nothing on disk, exits 1 saying so, and neither promises a
// next attempt (it exits) nor claims to keep files there are none of.
func TestOnceWithoutVaultSaysWhatIs(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	dead := freeAddr(t) // nothing listens there
	cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", "http://"+dead)), e.cert("web", vaulttest.RoleEC), "telemetry {\n  listen = \"\"\n}\n")
	out, errOut, code := once(t, cfg)
	if code != 1 || !regexp.MustCompile(`(?m)^web: FAILED: .*connection refused`).MatchString(out) {
		t.Fatalf("once without Vault: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, wrong := range []string{"next attempt", "keeping the files on disk"} {
		if strings.Contains(out+errOut, wrong) {
			t.Errorf("once says %q although it exits with nothing on disk:\n%s\n%s", wrong, out, errOut)
		}
	}
	if !strings.Contains(errOut, "renewal failed; no certificate on disk") {
		t.Errorf("once's log does not say there is no certificate on disk:\n%s", errOut)
	}
}

// TestSecondRunRefusesFirst: a second `run` on a state_dir whose daemon
// runs refuses at once, with the reason and nothing before it: no
// telemetry bind error for the port the first one holds, no Vault login.
func TestSecondRunRefusesFirst(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	addr := freeAddr(t)
	cfg := e.writeConfigWith(telemetryBlock(addr), e.cert("web", vaulttest.RoleEC))
	d := startDaemon(t, cfg)
	d.WaitLog(`telemetry endpoint listening`, 1, 30*time.Second)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, time.Minute)

	second := startDaemon(t, cfg)
	select {
	case <-second.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the second run did not exit")
	}
	logs := second.Logs.String()
	if second.Err() == nil || !strings.Contains(logs, "another certkeeper process is running with state_dir") {
		t.Fatalf("the second run: %v\n%s", second.Err(), logs)
	}
	for _, before := range []string{"telemetry", "address already in use", "logged in", "certkeeper starting"} {
		if strings.Contains(logs, before) {
			t.Errorf("the second run logged %q before refusing:\n%s", before, logs)
		}
	}
}

// TestOutputDirectoriesMadeOnPurpose: missing output directories are made
// 0755 (0750 and the files' group when a group is set), owned by the
// running user, whatever the umask (the unit's is 0077, which made them
// 0700 and unreadable to the server), and each is logged.
func TestOutputDirectoriesMadeOnPurpose(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	web := strings.ReplaceAll(e.cert("web", vaulttest.RoleEC, `group = "nogroup"`), e.dir+"/web", e.dir+"/out/tls/web")
	cfg := e.writeConfig(web, fmt.Sprintf(`
trust_bundle "clients" {
  mounts   = ["pki_int", "pki"]
  ca_file  = "%[1]s/bundles/clients-ca.pem"
  crl_file = "%[1]s/bundles/clients.crl.pem"
}
`, e.dir))
	out, errOut, code := cktest.Run(t, "/bin/sh", cleanEnv(), "-c", `umask 077; exec "$0" once -config "$1"`, certkeeperBin, cfg)
	if code != 0 {
		t.Fatalf("once exited %d:\n%s\n%s", code, out, errOut)
	}
	nogroup := 65534
	for dir, want := range map[string]struct {
		mode os.FileMode
		gid  int
	}{
		"out":     {0o750, nogroup},
		"out/tls": {0o750, nogroup},
		"bundles": {0o755, -1},
	} {
		info, err := os.Stat(filepath.Join(e.dir, dir))
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		if info.Mode().Perm() != want.mode || int(st.Uid) != os.Getuid() || (want.gid >= 0 && int(st.Gid) != want.gid) {
			t.Errorf("%s: mode %04o owner %d:%d, want %04o, uid %d, gid %d", dir, info.Mode().Perm(), st.Uid, st.Gid, want.mode, os.Getuid(), want.gid)
		}
		if !regexp.MustCompile(`created a missing output directory.* dir=` + regexp.QuoteMeta(filepath.Join(e.dir, dir)) + ` mode=0`).MatchString(errOut) {
			t.Errorf("no log line for %s:\n%s", dir, errOut)
		}
	}
}

// TestAcceptedRotationSurvivesStop: a rotate the daemon accepted, whose
// pass fails (Vault unreachable) before the daemon is stopped, is not
// dropped: the next start takes it up and rotates, once.
func TestAcceptedRotationSurvivesStop(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	p := e.proxy()
	cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", p.Addr), `timeout = "3s"`), e.cert("web", vaulttest.RoleEC), "telemetry {\n  listen = \"\"\n}\n")
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, time.Minute)
	first := cktest.ReadLeaf(t, e.path("web.crt"))

	p.SetMode(faultproxy.Reset)
	if out, errOut, code := ckRun(t, "rotate", "-config", cfg, "web"); code != 0 || !strings.Contains(out, "rotation scheduled by the running daemon") {
		t.Fatalf("rotate: exit %d\n%s\n%s", code, out, errOut)
	}
	d.WaitLog(`renewal failed.*cert=web`, 1, time.Minute)
	if code := d.Stop(); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	if got := cktest.ReadLeaf(t, e.path("web.crt")); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("web was rotated although Vault was unreachable")
	}

	p.SetMode(faultproxy.Pass)
	issued := e.vault.CountCerts(t, "pki_int")
	d = startDaemon(t, cfg)
	d.WaitLog(`taking up a rotation accepted before the last stop.*cert=web`, 1, 30*time.Second)
	d.WaitLog(`certificate issued and written.*cert=web.*reason="rotation requested"`, 1, time.Minute)
	time.Sleep(time.Second)
	if n := e.vault.CountCerts(t, "pki_int") - issued; n != 1 {
		t.Errorf("the next start issued %d certificates, want 1", n)
	}
	if got := cktest.ReadLeaf(t, e.path("web.crt")); got.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("web.crt still holds the certificate from before the rotate")
	}
	d.Stop()
	d = startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, time.Minute)
	if d.Count(`taking up a rotation`) != 0 {
		t.Error("a rotation already done was taken up again")
	}
}
