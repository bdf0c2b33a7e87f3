//go:build integration

// Package integration runs the certkeeper binary, as users run it, against
// a real Vault server (test/vaulttest) and checks what lands on disk.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// certkeeperBin is built once per test run from the working tree, so the
// tests always exercise the code under test, never a stale binary.
var certkeeperBin string

func TestMain(m *testing.M) { cktest.Main(m, &certkeeperBin) }

// env is one Vault with a PKI and an AppRole, and a directory for a
// certkeeper config and its outputs.
type env struct {
	t            *testing.T
	vault        *vaulttest.Server
	pki          *vaulttest.PKI
	dir          string
	roleIDFile   string
	secretIDFile string
}

func newEnv(t *testing.T, opts vaulttest.Options) *env {
	t.Helper()
	v := vaulttest.New(t, opts)
	p := v.PKI(t)
	dir := t.TempDir()
	roleID, secretID := v.AppRole(t, vaulttest.AppRoleOptions{Name: "certkeeper"})
	rf, sf := vaulttest.WriteCreds(t, dir, roleID, secretID)
	return &env{t: t, vault: v, pki: p, dir: dir, roleIDFile: rf, secretIDFile: sf}
}

// cert is the HCL of one certificate block writing into the env's dir;
// extra lines are added inside the block.
func (e *env) cert(name, role string, extra ...string) string {
	return fmt.Sprintf(`
certificate %q {
  mount          = "pki_int"
  role           = %q
  common_name    = "%s.example.internal"
  alt_names      = ["%s.example.internal", "localhost"]
  ip_sans        = ["127.0.0.1"]
  cert_file      = "%s/%s.crt"
  key_file       = "%s/%s.key"
  chain_file     = "%s/%s.chain.pem"
  fullchain_file = "%s/%s.fullchain.pem"
  ca_file        = "%s/%s.ca.pem"
  %s
}
`, name, role, name, name, e.dir, name, e.dir, name, e.dir, name, e.dir, name, e.dir, name, strings.Join(extra, "\n  "))
}

// writeConfig writes a config with an AppRole vault block and the given
// certificate blocks, and returns its path.
func (e *env) writeConfig(certs ...string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, "certkeeper.hcl")
	if err := os.WriteFile(path, []byte(e.configText(certs...)), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// configText is the config writeConfig writes.
func (e *env) configText(blocks ...string) string {
	cfg := fmt.Sprintf(`
state_dir = "%s/state"

vault {
  address = %q
  auth "approle" {
    role_id_file   = %q
    secret_id_file = %q
  }
}
`, e.dir, e.vault.Addr, e.roleIDFile, e.secretIDFile) + strings.Join(blocks, "\n")
	if !strings.Contains(cfg, "telemetry {") {
		// Daemons of tests running side by side would all want the
		// default 127.0.0.1:9847; tests about telemetry bring their own.
		cfg += "\ntelemetry {\n  listen = \"\"\n}\n"
	}
	return cfg
}

// once runs `certkeeper once` and returns its stdout, stderr and exit code.
func once(t *testing.T, cfg string, extraEnv ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cktest.Run(t, certkeeperBin, cleanEnv(extraEnv...), "once", "-config", cfg, "-log-level", "debug")
}

// cleanEnv is the test's environment without VAULT_* variables, so a
// developer's shell cannot change what the tests see.
func cleanEnv(extra ...string) []string { return cktest.Env(extra...) }

// daemon is a running `certkeeper run`; the methods beyond cktest's are
// the fault suite's.
type daemon struct{ *cktest.Daemon }

func startDaemon(t *testing.T, cfg string, extraEnv ...string) *daemon {
	t.Helper()
	return &daemon{cktest.Start(t, cktest.Options{
		Bin:  certkeeperBin,
		Args: []string{"run", "-config", cfg, "-log-level", "debug"},
		Env:  cleanEnv(extraEnv...),
	})}
}

func countPEM(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "-----BEGIN CERTIFICATE-----")
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

// openssl runs openssl and fails the test with its output on error.
func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func fileSum(t *testing.T, paths ...string) string {
	t.Helper()
	var all []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return string(all)
}
