//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// replaceConfig swaps the config for one with these certificates the way
// config management does: a new file renamed over the old one.
func (e *env) replaceConfig(cfg string, certs ...string) {
	e.t.Helper()
	text := e.configText(certs...)
	replaceFile(e.t, cfg, text)
}

func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestConfigEditAddsAndRemoves: a running agent follows config edits made
// by rename. An added certificate is issued; a removed one is no longer
// looked after (its deleted key stays deleted) while the others are; an
// edited template source rewrites its output without a new certificate.
func TestConfigEditAddsAndRemoves(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	tmpl := e.path("b.tmpl")
	os.WriteFile(tmpl, []byte("v1 {{ with certificate }}{{ .Cert }}{{ end }}"), 0o600)
	a := e.cert("a", vaulttest.RoleEC)
	b := e.cert("b", vaulttest.RoleEC, fmt.Sprintf(`template {
    source      = %q
    destination = %q
  }`, tmpl, e.path("b.out")))
	cfg := e.writeConfig(a)
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 30*time.Second)

	e.replaceConfig(cfg, a, b)
	d.WaitLog(`config reloaded.*trigger="file changed" added=b removed="" changed=""`, 1, 20*time.Second)
	d.WaitLog(`certificate issued and written.*cert=b`, 1, 30*time.Second)
	if !strings.HasPrefix(fileSum(t, e.path("b.out")), "v1 -----BEGIN CERTIFICATE-----") {
		t.Errorf("b's template output: %q", fileSum(t, e.path("b.out")))
	}
	issued := e.vault.CountCerts(t, "pki_int")

	// The template source is watched too: an edit re-renders, Vault is
	// not asked.
	replaceFile(t, tmpl, "v2 {{ with certificate }}{{ .Cert }}{{ end }}")
	d.WaitLog(`config reloaded.*changed=b`, 1, 20*time.Second)
	d.WaitLog(`config changed; rewrote the outputs from the certificate held" cert=b files=`+regexp.QuoteMeta(e.path("b.out")), 1, 20*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.HasPrefix(fileSum(t, e.path("b.out")), "v2 ") {
		if time.Now().After(deadline) {
			t.Fatalf("template output not re-rendered: %q", fileSum(t, e.path("b.out")))
		}
		time.Sleep(100 * time.Millisecond)
	}

	e.replaceConfig(cfg, b)
	d.WaitLog(`config reloaded.*added="" removed=a changed=""`, 1, 20*time.Second)
	// a is no longer looked after; b still is. Delete a key of each: b's
	// comes back, a's does not.
	os.Remove(e.path("a.key"))
	os.Remove(e.path("b.key"))
	d.WaitLog(`restored them" cert=b`, 1, 20*time.Second)
	if exists(e.path("a.key")) {
		t.Error("a removed certificate's key was restored: it is still looked after")
	}
	if !exists(e.path("a.crt")) {
		t.Error("removing a certificate from the config deleted its files")
	}
	if got := e.vault.CountCerts(t, "pki_int"); got != issued {
		t.Errorf("the template edit and the removal issued %d certificates, want 0", got-issued)
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestInvalidConfigEditRejected: an invalid config (a syntax error, then a
// template calling Vault by itself) is refused with the reason in the
// log, by file watch and by SIGHUP alike, and the running config keeps
// working: a deleted key is still restored.
func TestInvalidConfigEditRejected(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	web := e.cert("web", vaulttest.RoleEC)
	cfg := e.writeConfig(web)
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 30*time.Second)

	replaceFile(t, cfg, fileSum(t, cfg)+"\ncertificate \"broken\" {\n")
	d.WaitLog(`config change rejected; the running config stays in force.*trigger="file changed" error=".*Unclosed configuration block`, 1, 20*time.Second)

	bad := e.cert("evil", vaulttest.RoleEC, fmt.Sprintf(`template {
    contents    = "{{ secret \"pki_int/issue/ec\" }}"
    destination = %q
  }`, e.path("evil.pem")))
	e.replaceConfig(cfg, web, bad)
	d.WaitLog(`config change rejected.*function \\"secret\\" is disabled`, 1, 20*time.Second)

	d.Cmd.Process.Signal(syscall.SIGHUP)
	d.WaitLog(`config change rejected.*trigger=SIGHUP`, 1, 20*time.Second)

	os.Remove(e.path("web.key"))
	d.WaitLog(`restored them" cert=web files=`+regexp.QuoteMeta(e.path("web.key")), 1, 20*time.Second)
	if exists(e.path("evil.pem")) {
		t.Error("a rejected config was put in force")
	}
	if strings.Contains(d.Logs.String(), "added=evil") {
		t.Error("a rejected config was put in force")
	}

	// Fixed in place (a plain write, not a rename), then SIGHUP with no
	// change: both are seen.
	e.writeConfig(web, e.cert("api", vaulttest.RoleEC))
	d.WaitLog(`config reloaded.*trigger="file changed" added=api`, 1, 20*time.Second)
	d.WaitLog(`certificate issued and written.*cert=api`, 1, 30*time.Second)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	d.WaitLog(`config unchanged.*trigger=SIGHUP`, 1, 20*time.Second)
	if code := d.Stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestVaultBlockChangeRebuildsClient: a reload that changes the vault
// block builds a new client (which logs in afresh) and the certificates
// added in the same edit are issued through it; a state_dir change is
// refused with a warning, the running value stays.
func TestVaultBlockChangeRebuildsClient(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC))
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 30*time.Second)
	d.WaitLog(`logged in to vault`, 1, time.Second)

	text := fmt.Sprintf(`
state_dir = "%s/elsewhere"

vault {
  address = %q
  timeout = "20s"
  auth "approle" {
    role_id_file   = %q
    secret_id_file = %q
  }
}
`, e.dir, e.vault.Addr, e.roleIDFile, e.secretIDFile) + e.cert("web", vaulttest.RoleEC) + e.cert("api", vaulttest.RoleEC)
	replaceFile(t, cfg, text)
	d.WaitLog(`config reloaded.*added=api.*vault_client_rebuilt=true`, 1, 20*time.Second)
	d.WaitLog(`cannot change while certkeeper runs.*setting=state_dir`, 1, time.Second)
	d.WaitLog(`certificate issued and written.*cert=api`, 1, 30*time.Second)
	d.WaitLog(`logged in to vault`, 2, 5*time.Second)
	if exists(e.path("elsewhere")) {
		t.Error("state_dir moved under a running agent")
	}
	if !exists(e.path("state/certs/api.json")) {
		t.Error("the added certificate's record is not in the running state_dir")
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
}
