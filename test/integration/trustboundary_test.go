//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestValidateRunsNothing: validate reads the config and nothing else
// happens, even as root and with a template that calls sockaddr (which ran
// `ip route` from $PATH) and services whose commands it must not run.
// strace follows every thread and child: the only program started is
// certkeeper itself.
func TestValidateRunsNothing(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not installed (Debian package strace)")
	}
	dir := t.TempDir()
	// A fake ip first in $PATH: if anything runs it, strace sees it.
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "ip"), []byte("#!/bin/sh\necho 'default via 192.0.2.1 dev lo'\n"), 0o755)
	base := fmt.Sprintf(`
vault {
  address = "https://vault.example.internal:8200"
}
service "web" {
  check  = ["/bin/sh", "-c", "touch %[1]s/checked"]
  reload = ["/bin/sh", "-c", "touch %[1]s/reloaded"]
}
trust_bundle "clients" {
  mount   = "pki_int"
  ca_file = "%[1]s/clients.pem"
  notify  = ["web"]
}
certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "%[1]s/web.crt"
  key_file    = "%[1]s/web.key"
  notify      = ["web"]
  template {
    stock       = "haproxy"
    destination = "%[1]s/web.pem"
  }
  template {
    contents    = "{{ with certificate }}{{ .NotAfter.Format \"2006\" }} {{ timestamp }} {{ .Cert | sha256Hex }}{{ end }}"
    destination = "%[1]s/web.txt"
  }
  %%s
}
`, dir)
	for _, tt := range []struct {
		name, extra string
		code        int
	}{
		{"valid", "", 0},
		{"sockaddr", `template {
    contents    = "{{ sockaddr \"GetDefaultInterfaces | attr \\\"name\\\"\" }}"
    destination = "` + dir + `/web.addr"
  }`, 1},
	} {
		cfg := filepath.Join(dir, tt.name+".hcl")
		os.WriteFile(cfg, []byte(fmt.Sprintf(base, tt.extra)), 0o600)
		trace := filepath.Join(dir, tt.name+".strace")
		env := cktest.Env("PATH=" + bin + ":" + os.Getenv("PATH"))
		stdout, stderr, code := cktest.Run(t, "strace", env, "-f", "-qq", "-e", "trace=execve", "-o", trace, certkeeperBin, "validate", "-config", cfg)
		if code != tt.code {
			t.Errorf("%s: validate exited %d, want %d:\n%s%s", tt.name, code, tt.code, stdout, stderr)
		}
		if tt.name == "sockaddr" && !strings.Contains(stderr, `function "sockaddr" is disabled`) {
			t.Errorf("sockaddr: validate does not say why it refuses:\n%s", stderr)
		}
		data, err := os.ReadFile(trace)
		if err != nil {
			t.Fatal(err)
		}
		var execs []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, "execve(") && !strings.Contains(l, "execve(\""+certkeeperBin+"\"") {
				execs = append(execs, l)
			}
		}
		if len(execs) > 0 {
			t.Errorf("%s: validate ran programs:\n%s", tt.name, strings.Join(execs, "\n"))
		}
		for _, f := range []string{"checked", "reloaded", "web.crt", "web.pem", "clients.pem"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				t.Errorf("%s: validate made %s", tt.name, f)
			}
		}
	}
}

// TestChildrenGetNoSecrets: the daemon logs in with VAULT_TOKEN from its
// environment (token auth, the vault CLI's way) and has another secret in
// it. A check command and a reload command that print their environment
// and fail get neither, and neither reaches the daemon's logs, `status`,
// `status -json` or services.json, where the commands' output is shown.
func TestChildrenGetNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	tok, err := e.vault.Client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"root"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	token := tok.Auth.ClientToken
	const apiKey = "deploy-api-key-that-children-must-not-see"
	checkEnv, reloadEnv := filepath.Join(e.dir, "check.env"), filepath.Join(e.dir, "reload.env")
	cfg := filepath.Join(e.dir, "certkeeper.hcl")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
