//go:build integration

// Package integration runs the certkeeper binary, as users run it, against
// a real Vault server (test/vaulttest) and checks what lands on disk.
package integration

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// certkeeperBin is built once per test run from the working tree, so the
// tests always exercise the code under test, never a stale binary.
var certkeeperBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "certkeeper-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	certkeeperBin = filepath.Join(dir, "certkeeper")
	build := exec.Command("go", "build", "-o", certkeeperBin, "github.com/certkeeper/certkeeper/cmd/certkeeper")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building certkeeper:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

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
	cmd := exec.Command(certkeeperBin, "once", "-config", cfg, "-log-level", "debug")
	cmd.Env = append(cleanEnv(), extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running certkeeper once: %v", err)
	}
	return out.String(), errb.String(), code
}

// cleanEnv is the test's environment without VAULT_* variables, so a
// developer's shell cannot change what the tests see.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}

// daemon is a running `certkeeper run`.
type daemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

func startDaemon(t *testing.T, cfg string, extraEnv ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, logs: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(certkeeperBin, "run", "-config", cfg, "-log-level", "debug")
	d.cmd.Env = append(cleanEnv(), extraEnv...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("certkeeper logs:\n%s", d.logs.String())
		}
	})
	return d
}

// stop sends SIGTERM and returns the exit code.
func (d *daemon) stop() int {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.t.Fatal("certkeeper did not exit within 30s of SIGTERM")
	}
	if ee, ok := d.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 0
}

// waitLog waits until the logs match re, at least n times.
func (d *daemon) waitLog(re string, n int, timeout time.Duration) {
	d.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if len(rx.FindAllStringIndex(d.logs.String(), -1)) >= n {
			return
		}
		select {
		case <-d.done:
			d.t.Fatalf("certkeeper exited while waiting for %q: %v", re, d.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	d.t.Fatalf("no %d log lines matching %q within %v", n, re, timeout)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// readCert parses the first certificate in a PEM file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
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
