//go:build integration && faults

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestWrappedSecretID: the host gets a response-wrapped secret_id. The
// wrapping token is unwrapped once, at start; later logins (the token's
// max TTL is 30s) use the secret_id from memory. The same file given again
// (the token is used) or a token left to expire is a clear error that says
// to provision a new one.
func TestWrappedSecretID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	root := e.vault.Client
	roleID, _ := e.vault.AppRole(t, vaulttest.AppRoleOptions{Name: "wrapped", TokenTTL: "20s", TokenMaxTTL: "30s"})
	wrapping, err := vaulttest.WrapSecretID(t.Context(), root, "wrapped", "s3cret-id-for-the-wrapped-test", "120s")
	if err != nil {
		t.Fatal(err)
	}
	roleFile, wrapFile := filepath.Join(e.dir, "wrapped-role-id"), filepath.Join(e.dir, "secret-id.wrapped")
	os.WriteFile(roleFile, []byte(roleID), 0o600)
	os.WriteFile(wrapFile, []byte(wrapping+"\n"), 0o600)
	p := e.proxy()
	vault := func(addr string) string {
		return fmt.Sprintf(`
vault {
  address = %q
  auth "approle" {
    role_id_file      = %q
    secret_id_file    = %q
    secret_id_wrapped = true
  }
}
`, addr, roleFile, wrapFile)
	}
	cfg := e.writeRawConfig(vault(p.Addr), shortCert(e, "web"))
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web`, 2, 3*time.Minute)
	d.WaitLog(`logged in to vault`, 2, time.Minute)
	d.Stop()
	unwraps, lookups, logins := 0, 0, 0
	for _, r := range p.Records() {
		switch {
		case strings.HasSuffix(r.Path, "/sys/wrapping/unwrap"):
			unwraps++
		case strings.HasSuffix(r.Path, "/sys/wrapping/lookup"):
			lookups++
		case strings.HasSuffix(r.Path, "/auth/approle/login"):
			logins++
		}
	}
	t.Logf("wrapped secret_id: %d lookup, %d unwrap, %d logins", lookups, unwraps, logins)
	if unwraps != 1 || lookups != 1 || logins < 2 {
		t.Errorf("%d lookups, %d unwraps and %d logins; want the token looked up and unwrapped once, and every login from memory", lookups, unwraps, logins)
	}
	if strings.Contains(d.Logs.String(), "renewal failed") {
		t.Error("a renewal failed while logging in again with the unwrapped secret_id")
	}

	// The same wrapping token again: used.
	expectWrapError := func(what string) {
		t.Helper()
		other := filepath.Join(t.TempDir(), "state")
		cfg := fmt.Sprintf("state_dir = %q\n", other) + vault(e.vault.Addr) + strings.ReplaceAll(e.cert("again", vaulttest.RoleEC), e.dir, t.TempDir())
		path := filepath.Join(t.TempDir(), "again.hcl")
		os.WriteFile(path, []byte(cfg), 0o600)
		out, errOut, code := once(t, path)
		if code == 0 || !strings.Contains(out, "was already unwrapped or has expired; provision a new one") {
			t.Errorf("%s: exit %d, want a clear error:\n%s", what, code, out)
		}
		if !regexp.MustCompile(`vault auth cannot be prepared.*alert=vault_auth_broken`).MatchString(errOut) {
			t.Errorf("%s: no alert at start:\n%s", what, errOut)
		}
	}
	expectWrapError("used wrapping token")

	// A fresh wrapping token left to expire.
	short, err := vaulttest.WrapSecretID(t.Context(), root, "wrapped", "another-s3cret-id", "1s")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(wrapFile, []byte(short), 0o600)
	time.Sleep(2500 * time.Millisecond)
	expectWrapError("expired wrapping token")
}

// TestCertAuthRenewsItself: a host is bootstrapped once with a client
// certificate (issued here by root, valid 90s) and nothing else: no
// AppRole, no token. certkeeper logs in with it, renews it as the
// certificate "vault-identity" it manages, and keeps logging in (tokens
// live at most 30s) with whichever certificate is current, long after the
// bootstrap certificate expired, without a restart.
func TestCertAuthRenewsItself(t *testing.T) {
	t.Parallel()
	v := vaulttest.New(t, vaulttest.Options{TLS: true})
	pk := v.PKI(t)
	const hostCN = "host1.example.internal"
	if err := vaulttest.EnableCertAuth(t.Context(), v.Client, vaulttest.CertAuthOptions{
		Name: "hosts", CAPEM: pk.RootPEM, AllowedCommonNames: []string{hostCN},
		TokenTTL: "20s", TokenMaxTTL: "30s",
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	idCrt, idKey, idChain := filepath.Join(dir, "id.crt"), filepath.Join(dir, "id.key"), filepath.Join(dir, "id.chain.pem")
	boot, err := v.Client.Logical().Write(vaulttest.IntMount+"/issue/"+vaulttest.RoleEC, map[string]any{"common_name": hostCN, "ttl": "60s"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(idCrt, []byte(boot.Data["certificate"].(string)), 0o644)
	os.WriteFile(idKey, []byte(boot.Data["private_key"].(string)), 0o600)
	os.WriteFile(idChain, []byte(boot.Data["issuing_ca"].(string)), 0o644)
	bootSerial := certSerial(idCrt)
	bootExpiry := cktest.ReadLeaf(t, idCrt).NotAfter

	cfg := fmt.Sprintf(`