state_dir = "%[1]s/state"
vault {
  address = %[2]q
}
telemetry {
  listen = ""
}
service "checked" {
  check  = ["/bin/sh", "-c", "env > %[3]s; echo check sees:; env; exit 1"]
  reload = ["/bin/true"]
  settle = "100ms"
}
service "reloaded" {
  reload = ["/bin/sh", "-c", "env > %[4]s; echo reload sees:; env; exit 3"]
  settle = "100ms"
}
%[5]s
%[6]s
`, e.dir, e.vault.Addr, checkEnv, reloadEnv,
		e.cert("web", vaulttest.RoleEC, `notify = ["checked"]`),
		e.cert("api", vaulttest.RoleEC, `notify = ["reloaded"]`))), 0o600)

	d := startDaemon(t, cfg, "VAULT_TOKEN="+token, "DEPLOY_API_KEY="+apiKey, "LC_TIME=C.UTF-8")
	d.WaitLog(`check failed; rolled back`, 1, time.Minute)
	d.WaitLog(`reload failed; will retry.*service=reloaded`, 1, time.Minute)

	for what, path := range map[string]string{"check": checkEnv, "reload": reloadEnv} {
		env, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("the %s command did not run: %v", what, err)
		}
		for _, bad := range []string{"VAULT_", token, apiKey, "DEPLOY_API_KEY"} {
			if strings.Contains(string(env), bad) {
				t.Errorf("the %s command's environment has %.16s...:\n%s", what, bad, env)
			}
		}
		if !strings.Contains(string(env), "PATH=") || !strings.Contains(string(env), "LC_TIME=C.UTF-8") {
			t.Errorf("the %s command's environment lacks PATH or the locale:\n%s", what, env)
		}
	}

	status, _, _ := cktest.Run(t, certkeeperBin, cleanEnv(), "status", "-config", cfg)
	statusJSON, _, _ := cktest.Run(t, certkeeperBin, cleanEnv(), "status", "-json", "-config", cfg)
	servicesJSON, err := os.ReadFile(filepath.Join(e.dir, "state", "services", "status.json"))
	if err != nil {
		t.Fatal(err)
	}
	d.Stop()
	for what, text := range map[string]string{"logs": d.Logs.String(), "status": status, "status -json": statusJSON, "services.json": string(servicesJSON)} {
		for _, bad := range []string{token, apiKey} {
			if strings.Contains(text, bad) {
				t.Errorf("%s carry a secret (%.12s...)", what, bad)
			}
		}
	}
	// The commands' output is there, so the check above means something.
	for what, text := range map[string]string{"logs": d.Logs.String(), "services.json": string(servicesJSON)} {
		if !strings.Contains(text, "check sees: ") || !strings.Contains(text, "reload sees: ") || !strings.Contains(text, "PATH=") {
			t.Errorf("%s lack the commands' output:\n%s", what, text)
		}
	}
}

// TestTyposInMountSaySo: against a real Vault, a mistyped mount in a
// certificate block and in a trust bundle both get Vault's 403 (the policy
// does not reach a mount that does not exist). The failure says that the
// mount or role may not exist, not only that the policy must change, and
// Vault's multi-error text ("1 error occurred:\n\t* permission denied")
// is shown as one clean phrase in once's output, the logs and status.
func TestTyposInMountSaySo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	typo := strings.Replace(e.cert("web", vaulttest.RoleEC), `mount          = "pki_int"`, `mount          = "pki_server"`, 1)
	cfg := e.writeConfig(typo, fmt.Sprintf(`
trust_bundle "clients" {
  mount   = "pki_clients"
  ca_file = "%s/clients-ca.pem"
}
`, e.dir))
	out, errOut, code := once(t, cfg)
	if code == 0 {
		t.Fatalf("once succeeded with a mount that does not exist:\n%s", out)
	}
	st, _, _ := cktest.Run(t, certkeeperBin, cleanEnv(), "status", "-config", cfg)
	all := out + errOut + st
	for _, want := range []string{
		`web: FAILED: pki_server/sign/ec: permission denied by vault policy, or no such mount or role: a valid token may not use pki_server/sign/ec`,
		`(vault answered 403 on pki_clients/issuers: permission denied)`,
		`check that mount "pki_server" and its role "ec" exist`,
		`(vault answered 403 on pki_server/sign/ec: permission denied)`,
		`check that mount "pki_clients" exists`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("output lacks %q:\n%s", want, all)
		}
	}
	for _, bad := range []string{"error occurred", `\t*`, "\t*", "; ;", ":;"} {
		if strings.Contains(all, bad) {
			t.Errorf("output holds Vault's raw multi-error text (%q):\n%s", bad, all)
		}
	}
	// A bundle that is refused does not log in again at every retry.
	if n := strings.Count(errOut, "logged in to vault"); n > 2 {
		t.Errorf("%d logins in one once for two refused paths:\n%s", n, errOut)
	}
}

// TestTrustBundleOnlyHost: a host that only verifies clients (its server
// certificate comes from elsewhere) has trust bundles and no certificate.
// validate, once and run all work on such a config against the real
// Vault, and the bundle's CA and CRL files are written by each.
func TestTrustBundleOnlyHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	ca, crl := filepath.Join(e.dir, "clients-ca.pem"), filepath.Join(e.dir, "clients.crl.pem")
	cfg := e.writeConfig(fmt.Sprintf(`
