//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/rsa"
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

// TestOnceWritesValidSets covers the four ways a certificate is made: key on
// the host (sign) or from Vault (issue), EC or RSA. Each set must verify
// with openssl against the CA file, the key must match, and modes must be
// the secure defaults.
func TestOnceWritesValidSets(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(
		e.cert("sign-ec", vaulttest.RoleEC),
		e.cert("sign-rsa", vaulttest.RoleRSA, `key_type = "rsa"`, `key_bits = 2048`),
		e.cert("issue-ec", vaulttest.RoleEC, `issue_mode = "issue"`),
		e.cert("issue-rsa", vaulttest.RoleRSA, `issue_mode = "issue"`, `key_type = "rsa"`),
	)
	stdout, stderr, code := once(t, cfg)
	if code != 0 {
		t.Fatalf("once exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, name := range []string{"sign-ec", "sign-rsa", "issue-ec", "issue-rsa"} {
		t.Run(name, func(t *testing.T) {
			if !regexp.MustCompile(`(?m)^` + name + `: issued serial=`).MatchString(stdout) {
				t.Errorf("no 'issued' summary line for %s in:\n%s", name, stdout)
			}
			p := func(suffix string) string { return filepath.Join(e.dir, name+suffix) }
			// The served chain verifies against the CA file, the way a
			// client holding the root would check it.
			openssl(t, "verify", "-CAfile", p(".ca.pem"), "-untrusted", p(".chain.pem"), p(".crt"))
			out := openssl(t, "verify", "-CAfile", p(".ca.pem"), p(".fullchain.pem"))
			if !strings.Contains(out, "OK") {
				t.Errorf("fullchain does not verify: %s", out)
			}
			// Key and certificate are a pair.
			certPub := openssl(t, "x509", "-in", p(".crt"), "-noout", "-pubkey")
			keyPub := openssl(t, "pkey", "-in", p(".key"), "-pubout")
			if certPub != keyPub {
				t.Errorf("key does not match certificate")
			}
			leaf := cktest.ReadLeaf(t, p(".crt"))
			switch {
			case strings.HasSuffix(name, "-ec"):
				if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
					t.Errorf("want an EC key, got %T", leaf.PublicKey)
				}
			case strings.HasSuffix(name, "-rsa"):
				if _, ok := leaf.PublicKey.(*rsa.PublicKey); !ok {
					t.Errorf("want an RSA key, got %T", leaf.PublicKey)
				}
			}
			if got := countPEM(t, p(".chain.pem")); got != 1 {
				t.Errorf("chain holds %d certificates, want 1 (the intermediate)", got)
			}
			if got := countPEM(t, p(".ca.pem")); got != 2 {
				t.Errorf("ca file holds %d certificates, want 2 (intermediate and root)", got)
			}
			if got := mode(t, p(".key")); got != 0o600 {
				t.Errorf("key mode %o, want 600", got)
			}
			if got := mode(t, p(".crt")); got != 0o644 {
				t.Errorf("cert mode %o, want 644", got)
			}
			want := []string{name + ".example.internal", "localhost"}
			if !sameSet(leaf.DNSNames, want) {
				t.Errorf("DNS names %v, want %v", leaf.DNSNames, want)
			}
		})
	}
}

// TestRestartIssuesNothing: a second `once` with valid files on disk must
// not ask Vault for anything, proven by counting certificates Vault stored.
func TestRestartIssuesNothing(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC), e.cert("api", vaulttest.RoleAny))
	if out, errOut, code := once(t, cfg); code != 0 {
		t.Fatalf("first once exited %d: %s %s", code, out, errOut)
	}
	before := e.vault.CountCerts(t, "pki_int")
	files := fileSum(t, filepath.Join(e.dir, "web.key"), filepath.Join(e.dir, "web.crt"))

	out, errOut, code := once(t, cfg)
	if code != 0 {
		t.Fatalf("second once exited %d: %s %s", code, out, errOut)
	}
	if after := e.vault.CountCerts(t, "pki_int"); after != before {
		t.Errorf("second once issued %d certificates, want 0", after-before)
	}
	if !strings.Contains(out, "web: ok serial=") || !strings.Contains(out, "api: ok serial=") {
		t.Errorf("summary does not say both are fine:\n%s", out)
	}
	if strings.Contains(errOut, "logged in to vault") {
		t.Errorf("second once logged in to Vault although nothing was due:\n%s", errOut)
	}
	if got := fileSum(t, filepath.Join(e.dir, "web.key"), filepath.Join(e.dir, "web.crt")); got != files {
		t.Error("files changed on a no-op pass")
	}
}