state_dir = %[1]q
vault {
  address = %[2]q
  ca_cert = %[3]q
  auth "cert" {
    certificate = "vault-identity"
    name        = "hosts"
  }
}
certificate "vault-identity" {
  mount          = "pki_int"
  role           = "ec"
  common_name    = %[4]q
  ttl            = "90s"
  renew_fraction = 0.5
  renew_jitter   = 0.05
  cert_file      = %[5]q
  key_file       = %[6]q
  chain_file     = %[7]q
}
certificate "web" {
  mount       = "pki_int"
  role        = "ec"
  common_name = "web.example.internal"
  ttl         = "90s"
  cert_file   = "%[8]s/web.crt"
  key_file    = "%[8]s/web.key"
}
`, filepath.Join(dir, "state"), v.TLSAddr, v.TLSCA.CertFile, hostCN, idCrt, idKey, idChain, dir)
	path := filepath.Join(dir, "certkeeper.hcl")
	os.WriteFile(path, []byte(cfg), 0o600)
	d := startDaemon(t, path)

	// Past the bootstrap certificate's expiry, with at least two renewals
	// of the identity and a login after the expiry.
	d.WaitLog(`certificate issued and written.*cert=vault-identity`, 3, 4*time.Minute)
	for time.Now().Before(bootExpiry.Add(5 * time.Second)) {
		time.Sleep(time.Second)
	}
	mark := d.mark()
	d.waitLogAfter(mark, `logged in to vault`, 1, 2*time.Minute)
	d.waitLogAfter(mark, `certificate issued and written.*cert=web`, 1, 2*time.Minute)
	d.Stop()

	logs := d.Logs.String()
	identities := len(regexp.MustCompile(`certificate issued and written.*cert=vault-identity`).FindAllString(logs, -1))
	logins := regexp.MustCompile(`logged in to vault" accessor=(\S+)`).FindAllStringSubmatch(logs, -1)
	t.Logf("cert auth: %d identity certificates issued, %d logins, bootstrap certificate expired at %s", identities, len(logins), bootExpiry.Format(time.TimeOnly))
	if strings.Contains(logs, "renewal failed") {
		t.Error("a renewal failed")
	}
	// The last login came after the bootstrap certificate expired, so it
	// used a certificate certkeeper renewed; Vault recorded which.
	last := logins[len(logins)-1][1]
	sec, err := v.Client.Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": last})
	if err != nil {
		t.Fatalf("looking up the last login: %v", err)
	}
	meta, _ := sec.Data["meta"].(map[string]any)
	if meta == nil || meta["serial_number"] == "" || meta["serial_number"] == bootSerial {
		t.Errorf("the last login used serial %v, the bootstrap certificate is %s: want a renewed one", meta["serial_number"], bootSerial)
	}
	if meta["common_name"] != hostCN {
		t.Errorf("last login's certificate is for %v", meta["common_name"])
	}
	if certSerial(idCrt) == bootSerial {
		t.Error("the identity on disk is still the bootstrap certificate")
	}
}

// TestPolicyDenialBacksOff: the AppRole's policy does not reach the mount
// the certificate asks. Every attempt gets the same 403; certkeeper logs it
// as an alert saying the policy must change, logs in only once, and backs
// off between attempts.
func TestPolicyDenialBacksOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	roleID, secretID := e.vault.AppRole(t, vaulttest.AppRoleOptions{Name: "narrow", Mounts: []string{vaulttest.RootMount}})
	e.roleIDFile, e.secretIDFile = filepath.Join(e.dir, "narrow-role-id"), filepath.Join(e.dir, "narrow-secret-id")
	os.WriteFile(e.roleIDFile, []byte(roleID), 0o600)
	os.WriteFile(e.secretIDFile, []byte(secretID), 0o600)
	p := e.proxy()
	cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", p.Addr)), e.cert("web", vaulttest.RoleEC))
	d := startDaemon(t, cfg)
	d.WaitLog(`alert=vault_permission_denied`, 4, 2*time.Minute)
	d.Stop()
	lines := linesContaining(d.Logs.String(), "alert=vault_permission_denied")
	if !strings.Contains(lines[0], "vault policy denies it and logging in again does not help") || !strings.Contains(lines[0], "pki_int/sign/ec") {
		t.Errorf("alert line does not say what to fix:\n%s", lines[0])
	}
	logins := 0
	for _, r := range p.Records() {
		if strings.HasSuffix(r.Path, "/login") {
			logins++
		}
	}
	intervals := attemptIntervals(lines)
	t.Logf("policy denial: %d attempts, %d login(s), intervals %v", len(lines), logins, intervals)
	if logins != 1 {
		t.Errorf("%d logins for %d denied attempts: re-login does not cure a policy", logins, len(lines))
	}
	for _, g := range intervals {
		if g < 900*time.Millisecond {
			t.Errorf("attempt %v after a denial: no backoff", g)
		}
	}
	out, _, code := once(t, cfg)
	if code == 0 || !strings.Contains(out, "web: FAILED: ") || !strings.Contains(out, "permission denied by vault policy") {
		t.Errorf("once: exit %d, want a clear policy failure:\n%s", code, out)
	}
}
