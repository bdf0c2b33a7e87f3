//go:build integration

package integration

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// path is a file in the env's directory.
func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// rootFile writes the PKI's root CA to a file for openssl -CAfile.
func (e *env) rootFile(t *testing.T) string {
	t.Helper()
	p := e.path("root.pem")
	if err := os.WriteFile(p, []byte(e.pki.RootPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sameKeyAndCert proves with openssl that the first certificate in
// certFile is for the first key in keyFile.
func sameKeyAndCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	certPub := openssl(t, "x509", "-in", certFile, "-noout", "-pubkey")
	keyPub := openssl(t, "pkey", "-in", keyFile, "-pubout")
	if certPub != keyPub {
		t.Errorf("the key in %s does not match the certificate in %s", filepath.Base(keyFile), filepath.Base(certFile))
	}
}

func pemTypes(t *testing.T, path string) string {
	t.Helper()
	rest, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		types = append(types, b.Type)
	}
	return strings.Join(types, ",")
}

func haproxyBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	t.Skip("haproxy is not installed (Debian package haproxy; .ci/run installs it)")
	return ""
}

// TestTemplatesAndPKCS12 writes every stock template, a template from a
// source file, and PKCS#12 files with and without a password from a real
// Vault, and checks each with the tool that consumes it.
func TestTemplatesAndPKCS12(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	tmpl := e.path("custom.tmpl")
	os.WriteFile(tmpl, []byte("# {{ with certificate }}{{ .CommonName }} {{ .Serial }}\n{{ .Fullchain }}{{ end }}"), 0o600)
	os.WriteFile(e.path("p12.pass"), []byte("s3cret-p12-password\n"), 0o600)
	cfg := e.writeConfig(
		e.cert("web", vaulttest.RoleEC,
			fmt.Sprintf(`template {
    stock       = "haproxy"
    destination = %q
  }
  template {
    stock       = "bundle"
    destination = %q
  }
  template {
    stock       = "json"
    destination = %q
  }
  template {
    source      = %q
    destination = %q
    mode        = "0644"
  }
  pkcs12_file          = %q
  pkcs12_password_file = %q`, e.path("web.haproxy.pem"), e.path("web.bundle.pem"), e.path("web.json"), tmpl, e.path("web.custom"), e.path("web.p12"), e.path("p12.pass"))),
		e.cert("java", vaulttest.RoleRSA, `key_type = "rsa"`, fmt.Sprintf(`pkcs12_file = %q`, e.path("java.p12"))),
	)
	stdout, stderr, code := once(t, cfg)
	if code != 0 {
		t.Fatalf("once exited %d\n%s\n%s", code, stdout, stderr)
	}
	root := e.rootFile(t)

	t.Run("haproxy", func(t *testing.T) {
		f := e.path("web.haproxy.pem")
		if got := pemTypes(t, f); got != "CERTIFICATE,CERTIFICATE,PRIVATE KEY" {
			t.Errorf("HAProxy file holds %s, want leaf, intermediate, key", got)
		}
		sameKeyAndCert(t, f, f)
		openssl(t, "verify", "-CAfile", root, "-untrusted", f, f)
		if mode(t, f) != 0o600 {
			t.Errorf("mode %o, want 600 (it holds the key)", mode(t, f))
		}
		if fileSum(t, f) != fileSum(t, e.path("web.crt"), e.path("web.chain.pem"), e.path("web.key")) {
			t.Error("HAProxy file is not cert_file + chain_file + key_file")
		}
		haproxyCheck(t, e.dir, f)
	})
	t.Run("bundle", func(t *testing.T) {
		f := e.path("web.bundle.pem")
		if got := pemTypes(t, f); got != "PRIVATE KEY,CERTIFICATE,CERTIFICATE" {
			t.Errorf("bundle holds %s, want key, leaf, intermediate", got)
		}
		sameKeyAndCert(t, f, f)
		openssl(t, "verify", "-CAfile", root, "-untrusted", f, f)
	})
	t.Run("json", func(t *testing.T) {
		var doc map[string]any
		if err := json.Unmarshal([]byte(fileSum(t, e.path("web.json"))), &doc); err != nil {
			t.Fatal(err)
		}
		leaf := cktest.ReadLeaf(t, e.path("web.crt"))
		if doc["common_name"] != "web.example.internal" || doc["not_after"] != leaf.NotAfter.UTC().Format(time.RFC3339) {
			t.Errorf("json metadata: common_name=%v not_after=%v", doc["common_name"], doc["not_after"])
		}
		pair := e.path("json-pair.pem")
		os.WriteFile(pair, []byte(doc["fullchain"].(string)+doc["key"].(string)), 0o600)
		sameKeyAndCert(t, pair, pair)
		openssl(t, "verify", "-CAfile", root, "-untrusted", pair, pair)
		if doc["ca"] != fileSum(t, e.path("web.ca.pem")) {
			t.Error("json ca differs from ca_file")
		}
	})
	t.Run("source", func(t *testing.T) {
		got := fileSum(t, e.path("web.custom"))
		want := "# web.example.internal " + serialOf(cktest.ReadLeaf(t, e.path("web.crt"))) + "\n" + fileSum(t, e.path("web.fullchain.pem"))
		if got != want {
			t.Errorf("custom template output:\n%s\nwant:\n%s", got, want)
		}
		if mode(t, e.path("web.custom")) != 0o644 {
			t.Errorf("mode %o, want the 0644 asked", mode(t, e.path("web.custom")))
		}
	})
	t.Run("pkcs12", func(t *testing.T) {
		checkP12(t, e, "web", "s3cret-p12-password")
		checkP12(t, e, "java", "")
	})

	// A second run changes nothing: PKCS#12 encoding is random, but an
	// unchanged certificate keeps its file byte for byte.
	outputs := []string{"web.haproxy.pem", "web.bundle.pem", "web.json", "web.custom", "web.p12", "java.p12"}
	before := map[string]string{}
	for _, f := range outputs {
		before[f] = fileSum(t, e.path(f))
	}
	stdout2, stderr2, code := once(t, cfg)
	if code != 0 || !strings.Contains(stdout2, "web: ok serial=") || !strings.Contains(stdout2, "java: ok serial=") {
		t.Fatalf("second once (%d):\n%s\n%s", code, stdout2, stderr2)
	}
	for _, f := range outputs {
		if fileSum(t, e.path(f)) != before[f] {
			t.Errorf("%s was rewritten by a pass with nothing to do", f)
		}
	}
	if strings.Contains(stderr+stderr2+stdout+stdout2, "s3cret-p12-password") {
		t.Error("the PKCS#12 password appears in certkeeper's output")
	}
}

