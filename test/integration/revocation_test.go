//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestRevokedCertificateReplaced: the daemon sees, on the certificate's
// revocation_check, that Vault revoked the certificate on disk (its
// issuer's CRL lists it), says so with the serial and the revocation
// time, and replaces it without an operator; the other certificate is
// left alone.
func TestRevokedCertificateReplaced(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC, `revocation_check = "1s"`), e.cert("api", vaulttest.RoleEC, `revocation_check = "1s"`))
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 60*time.Second)
	webFile := filepath.Join(e.dir, "web.crt")
	web, api := cktest.ReadLeaf(t, webFile), cktest.ReadLeaf(t, filepath.Join(e.dir, "api.crt"))

	e.vault.Revoke(t, vaulttest.IntMount, pki.Serial(web))
	revoked := time.Now()
	d.WaitLog(`msg="the certificate on disk was revoked in vault; replacing it" cert=web serial=`+regexp.QuoteMeta(pki.Serial(web))+` revoked_at=\S+ issuer="certkeeper test intermediate"`, 1, 30*time.Second)
	noticed := time.Since(revoked)
	cktest.WaitFor(t, "web.crt to be replaced", 2*time.Minute, func() bool { return !cktest.ReadLeaf(t, webFile).Equal(web) })
	replaced := time.Since(revoked)
	t.Logf("MEASURE revocation in Vault -> noticed %s -> replacement on disk %s (revocation_check 1s, spread up to %s)", noticed.Round(100*time.Millisecond), replaced.Round(100*time.Millisecond), time.Minute)
	d.WaitLog(`msg="certificate issued and written" cert=web .*reason="the certificate was revoked in vault at `, 1, 10*time.Second)
	if vaulttest.Lists(e.vault.CRL(t, vaulttest.IntMount), cktest.ReadLeaf(t, webFile)) {
		t.Error("the replacement is on the CRL too")
	}
	if !cktest.ReadLeaf(t, filepath.Join(e.dir, "api.crt")).Equal(api) {
		t.Error("api, not revoked, was replaced")
	}
	out, _, code := ckRun(t, "status", "-config", cfg)
	if code != 0 || !regexp.MustCompile(`(?m)^web\s+web\.example\.internal\s+valid\s`).MatchString(out) {
		t.Errorf("status after the replacement (exit %d):\n%s", code, out)
	}
}

// TestRevokeSuperseded: with revoke_superseded, a rotation revokes the
// certificate it replaced in Vault, with the least privilege `certkeeper
// policy` grants (revoke-with-key), once it is out of service (no service
// here: at once) and the grace period has passed, and only then; the
// record that kept its key is removed; the next run revokes nothing
// twice.
func TestRevokeSuperseded(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC, `revoke_superseded = true`, `revoke_grace = "2s"`))
	useGeneratedPolicy(t, e, cfg, "pki_int/revoke-with-key")
	if out, errOut, code := once(t, cfg); code != 0 {
		t.Fatalf("once exited %d:\n%s\n%s", code, out, errOut)
	}
	webFile := filepath.Join(e.dir, "web.crt")
	first := cktest.ReadLeaf(t, webFile)
	out, errOut, code := ckRun(t, "rotate", "-config", cfg, "web")
	if code != 0 {
		t.Fatalf("rotate exited %d:\n%s\n%s", code, out, errOut)
	}
	second := cktest.ReadLeaf(t, webFile)
	records, _ := filepath.Glob(filepath.Join(e.dir, "state", "superseded", "web.*.json"))
	if len(records) != 1 {
		t.Fatalf("records of replaced certificates: %v, want one", records)
	}
	if info, err := os.Stat(records[0]); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("record %s: %v %v, want mode 0600", records[0], info, err)
	}
	if _, errOut, _ := once(t, cfg); strings.Contains(errOut, "revoked the replaced certificate") || vaulttest.Lists(e.vault.CRL(t, vaulttest.IntMount), first) {
		t.Fatal("revoked within the grace period")
	}
	time.Sleep(2500 * time.Millisecond)
	out, errOut, code = once(t, cfg)
	if code != 0 || !strings.Contains(errOut, `msg="revoked the replaced certificate in vault" cert=web serial=`+pki.Serial(first)) {
		t.Fatalf("once after the grace period exited %d:\n%s\n%s", code, out, errOut)
	}
	crl := e.vault.CRL(t, vaulttest.IntMount)
	if !vaulttest.Lists(crl, first) || vaulttest.Lists(crl, second) {
		t.Errorf("Vault's CRL: replaced certificate listed %v (want true), current one listed %v (want false)", vaulttest.Lists(crl, first), vaulttest.Lists(crl, second))
	}
	if records, _ := filepath.Glob(filepath.Join(e.dir, "state", "superseded", "*")); len(records) != 0 {
		t.Errorf("left in state/superseded after the revocation: %v", records)
	}
	if _, errOut, _ := once(t, cfg); strings.Contains(errOut, "revoked the replaced certificate") {
		t.Error("a second run revoked again")
	}
}

// useGeneratedPolicy gives the env's AppRole exactly what `certkeeper
// policy` prints for cfg, and checks that it holds want.
func useGeneratedPolicy(t *testing.T, e *env, cfg, want string) {
	t.Helper()
	cmd := exec.Command(certkeeperBin, "policy", "-config", cfg)
	cmd.Env = cleanEnv()
	policy, err := cmd.Output()
	if err != nil {
		t.Fatalf("certkeeper policy: %v", err)
	}
	if !strings.Contains(string(policy), `path "`+want+`"`) {
		t.Fatalf("the generated policy lacks %s:\n%s", want, policy)
	}
	root := e.vault.Client
	if err := root.Sys().PutPolicy("generated", string(policy)); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/approle/role/certkeeper", map[string]any{
		"token_policies": []string{"generated"}, "token_no_default_policy": true,
	}); err != nil {
		t.Fatal(err)
	}
}