trust_bundle "clients" {
  mounts      = ["pki_int", "pki"]
  ca_file     = %q
  crl_file    = %q
  crl_refresh = "2s"
}
`, ca, crl))
	out, errOut, code := cktest.Run(t, certkeeperBin, cleanEnv(), "validate", "-config", cfg)
	if code != 0 || !strings.Contains(out, "ok (0 certificates, 1 trust bundles)") {
		t.Fatalf("validate exited %d:\n%s%s", code, out, errOut)
	}

	out, errOut, code = once(t, cfg)
	if code != 0 || !strings.Contains(out, "trust_bundle clients: written cas=2 crls=2") {
		t.Fatalf("once exited %d:\n%s\n%s", code, out, errOut)
	}
	if n := countPEM(t, ca); n != 2 {
		t.Errorf("once: CA file holds %d certificates, want 2", n)
	}
	crlPEM, err := os.ReadFile(crl)
	if err != nil || strings.Count(string(crlPEM), "-----BEGIN X509 CRL-----") != 2 {
		t.Errorf("once: CRL file holds %d CRLs, want 2 (%v)", strings.Count(string(crlPEM), "-----BEGIN X509 CRL-----"), err)
	}

	// The daemon writes them too: from nothing, and again after a CRL
	// changes in Vault (a revocation: a rebuild with the same entries,
	// as crl/rotate alone makes, is not written until the CRL on disk is
	// two thirds through its life, so servers are not reloaded for it;
	// see trust's TestSameRevocationsDoNotReload).
	os.Remove(ca)
	os.Remove(crl)
	d := startDaemon(t, cfg)
	cktest.WaitFor(t, "the daemon to write the bundle", time.Minute, func() bool {
		_, errA := os.Stat(ca)
		_, errB := os.Stat(crl)
		return errA == nil && errB == nil
	})
	if n := countPEM(t, ca); n != 2 {
		t.Errorf("run: CA file holds %d certificates, want 2", n)
	}
	before, _ := os.ReadFile(crl)
	issued, err := e.vault.Client.Logical().Write(vaulttest.IntMount+"/issue/"+vaulttest.RoleEC, map[string]any{"common_name": "revoked." + vaulttest.Domain})
	if err != nil {
		t.Fatal(err)
	}
	e.vault.Revoke(t, vaulttest.IntMount, issued.Data["serial_number"].(string))
	cktest.WaitFor(t, "the daemon to write the CRL with the revocation", time.Minute, func() bool {
		now, _ := os.ReadFile(crl)
		return len(now) > 0 && string(now) != string(before)
	})
	st, _, code := cktest.Run(t, certkeeperBin, cleanEnv(), "status", "-config", cfg)
	if code != 0 || !strings.Contains(st, "no certificate blocks: this host keeps trust bundles only") || !regexp.MustCompile(`(?m)^clients\s+ok\s`).MatchString(st) {
		t.Errorf("status exited %d:\n%s", code, st)
	}
	if c := d.Stop(); c != 0 {
		t.Errorf("run exited %d", c)
	}
}

// TestFailedCheckOnFirstIssueIsNotRestored: a service's check fails on a
// certificate's very first issue, so the rollback removes its files. They
// stay removed until the services' own retry writes them again and checks
// them: the agent, told of the deletions by its output watcher, does not
// restore them behind the services' back (which it did at every rollback,
// unchecked and without the services' backoff). When the check passes,
// the retry writes them and the service is reloaded.
func TestFailedCheckOnFirstIssueIsNotRestored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	broken, checks := filepath.Join(e.dir, "broken"), filepath.Join(e.dir, "checks")
	os.WriteFile(broken, nil, 0o644)
	cfg := e.writeConfig(fmt.Sprintf(`
service "checked" {
  check  = ["/bin/sh", "-c", "echo check >> %s; test ! -e %s"]
  reload = ["/bin/true"]
  settle = "100ms"
}
`, checks, broken), e.cert("web", vaulttest.RoleEC, `notify = ["checked"]`))
	d := startDaemon(t, cfg)
	d.WaitLog(`check failed; rolled back`, 2, time.Minute)
	key := filepath.Join(e.dir, "web.key")
	if _, err := os.Stat(key); err == nil {
		t.Error("the key is on disk while its check fails")
	}
	if n := d.Count(`certificate files restored`); n > 0 {
		t.Errorf("the agent restored rolled-back files %d times:\n%s", n, d.Logs.String())
	}
	ran, _ := os.ReadFile(checks)
	if n, failed := strings.Count(string(ran), "check"), d.Count(`check failed; rolled back`); n != failed {
		t.Errorf("the check ran %d times for %d failures: something else asked for checks", n, failed)
	}

	os.Remove(broken)
	d.WaitLog(`wrote the rolled-back files again to retry the check`, 1, time.Minute)
	d.WaitLog(`service reloaded" service=checked`, 1, time.Minute)
	if _, err := os.Stat(key); err != nil {
		t.Errorf("after the check passed: %v", err)
	}
	if n := d.Count(`certificate files restored`); n > 0 {
		t.Errorf("the agent restored files %d times", n)
	}
	if n := e.vault.CountCerts(t, vaulttest.IntMount); n != 1 {
		t.Errorf("Vault issued %d certificates, want 1", n)
	}
}