// checkP12 opens name.p12 with openssl (OpenSSL 3 needs "-passin pass:"
// for an empty password) and checks that the key matches the leaf, that the
// chain up to the root is included, and that the file is private.
func checkP12(t *testing.T, e *env, name, password string) {
	t.Helper()
	p12 := e.path(name + ".p12")
	out := e.path(name + ".p12.pem")
	openssl(t, "pkcs12", "-in", p12, "-passin", "pass:"+password, "-noenc", "-out", out)
	sameKeyAndCert(t, e.path(name+".crt"), out)
	if got := countPEM(t, out); got != 3 {
		t.Errorf("%s holds %d certificates, want 3 (leaf, intermediate, root)", name, got)
	}
	leafFromP12 := openssl(t, "pkcs12", "-in", p12, "-passin", "pass:"+password, "-nokeys", "-clcerts")
	if !strings.Contains(leafFromP12, strings.TrimSpace(fileSum(t, e.path(name+".crt")))) {
		t.Errorf("%s: the leaf in the PKCS#12 file is not cert_file", name)
	}
	if mode(t, p12) != 0o600 {
		t.Errorf("%s mode %o, want 600", name, mode(t, p12))
	}
	info := openssl(t, "pkcs12", "-in", p12, "-passin", "pass:"+password, "-info", "-noout")
	if !strings.Contains(info, "PBES2") || !strings.Contains(info, "AES-256-CBC") || !strings.Contains(info, "sha256") {
		t.Errorf("%s is not the modern encoding:\n%s", name, info)
	}
	if password != "" {
		if _, err := exec.Command("openssl", "pkcs12", "-in", p12, "-passin", "pass:wrong", "-noout").CombinedOutput(); err == nil {
			t.Errorf("%s opens with a wrong password", name)
		}
	}
}