// TestConfigChangeReissues: adding a SAN makes the certificate on disk
// stale; the next pass gets one with the new name. Changing the key type
// does the same.
func TestConfigChangeReissues(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleAny))
	if out, errOut, code := once(t, cfg); code != 0 {
		t.Fatalf("once exited %d: %s %s", code, out, errOut)
	}
	before := e.vault.CountCerts(t, "pki_int")

	cfg = e.writeConfig(strings.Replace(e.cert("web", vaulttest.RoleAny), `"localhost"]`, `"localhost", "www.example.internal"]`, 1))
	out, errOut, code := once(t, cfg)
	if code != 0 {
		t.Fatalf("once after adding a SAN exited %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(out, "web: issued") || !strings.Contains(out, "www.example.internal") {
		t.Errorf("summary does not show a re-issue for the new SAN:\n%s", out)
	}
	if got := e.vault.CountCerts(t, "pki_int"); got != before+1 {
		t.Errorf("Vault issued %d certificates, want 1", got-before)
	}
	leaf := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt"))
	if !sameSet(leaf.DNSNames, []string{"web.example.internal", "localhost", "www.example.internal"}) {
		t.Errorf("DNS names after re-issue: %v", leaf.DNSNames)
	}

	cfg = e.writeConfig(strings.Replace(e.cert("web", vaulttest.RoleAny, `key_type = "rsa"`), `"localhost"]`, `"localhost", "www.example.internal"]`, 1))
	if out, _, code := once(t, cfg); code != 0 || !strings.Contains(out, "web: issued") {
		t.Fatalf("changing key_type did not re-issue (exit %d):\n%s", code, out)
	}
	if _, ok := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt")).PublicKey.(*rsa.PublicKey); !ok {
		t.Error("key type change did not give an RSA certificate")
	}
}

// TestOnceFailsClearly: a role that refuses the name makes `once` exit
// non-zero with a summary line saying why, and writes nothing.
func TestOnceFailsClearly(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	bad := strings.ReplaceAll(e.cert("evil", vaulttest.RoleEC), "evil.example.internal", "evil.example.com")
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC), bad)
	out, _, code := once(t, cfg)
	if code == 0 {
		t.Fatalf("once exited 0 although a certificate failed:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^evil: FAILED: .*pki_int/sign/ec`).MatchString(out) {
		t.Errorf("no clear failure line for evil:\n%s", out)
	}
	if !strings.Contains(out, "web: issued") {
		t.Errorf("one failing certificate stopped the others:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "evil.crt")); err == nil {
		t.Error("a failed certificate left a file behind")
	}
}

// TestRunRenewsShortLivedCertificate: `run` renews a certificate with a
// lifetime of about 1.5 minutes before it expires, and writes the new set
// atomically (key and certificate always a pair).
func TestRunRenewsShortLivedCertificate(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("short", vaulttest.RoleEC, `ttl = "1m"`))
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=short`, 1, 30*time.Second)
	first := cktest.ReadLeaf(t, filepath.Join(e.dir, "short.crt"))

	// Vault backdates NotBefore by 30s, so the life is 90s and renewal is
	// due 50-60s after NotBefore: within about 30s of issuance.
	d.WaitLog(`certificate issued and written.*cert=short`, 2, 90*time.Second)
	second := cktest.ReadLeaf(t, filepath.Join(e.dir, "short.crt"))
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("log says renewed but the certificate on disk is the same")
	}
	if !time.Now().Before(first.NotAfter) {
		t.Errorf("renewed only after the old certificate expired (%v)", first.NotAfter)
	}
	openssl(t, "verify", "-CAfile", filepath.Join(e.dir, "short.ca.pem"), filepath.Join(e.dir, "short.fullchain.pem"))
	if code := d.Stop(); code != 0 {
		t.Errorf("SIGTERM exit code %d, want 0", code)
	}
}

// TestVaultOutage: Vault stops while `run` needs it. The files on disk stay
// exactly as they were, the agent retries with backoff (not a tight loop),
// and renews as soon as Vault is back.
func TestVaultOutage(t *testing.T) {
	e := newEnv(t, vaulttest.Options{Persistent: true})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC, `ttl = "2m"`, `renew_fraction = 0.4`, `renew_jitter = 0.05`))
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web`, 1, 30*time.Second)
	paths := []string{filepath.Join(e.dir, "web.key"), filepath.Join(e.dir, "web.crt"), filepath.Join(e.dir, "web.fullchain.pem")}
	before := fileSum(t, paths...)

	if err := e.vault.Stop(); err != nil {
		t.Fatal(err)
	}
	// Renewal falls due 22-30s after issuance: 40% (less up to 5% jitter)
	// of a 150s life that Vault backdated by 30s.
	d.WaitLog(`renewal failed; keeping the files on disk.*cert=web`, 3, 90*time.Second)
	if got := fileSum(t, paths...); got != before {
		t.Fatal("files changed while Vault was down")
	}
	failures := strings.Count(d.Logs.String(), "renewal failed")
	if failures > 12 {
		t.Errorf("%d failed attempts while Vault was down for under a minute: backoff is not working", failures)
	}

	if err := e.vault.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	d.WaitLog(`certificate issued and written.*cert=web`, 2, 90*time.Second)
	if got := fileSum(t, paths...); got == before {
		t.Error("log says renewed but files are unchanged")
	}
	openssl(t, "verify", "-CAfile", filepath.Join(e.dir, "web.ca.pem"), filepath.Join(e.dir, "web.fullchain.pem"))
	if code := d.Stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// TestReloginAfterRevokedToken: the agent's token is revoked behind its
