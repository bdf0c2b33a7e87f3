//go:build integration

package integration

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestJavaKeystoreHook runs examples/hooks/java-keystore.sh, unchanged, as
// the reload command of a service that only runs it: `once` puts the
// certificate Vault issued into a Java keystore under the certificate's
// name, and a rotation replaces that entry (one entry, the new
// certificate), with passwords read from files.
func TestJavaKeystoreHook(t *testing.T) {
	for _, bin := range []string{"keytool", "jq"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("SKIPPED: %s is not installed (Debian packages openjdk-17-jre-headless and jq): the keystore hook cannot run", bin)
		}
	}
	e := newEnv(t, vaulttest.Options{})
	hook := filepath.Join(moduleRoot(t), "examples", "hooks", "java-keystore.sh")
	keystore, storePass, p12Pass := filepath.Join(e.dir, "app-keystore.p12"), filepath.Join(e.dir, "keystore.pass"), filepath.Join(e.dir, "app.p12.pass")
	os.WriteFile(storePass, []byte("keystore-secret\n"), 0o600)
	os.WriteFile(p12Pass, []byte("p12-secret"), 0o600)
	cfg := e.writeConfig(
		e.cert("app", vaulttest.RoleEC,
			fmt.Sprintf("pkcs12_file = %q", filepath.Join(e.dir, "app.p12")),
			fmt.Sprintf("pkcs12_password_file = %q", p12Pass),
			`notify = ["java-app"]`),
		fmt.Sprintf("service \"java-app\" {\n  reload = [%q, %q, %q, %q]\n}\n", hook, keystore, storePass, p12Pass),
	)
	if out, errOut, code := once(t, cfg); code != 0 || !strings.Contains(out, "service java-app: reloaded") {
		t.Fatalf("once exited %d:\n%s\n%s", code, out, errOut)
	}
	first := cktest.ReadLeaf(t, filepath.Join(e.dir, "app.crt"))
	if got := keystoreEntry(t, keystore, storePass, "app"); !got.Equal(first) {
		t.Fatalf("the keystore holds serial %s under app, want the certificate issued (%s)", pki.Serial(got), pki.Serial(first))
	}

	if out, errOut, code := cktest.Run(t, certkeeperBin, cleanEnv(), "rotate", "-config", cfg, "app"); code != 0 {
		t.Fatalf("rotate exited %d:\n%s\n%s", code, out, errOut)
	}
	second := cktest.ReadLeaf(t, filepath.Join(e.dir, "app.crt"))
	if second.Equal(first) {
		t.Fatal("rotate did not replace the certificate")
	}
	if got := keystoreEntry(t, keystore, storePass, "app"); !got.Equal(second) {
		t.Errorf("after the rotation the keystore holds serial %s, want the new %s", pki.Serial(got), pki.Serial(second))
	}
	list, err := exec.Command("keytool", "-list", "-keystore", keystore, "-storetype", "PKCS12", "-storepass:file", storePass).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "contains 1 entry") {
		t.Errorf("keystore after two runs: %v\n%s", err, list)
	}
	if info, err := os.Stat(keystore); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("keystore mode: %v %v, want 0600", info.Mode(), err)
	}
}

// keystoreEntry is the certificate of alias in a PKCS#12 keystore.
func keystoreEntry(t *testing.T, keystore, passFile, alias string) *x509.Certificate {
	t.Helper()
	out, err := exec.Command("keytool", "-exportcert", "-rfc", "-alias", alias, "-keystore", keystore, "-storetype", "PKCS12", "-storepass:file", passFile).Output()
	if err != nil {
		t.Fatalf("keytool -exportcert %s: %v", alias, err)
	}
	block, _ := pem.Decode(out)
	if block == nil {
		t.Fatalf("keytool -exportcert printed no certificate:\n%s", out)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
