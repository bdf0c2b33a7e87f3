//go:build integration

// Package e2e runs certkeeper, as users run it, with real Vault, real nginx
// and real Apache on loopback ports, on the example configs in examples/.
// Everything each test makes (configs, certificates, pid files, logs)
// lives in temporary directories; the machine's own /etc is never read
// for server config nor written.
package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// certkeeperBin is built once per run from the working tree.
var certkeeperBin string

func TestMain(m *testing.M) { cktest.Main(m, &certkeeperBin) }

// need returns the path of a server binary, or skips the test saying
// which Debian package is missing.
func need(t *testing.T, bin, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	if p := "/usr/sbin/" + bin; isExecutable(p) {
		return p
	}
	t.Skipf("SKIPPED: %s is not installed (Debian package %q; .ci/run installs it): the end-to-end test against it cannot run", bin, pkg)
	return ""
}

func isExecutable(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode()&0o111 != 0
}

// stack is a real Vault set up by examples/vault/setup-pki.sh, as it is
// (the PKI and the AppRole every example expects), the AppRole's
// credentials, and a directory for everything else.
type stack struct {
	t            *testing.T
	vault        *vaulttest.Server
	dir          string
	roleIDFile   string
	secretIDFile string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	v := vaulttest.New(t, vaulttest.Options{})
	dir := shortTempDir(t)
	roleID, secretID := v.SetupScript(t, filepath.Join(dir, "pki"))
	rf, sf := vaulttest.WriteCreds(t, dir, roleID, secretID)
	return &stack{t: t, vault: v, dir: dir, roleIDFile: rf, secretIDFile: sf}
}

// shortTempDir is a temporary directory with a short path, so the control
// socket in it stays under the unix socket path limit, and readable by
// the unprivileged users server workers run as.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "ck-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// render reads an example file and applies the substitutions, failing
// the test when one does not match: an example that drifted from what
// the test expects must break the test, not be skipped over.
func render(t *testing.T, example string, subs [][2]string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", example))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, sub := range subs {
		if !strings.Contains(s, sub[0]) {
			t.Fatalf("examples/%s no longer contains %q, which the end-to-end test substitutes; update the test with the example", example, sub[0])
		}
		s = strings.ReplaceAll(s, sub[0], sub[1])
	}
	return s
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// certkeeperEnv is the environment certkeeper runs in: no VAULT_*
// variables, and /usr/sbin on the PATH for the service commands.
func certkeeperEnv() []string {
	var env []string
	for _, kv := range cktest.Env() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

// ck runs a certkeeper command and returns stdout, stderr and exit code.
func ck(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cktest.Run(t, certkeeperBin, certkeeperEnv(), args...)
}

func startDaemon(t *testing.T, cfg string) *cktest.Daemon {
	t.Helper()
	return cktest.Start(t, cktest.Options{
		Bin:  certkeeperBin,
		Args: []string{"run", "-config", cfg, "-log-level", "debug"},
		Env:  certkeeperEnv(),
	})
}

// otherCA makes a client certificate from a CA nobody trusts.
func otherCA(t *testing.T) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "certkeeper test intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "caller.example.internal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}

// vaultClient signs a client certificate with the script's client role,
// as another caller's certkeeper would, and returns it as a pair.
func vaultClient(t *testing.T, s *stack, cn string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := s.vault.Client.Logical().WriteWithContext(t.Context(), vaulttest.ScriptClientMount+"/sign/"+vaulttest.ScriptClientRole, map[string]any{
		"common_name": cn,
		"csr":         string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
	})
	if err != nil {
		t.Fatalf("signing %s: %v", cn, err)
	}
	chain := sec.Data["certificate"].(string) + "\n" + sec.Data["issuing_ca"].(string)
	var certs [][]byte
	for rest := []byte(chain); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		certs = append(certs, b.Bytes)
	}
	return tls.Certificate{Certificate: certs, PrivateKey: crypto.Signer(key)}
}