// haproxyCheck has HAProxy load file as a frontend certificate: -c parses
// the config and loads every crt (pairing key and certificate, building the
// chain) without binding anything.
func haproxyCheck(t *testing.T, dir, file string) {
	t.Helper()
	bin := haproxyBin(t)
	cfg := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global
  log stderr format raw local0
defaults
  mode http
  timeout connect 1s
  timeout client 1s
  timeout server 1s
frontend tls
  bind 127.0.0.1:18443 ssl crt %s
  default_backend none
backend none
`, file)), 0o600)
	out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Configuration file is valid") {
		t.Fatalf("haproxy -c refused the combined PEM: %v\n%s", err, out)
	}
}

// TestValidateRefusesDisabledFunction: what a user sees from `certkeeper
// validate` for a template that tries to read Vault by itself.
func TestValidateRefusesDisabledFunction(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC, fmt.Sprintf(`template {
    contents    = "{{ with secret \"pki_int/issue/ec\" \"common_name=x\" }}{{ .Data.certificate }}{{ end }}"
    destination = %q
  }`, e.path("web.tmpl.pem"))))
	out, err := exec.Command(certkeeperBin, "validate", "-config", cfg).CombinedOutput()
	if err == nil {
		t.Fatalf("validate accepted a template calling secret:\n%s", out)
	}
	line := 0
	for i, l := range strings.Split(fileSum(t, cfg), "\n") {
		if strings.Contains(l, "contents    =") {
			line = i + 1
		}
	}
	want := fmt.Sprintf(`%s:%d:19: template contents: line 1: function "secret" is disabled: templates render only the certificate certkeeper holds; they never call Vault`, cfg, line)
	if !strings.Contains(string(out), want) {
		t.Errorf("validate said:\n%s\nwant a line containing:\n%s", out, want)
	}
}

// sample is one consistent view of a certificate's files, taken when no
// rotation was in the middle of renaming them.
type sample struct {
	key, cert, haproxy, p12 []byte
}

// readSample reads the files of certificate "web" and says whether the
// view is one state of the set: its crash journal (there from before the
// first rename of a write to after the last) was absent when the read
// began and when it ended, and no file was replaced meanwhile (each the
// same inode throughout). Two reads that merely agree can both fall
// inside one write when the machine is busy.
func readSample(e *env) (sample, bool) {
	names := []string{"web.key", "web.crt", "web.haproxy.pem", "web.p12"}
	journal := filepath.Join(e.dir, "state", "certs", "web.journal")
	inodes := func() ([]uint64, bool) {
		if _, err := os.Stat(journal); err == nil {
			return nil, false
		}
		var out []uint64
		for _, n := range names {
			info, err := os.Stat(e.path(n))
			if err != nil {
				return nil, false
			}
			out = append(out, info.Sys().(*syscall.Stat_t).Ino)
		}
		return out, true
	}
	before, ok := inodes()
	if !ok {
		return sample{}, false
	}
	var s sample
	for i, dst := range []*[]byte{&s.key, &s.cert, &s.haproxy, &s.p12} {
		var err error
		if *dst, err = os.ReadFile(e.path(names[i])); err != nil {
			return sample{}, false
		}
	}
	after, ok := inodes()
	return s, ok && slices.Equal(before, after)
}

