//go:build integration

package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// ckRun runs a certkeeper command and returns stdout, stderr, exit code.
func ckRun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return cktest.Run(t, certkeeperBin, cleanEnv(), args...)
}

// TestRotateWithoutDaemon: with no daemon running, rotate renews the
// named certificate itself, even though it is valid, and only that one;
// -spread makes it wait a random time first, within the window.
func TestRotateWithoutDaemon(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC), e.cert("api", vaulttest.RoleEC))
	if out, errOut, code := once(t, cfg); code != 0 {
		t.Fatalf("once exited %d: %s %s", code, out, errOut)
	}
	web, api := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt")), cktest.ReadLeaf(t, filepath.Join(e.dir, "api.crt"))
	before := e.vault.CountCerts(t, "pki_int")

	start := time.Now()
	out, errOut, code := ckRun(t, "rotate", "-config", cfg, "web", "-spread", "3s")
	took := time.Since(start)
	if code != 0 || !regexp.MustCompile(`(?m)^web: rotated serial=`).MatchString(out) {
		t.Fatalf("rotate exited %d:\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "no certkeeper daemon answers; rotating here") {
		t.Errorf("rotate did not say it rotated without a daemon:\n%s", errOut)
	}
	if took > 30*time.Second {
		t.Errorf("rotate with -spread 3s took %v", took)
	}
	if got := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt")); got.SerialNumber.Cmp(web.SerialNumber) == 0 {
		t.Error("web.crt still holds the old certificate")
	}
	if got := cktest.ReadLeaf(t, filepath.Join(e.dir, "api.crt")); got.SerialNumber.Cmp(api.SerialNumber) != 0 {
		t.Error("api was rotated although not named")
	}
	if n := e.vault.CountCerts(t, "pki_int") - before; n != 1 {
		t.Errorf("Vault issued %d certificates, want 1", n)
	}
	openssl(t, "verify", "-CAfile", filepath.Join(e.dir, "web.ca.pem"), filepath.Join(e.dir, "web.fullchain.pem"))

	out, errOut, code = ckRun(t, "rotate", "-config", cfg, "wbe")
	if code != 1 || !strings.Contains(errOut, "no certificate named wbe (configured: web, api)") {
		t.Errorf("rotate of an unknown name: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestRotateThroughDaemon: with the daemon running, rotate hands the work
// to it over the control socket (the daemon issues, nothing races), and a
// second daemon on the same state directory refuses to start.
func TestRotateThroughDaemon(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC), e.cert("api", vaulttest.RoleEC))
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 60*time.Second)
	web := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt"))

	out, errOut, code := ckRun(t, "rotate", "-config", cfg)
	if code != 0 || strings.Count(out, "rotation scheduled by the running daemon") != 2 {
		t.Fatalf("rotate exited %d:\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(errOut, "rotating here") {
		t.Error("rotate rotated by itself although the daemon runs")
	}
	d.WaitLog(`msg="certificate issued and written" cert=web .*reason="rotation requested"`, 1, 30*time.Second)
	d.WaitLog(`msg="certificate issued and written" cert=api .*reason="rotation requested"`, 1, 30*time.Second)
	if got := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt")); got.SerialNumber.Cmp(web.SerialNumber) == 0 {
		t.Error("web.crt was not rotated")
	}

	second := exec.Command(certkeeperBin, "run", "-config", cfg)
	second.Env = cleanEnv()
	outb, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(outb), "another certkeeper process is running") {
		t.Errorf("a second daemon on the same state_dir: %v\n%s", err, outb)
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
	// Stopped: the socket is gone and rotate works without a daemon.
	if out, errOut, code := ckRun(t, "rotate", "-config", cfg, "api"); code != 0 || !strings.Contains(errOut, "rotating here") {
		t.Errorf("rotate after the daemon stopped: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestTrustBundleLevels: against the real Vault, a bundle over pki_int
// alone cannot have the root's CRL (pki_int holds the root without its
// key) and says so; over pki_int and pki it has both CAs and both CRLs,
// which openssl accepts for a full CRL check of a client certificate.
func TestTrustBundleLevels(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	bundle := func(mounts string) string {
		return fmt.Sprintf(`
trust_bundle "clients" {
  mounts   = %s
  ca_file  = "%[2]s/clients-ca.pem"
  crl_file = "%[2]s/clients.crl.pem"
}
`, mounts, e.dir)
	}
	cfg := e.writeConfig(e.cert("client", vaulttest.RoleEC), bundle(`["pki_int"]`))
	out, _, code := once(t, cfg)
	if code != 1 || !strings.Contains(out, `trust_bundle clients: FAILED: no CRL for CA "certkeeper test root"`) {
		t.Fatalf("a bundle missing the root's CRL: exit %d\n%s", code, out)
	}

	cfg = e.writeConfig(e.cert("client", vaulttest.RoleEC), bundle(`["pki_int", "pki"]`))
	out, errOut, code := once(t, cfg)
	if code != 0 || !strings.Contains(out, "trust_bundle clients: written cas=2 crls=2") {
		t.Fatalf("once exited %d:\n%s\n%s", code, out, errOut)
	}
	ca, crl := filepath.Join(e.dir, "clients-ca.pem"), filepath.Join(e.dir, "clients.crl.pem")
	if n := countPEM(t, ca); n != 2 {
		t.Errorf("CA file holds %d certificates, want 2", n)
	}
	openssl(t, "verify", "-crl_check_all", "-CAfile", ca, "-CRLfile", crl, "-untrusted", filepath.Join(e.dir, "client.chain.pem"), filepath.Join(e.dir, "client.crt"))

	// Revoked in Vault: the next refresh brings the CRL that says so.
	e.vault.Revoke(t, "pki_int", serialOf(cktest.ReadLeaf(t, filepath.Join(e.dir, "client.crt"))))
	out, errOut, code = once(t, cfg)
	if code != 0 || !strings.Contains(out, "trust_bundle clients: written") {
		t.Fatalf("refresh after revocation: exit %d\n%s", code, out)
	}
	// PKI serves issuers and CRLs without a token: a run with nothing to
	// issue costs Vault no login.
	if strings.Contains(errOut, "logged in to vault") {
		t.Errorf("refreshing a trust bundle logged in to Vault:\n%s", errOut)
	}
	cmd := exec.Command("openssl", "verify", "-crl_check_all", "-CAfile", ca, "-CRLfile", crl, "-untrusted", filepath.Join(e.dir, "client.chain.pem"), filepath.Join(e.dir, "client.crt"))
	if outb, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(outb), "revoked") {
		t.Errorf("openssl still accepts the revoked client: %v\n%s", err, outb)
	}
	out, _, code = ckRun(t, "status", "-config", cfg)
	if code != 0 || !regexp.MustCompile(`(?m)^clients\s+ok\s+certkeeper test intermediate\s.*#\d+, 1 revoked`).MatchString(out) {
		t.Errorf("status (exit %d):\n%s", code, out)
	}
}