// back; the next renewal gets a 403, logs in again with its AppRole, and
// succeeds.
func TestReloginAfterRevokedToken(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC, `ttl = "1m"`))
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web`, 1, 30*time.Second)

	m := regexp.MustCompile(`logged in to vault" accessor=(\S+)`).FindStringSubmatch(d.Logs.String())
	if m == nil {
		t.Fatalf("login line with accessor not found")
	}
	if _, err := e.vault.Client.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": m[1]}); err != nil {
		t.Fatal(err)
	}
	d.WaitLog(`vault refused the token, logging in again`, 1, 90*time.Second)
	d.WaitLog(`certificate issued and written.*cert=web`, 2, 30*time.Second)
	d.WaitLog(`logged in to vault`, 2, time.Second)
	if logs := d.Logs.String(); strings.Contains(logs, "renewal failed") {
		t.Errorf("a revoked token caused a failed renewal instead of a transparent re-login")
	}
	d.Stop()
}

// TestNoSecretsInLogs: a full lifecycle at debug level never prints the
// secret_id, a token, or private key material.
func TestNoSecretsInLogs(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC, `ttl = "1m"`), e.cert("iss", vaulttest.RoleEC, `issue_mode = "issue"`, `ttl = "1m"`))
	agentTokens := e.auditTokens()
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web`, 2, 90*time.Second)
	d.Stop()
	logs := d.Logs.String()
	secretID, _ := os.ReadFile(e.secretIDFile)
	forbidden := map[string]string{
		"secret_id":   strings.TrimSpace(string(secretID)),
		"private key": "PRIVATE KEY",
	}
	// The agent's own tokens, from Vault's audit log (the dev root token
	// is one the agent never holds).
	tokens := agentTokens()
	if len(tokens) == 0 {
		t.Fatal("the audit log holds no login token: the agent's token cannot be looked for")
	}
	for i, tok := range tokens {
		forbidden[fmt.Sprintf("token of login %d", i+1)] = tok
	}
	for what, s := range forbidden {
		if s == "" {
			t.Fatalf("the %s to look for is empty", what)
		}
		if strings.Contains(logs, s) {
			t.Errorf("logs contain the %s", what)
		}
	}
	for _, name := range []string{"web", "iss"} {
		keyPEM, _ := os.ReadFile(filepath.Join(e.dir, name+".key"))
		for _, line := range strings.Split(string(keyPEM), "\n") {
			if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(logs, line) {
				t.Errorf("logs contain a line of %s's private key", name)
			}
		}
	}
	if regexp.MustCompile(`hvs\.[A-Za-z0-9_-]{20,}`).MatchString(logs) {
		t.Error("logs contain a Vault service token")
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}