// TestTemplateNeverDisagreesWithKey: a certificate that lives 60 seconds is
// rotated every few seconds by `run`; every consistent view of the files
// shows the template and the PKCS#12 file holding exactly key_file and
// cert_file.
func TestTemplateNeverDisagreesWithKey(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC, `ttl = "30s"`, fmt.Sprintf(`template {
    stock       = "haproxy"
    destination = %q
  }
  pkcs12_file = %q`, e.path("web.haproxy.pem"), e.path("web.p12"))))
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web`, 1, 30*time.Second)

	serials := map[string]bool{}
	samples := 0
	deadline := time.Now().Add(2 * time.Minute)
	for len(serials) < 4 && time.Now().Before(deadline) {
		s, ok := readSample(e)
		if !ok {
			continue // a rotation was renaming files while we read
		}
		samples++
		block, _ := pem.Decode(s.cert)
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		key, err := pki.ParseKey(s.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.KeyMatches(leaf, key); err != nil {
			t.Fatalf("key_file and cert_file disagree: %v", err)
		}
		if !bytes.HasPrefix(s.haproxy, s.cert) || !bytes.HasSuffix(s.haproxy, s.key) {
			t.Fatalf("serial %x: the HAProxy file holds another certificate or key than cert_file/key_file", leaf.SerialNumber)
		}
		p12Key, p12Leaf, _, err := pkcs12.DecodeChain(s.p12, "")
		if err != nil {
			t.Fatal(err)
		}
		if !p12Leaf.Equal(leaf) || !key.(interface{ Equal(crypto.PrivateKey) bool }).Equal(p12Key) {
			t.Fatalf("serial %x: the PKCS#12 file holds another certificate or key", leaf.SerialNumber)
		}
		serials[leaf.SerialNumber.String()] = true
		time.Sleep(50 * time.Millisecond)
	}
	if len(serials) < 4 {
		t.Fatalf("saw %d certificates in 2 minutes, want 4 (3 rotations)", len(serials))
	}
	t.Logf("%d consistent samples over %d certificates", samples, len(serials))
	if code := d.Stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestDeletedFilesRestoredWithoutVault: a deleted key file and a corrupted
// template output come back at once from what certkeeper holds, with a log
// line naming them, and Vault issues nothing.
func TestDeletedFilesRestoredWithoutVault(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC, fmt.Sprintf(`template {
    stock       = "haproxy"
    destination = %q
  }`, e.path("web.haproxy.pem"))))
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 30*time.Second)
	key, pemFile := e.path("web.key"), e.path("web.haproxy.pem")
	wantKey, wantPEM := fileSum(t, key), fileSum(t, pemFile)
	issued := e.vault.CountCerts(t, "pki_int")

	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	d.WaitLog(`restored them" cert=web files=`+regexp.QuoteMeta(key)+` missing=`+regexp.QuoteMeta(key), 1, 20*time.Second)
	if got := fileSum(t, key); got != wantKey {
		t.Error("the restored key is not the one held")
	}
	if mode(t, key) != 0o600 {
		t.Errorf("restored key mode %o", mode(t, key))
	}

	os.WriteFile(pemFile, []byte("corrupted by someone\n"), 0o600)
	d.WaitLog(`restored them" cert=web files=`+regexp.QuoteMeta(pemFile)+` missing="" `, 1, 20*time.Second)
	if got := fileSum(t, pemFile); got != wantPEM {
		t.Error("the restored HAProxy file is not the one held")
	}

	// A key made world-readable is put back to its mode.
	os.Chmod(key, 0o644)
	d.WaitLog(`restored them" cert=web files=`+regexp.QuoteMeta(key), 2, 20*time.Second)
	if mode(t, key) != 0o600 {
		t.Errorf("key mode %o after restore, want 600", mode(t, key))
	}
	if got := e.vault.CountCerts(t, "pki_int"); got != issued {
		t.Errorf("restoring issued %d certificates, want 0", got-issued)
	}
	d.Stop()
}
