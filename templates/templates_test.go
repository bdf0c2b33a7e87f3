package templates

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/pki"
)

// testBundle is a leaf issued by an intermediate under a root, the shape
// Vault's usual two-tier PKI returns.
func testBundle(t *testing.T, keyType string, bits int) *pki.Bundle {
	t.Helper()
	now := time.Now()
	mk := func(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
		serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
		tmpl.SerialNumber = serial
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Minute), now.Add(time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rootKey, _ := pki.GenerateKey("ec", 256)
	root := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "Test Root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, rootKey.Public(), rootKey)
	intKey, _ := pki.GenerateKey("ec", 256)
	inter := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "Test Intermediate"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, root, intKey.Public(), rootKey)
	leafKey, err := pki.GenerateKey(keyType, bits)
	if err != nil {
		t.Fatal(err)
	}
	leaf := mk(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "web.example.internal"},
		DNSNames:    []string{"web.example.internal", "localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, inter, leafKey.Public(), intKey)
	return pki.NewBundle(leaf, leafKey, []*x509.Certificate{root, inter})
}

func needOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed (Debian package openssl)")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func write(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func renderStock(t *testing.T, name string, cert Certificate) string {
	t.Helper()
	in, ok := Stock(name)
	if !ok {
		t.Fatalf("stock template %q missing", name)
	}
	if _, err := Check(in, Certificate{Name: "web"}); err != nil {
		t.Fatalf("stock %s fails its own check: %v", name, err)
	}
	out, err := Render(in, cert)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// pemTypes lists the PEM block types in data, in order.
func pemTypes(data string) []string {
	var types []string
	rest := []byte(data)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		types = append(types, b.Type)
	}
	return types
}

// checkPEMFile proves with openssl that the file's first certificate is
// for the file's key and chains, with the file's other certificates, to
// the root.
func checkPEMFile(t *testing.T, dir, file string, b *pki.Bundle) {
	t.Helper()
	root := write(t, dir, "root.pem", string(pki.EncodeCerts(b.Roots...)))
	certPub := run(t, "openssl", "x509", "-in", file, "-noout", "-pubkey")
	keyPub := run(t, "openssl", "pkey", "-in", file, "-pubout")
	if certPub != keyPub {
		t.Errorf("%s: the key does not match the certificate", filepath.Base(file))
	}
	if out := run(t, "openssl", "verify", "-CAfile", root, "-untrusted", file, file); !strings.Contains(out, ": OK") {
		t.Errorf("%s does not verify: %s", filepath.Base(file), out)
	}
}

func TestStockHAProxy(t *testing.T) {
	for _, kt := range []struct {
		typ  string
		bits int
	}{{"ec", 256}, {"rsa", 2048}} {
		t.Run(kt.typ, func(t *testing.T) {
			needOpenSSL(t)
			b := testBundle(t, kt.typ, kt.bits)
			cert, err := NewCertificate("web", b)
			if err != nil {
				t.Fatal(err)
			}
			out := renderStock(t, "haproxy", cert)
			if got, want := strings.Join(pemTypes(out), ","), "CERTIFICATE,CERTIFICATE,PRIVATE KEY"; got != want {
				t.Errorf("haproxy PEM blocks %s, want %s (leaf, intermediate, key)", got, want)
			}
			if out != cert.Cert+cert.Chain+cert.Key {
				t.Error("haproxy file is not exactly leaf + chain + key")
			}
			dir := t.TempDir()
			file := write(t, dir, "web.pem", out)
			checkPEMFile(t, dir, file, b)
			haproxyLoads(t, dir, file)
		})
	}
}

// haproxyLoads runs HAProxy's own config check on a frontend that serves
// file (-c binds nothing, so the port is never opened): HAProxy parses the PEM, pairs the key and certificate, and builds
// the chain, and fails the check if any of it is wrong.
func haproxyLoads(t *testing.T, dir, file string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			// The PEM checks above have passed; only HAProxy's own is left.
			t.Skip("haproxy is not installed (Debian package haproxy; .ci/run installs it): HAProxy's own load check cannot run")
		}
		bin = "/usr/sbin/haproxy"
	}
	cfg := write(t, dir, "haproxy.cfg", fmt.Sprintf(`global
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
`, file))
	out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c refused the combined PEM: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Configuration file is valid") {
		t.Errorf("haproxy -c said: %s", out)
	}
	// The check must be able to fail: a file with the key of another
	// certificate is refused.
	other := testBundle(t, "ec", 256)
	otherKey, _ := pki.MarshalKey(other.Key)
	data, _ := os.ReadFile(file)
	bad := write(t, dir, "bad.pem", strings.Split(string(data), "-----BEGIN PRIVATE KEY-----")[0]+string(otherKey))
	badCfg := write(t, dir, "bad.cfg", strings.Replace(string(must(os.ReadFile(cfg))), file, bad, 1))
	if out, err := exec.Command(bin, "-c", "-f", badCfg).CombinedOutput(); err == nil {
		t.Errorf("haproxy -c accepted a PEM whose key does not match: %s", out)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestStockBundle(t *testing.T) {
	needOpenSSL(t)
	b := testBundle(t, "ec", 384)
	cert, _ := NewCertificate("web", b)
	out := renderStock(t, "bundle", cert)
	if got, want := strings.Join(pemTypes(out), ","), "PRIVATE KEY,CERTIFICATE,CERTIFICATE"; got != want {
		t.Errorf("bundle PEM blocks %s, want %s (key, leaf, intermediate)", got, want)
	}
	dir := t.TempDir()
	checkPEMFile(t, dir, write(t, dir, "bundle.pem", out), b)
}

func TestStockJSON(t *testing.T) {
	needOpenSSL(t)
	b := testBundle(t, "ed25519", 0)
	cert, _ := NewCertificate("web", b)
	out := renderStock(t, "json", cert)
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json template output is not JSON: %v\n%s", err, out)
	}
	want := map[string]any{
		"name":        "web",
		"common_name": "web.example.internal",
		"serial":      cert.Serial,
		"key_type":    "ed25519",
		"issuer":      "Test Intermediate",
		"not_after":   b.Leaf.NotAfter.UTC().Format(time.RFC3339),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("json %s = %v, want %v", k, got[k], v)
		}
	}
	if ips, _ := got["ip_sans"].([]any); len(ips) != 1 || ips[0] != "127.0.0.1" {
		t.Errorf("json ip_sans = %v", got["ip_sans"])
	}
	for _, k := range []string{"cert", "key", "chain", "fullchain", "ca", "roots", "dns_names", "uri_sans", "not_before", "fingerprint_sha256", "key_bits"} {
		if _, ok := got[k]; !ok {
			t.Errorf("json has no %q", k)
		}
	}
	// The PEMs in the JSON are usable as they are.
	dir := t.TempDir()
	pair := write(t, dir, "pair.pem", got["cert"].(string)+got["chain"].(string)+got["key"].(string))
	checkPEMFile(t, dir, pair, b)
	if fp := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(run(t, "openssl", "x509", "-in", pair, "-noout", "-fingerprint", "-sha256")), "sha256 Fingerprint="), ":", "")); !strings.EqualFold(fp, got["fingerprint_sha256"].(string)) {
		t.Errorf("fingerprint %s, openssl says %s", got["fingerprint_sha256"], fp)
	}
}

func TestCertificateFields(t *testing.T) {
	b := testBundle(t, "rsa", 2048)
	cert, err := NewCertificate("web", b)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := `{{ with certificate }}{{ .Name }}|{{ .CommonName }}|{{ .DNSNames | join "," }}|{{ .IPSANs | join "," }}|{{ .KeyType }}{{ .KeyBits }}|{{ .NotAfter.Unix }}|{{ .Issuer }}{{ end }}`
	out, err := Render(Input{Text: tmpl}, cert)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("web|web.example.internal|web.example.internal,localhost|127.0.0.1|rsa2048|%d|Test Intermediate", b.Leaf.NotAfter.Unix())
	if string(out) != want {
		t.Errorf("got %q\nwant %q", out, want)
	}
	if cert.Fullchain != cert.Cert+cert.Chain || cert.CA != cert.Chain+cert.Roots {
		t.Error("Fullchain or CA is not the concatenation documented")
	}
	if n := strings.Count(cert.Chain, "BEGIN CERTIFICATE"); n != 1 {
		t.Errorf("chain holds %d certificates, want the intermediate only", n)
	}
	if !strings.Contains(cert.Serial, ":") || len(strings.ReplaceAll(cert.Serial, ":", ""))%2 != 0 {
		t.Errorf("serial %q is not colon-separated hex", cert.Serial)
	}
}

// outsideFunctions are the functions consul-template v0.41.1 defines (its
// template.funcMap) that reach Vault, Consul or Nomad, read or write a
// file, or run a program. The list is the test's own, not funcs.go's
// deniedNames: a name dropped from the implementation must fail here.
var outsideFunctions = []string{
	"secret", "secrets", "pkiCert", "caLeaf", "caRoots",
	"key", "keyExists", "keyOrDefault", "ls", "safeLs", "tree", "safeTree",
	"service", "services", "connect", "node", "nodes", "datacenters",
	"exportedServices", "partitions", "peerings",
	"nomadServices", "nomadService", "nomadVarList", "nomadVarListSafe", "nomadVar", "nomadVarExists",
	"file", "writeToFile", "plugin",
}

// TestDisabledFunctions: every function that would reach Vault, Consul or
// Nomad, read or write a file, or run a program is refused by Check (at
// load, with the template line and the reason, even in a branch not
// taken) and fails with the reason if reached at render time.
func TestDisabledFunctions(t *testing.T) {
	cert, _ := NewCertificate("web", testBundle(t, "ec", 256))
	for _, name := range outsideFunctions {
		t.Run(name, func(t *testing.T) {
			text := "{{ with certificate }}{{ .Cert }}{{ end }}\n{{ if false }}{{ " + name + " \"x\" }}{{ end }}"
			_, err := Check(Input{Text: text}, Certificate{Name: "web"})
			var te *Error
			if !errors.As(err, &te) || te.Line != 2 || !strings.Contains(err.Error(), fmt.Sprintf("function %q is disabled: ", name)) {
				t.Errorf("Check: %v, want line 2 saying %s is disabled", err, name)
			}
			out, err := Render(Input{Text: "{{ " + name + " \"x\" }}"}, cert)
			if err == nil || !strings.Contains(err.Error(), "error calling "+name+": disabled in certkeeper templates: ") {
				t.Errorf("Render: %q, %v; want a clear refusal", out, err)
			}
		})
	}
	// A function of a denied family that a later consul-template adds is
	// refused by pattern.
	if _, err := Check(Input{Text: "{{ nomadSomethingNew }}"}, Certificate{}); err == nil || !strings.Contains(err.Error(), "Nomad") {
		t.Errorf("nomad* pattern: %v", err)
	}
	if _, err := Check(Input{Text: "{{ connectProxy }}"}, Certificate{}); err == nil || !strings.Contains(err.Error(), "Consul") {
		t.Errorf("connect* pattern: %v", err)
	}
	// Hidden in a defined template, an argument or a variable.
	for _, text := range []string{
		"{{ define \"x\" }}{{ file \"/etc/shadow\" }}{{ end }}{{ executeTemplate \"x\" }}",
		"{{ printf \"%s\" (secret \"a\") }}",
		"{{ $k := key \"a\" }}{{ $k }}",
		"{{ range $i, $s := services }}{{ end }}",
	} {
		if _, err := Check(Input{Text: text}, Certificate{}); err == nil || !strings.Contains(err.Error(), "is disabled") {
			t.Errorf("%s: %v", text, err)
		}
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "hvs.must-not-leak")
	t.Setenv("CERTKEEPER_TEST_SITE", "eu-1")
	for _, text := range []string{`{{ env "VAULT_TOKEN" }}`, `{{ mustEnv "vault_token" }}`, `{{ envOrDefault "VAULT_TOKEN" "x" }}`} {
		out, err := Render(Input{Text: text}, Certificate{})
		if err == nil || strings.Contains(string(out), "must-not-leak") || strings.Contains(err.Error(), "must-not-leak") {
			t.Errorf("%s: %q, %v; want a refusal", text, out, err)
		}
	}
	out, err := Render(Input{Text: `{{ env "CERTKEEPER_TEST_SITE" }}-{{ envOrDefault "CERTKEEPER_UNSET" "dflt" }}`}, Certificate{})
	if err != nil || string(out) != "eu-1-dflt" {
		t.Errorf("env: %q, %v", out, err)
	}
}

// TestErrorsNameTheLine: what a user sees when a template is wrong.
func TestErrorsNameTheLine(t *testing.T) {
	tests := []struct{ text, want string }{
		{"{{ with certificate }}\n{{ .Cert }\n{{ end }}", `line 2: unexpected "}" in operand`},
		{"{{ with certificate }}\n\n{{ .Nope }}{{ end }}", "line 3: at <.Nope>: can't evaluate field Nope in type templates.Certificate"},
		{"ok\n{{ notAFunction }}", `line 2: function "notAFunction" not defined`},
		{"  \n", "template is empty"},
	}
	for _, tt := range tests {
		_, err := Check(Input{Text: tt.text}, Certificate{})
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: got %v, want %s", tt.text, err, tt.want)
		}
	}
}

func TestCheckSeesTheKey(t *testing.T) {
	for text, want := range map[string]bool{
		"{{ with certificate }}{{ .Cert }}{{ .Key }}{{ end }}": true,
		"{{ certificate | toJSON }}":                           true,
		"{{ with certificate }}{{ .Fullchain }}{{ end }}":      false,
	} {
		res, err := Check(Input{Text: text}, Certificate{})
		if err != nil || res.IncludesKey != want {
			t.Errorf("%s: IncludesKey=%v err=%v, want %v", text, res.IncludesKey, err, want)
		}
	}
}

func TestStockNames(t *testing.T) {
	if got := strings.Join(StockNames(), ","); got != "bundle,haproxy,json" {
		t.Errorf("stock templates: %s", got)
	}
	for _, bad := range []string{"../templates", "haproxy.tmpl", ""} {
		if _, ok := Stock(bad); ok {
			t.Errorf("Stock(%q) found something", bad)
		}
	}
}

// TestCheckLooksInElseBranches: a disabled function hidden in an else
// branch (never taken with the sample) is refused at load too.
func TestCheckLooksInElseBranches(t *testing.T) {
	for _, text := range []string{
		`{{ if true }}x{{ else }}{{ secret "a" }}{{ end }}`,
		`{{ with certificate }}x{{ else }}{{ file "/etc/shadow" }}{{ end }}`,
		`{{ range $s := (certificate).DNSNames }}x{{ else }}{{ plugin "sh" }}{{ end }}`,
	} {
		if _, err := Check(Input{Text: text}, Certificate{}); err == nil || !strings.Contains(err.Error(), "is disabled") {
			t.Errorf("%s: %v, want a refusal", text, err)
		}
	}
}

// TestCheckSampleLooksIssued: Check renders with a sample certificate;
// what the config cannot know yet (serial, dates, issuer, fingerprint)
// has the shape and meaning of an issued certificate, so a template that
// slices a serial or compares dates is not refused at load, and what the
// caller knows is kept.
func TestCheckSampleLooksIssued(t *testing.T) {
	before := time.Now()
	s := Certificate{Name: "web"}.withPlaceholders(before)
	if parts := strings.Split(s.Serial, ":"); len(parts) < 16 {
		t.Errorf("sample serial %q", s.Serial)
	}
	if !s.NotBefore.Before(before) || !s.NotAfter.After(before.Add(24*time.Hour)) {
		t.Errorf("sample is valid from %v to %v, want valid now and for a day", s.NotBefore, s.NotAfter)
	}
	if s.Issuer == "" || len(s.FingerprintSHA256) != 64 {
		t.Errorf("sample issuer %q, fingerprint %q", s.Issuer, s.FingerprintSHA256)
	}
	known := Certificate{Serial: "0a:0b", NotBefore: before.Add(-time.Hour), NotAfter: before.Add(time.Hour), Issuer: "Real CA", FingerprintSHA256: "ab"}.withPlaceholders(before)
	if known.Serial != "0a:0b" || !known.NotBefore.Equal(before.Add(-time.Hour)) || known.Issuer != "Real CA" || known.FingerprintSHA256 != "ab" {
		t.Errorf("known values replaced: %+v", known)
	}
	text := `{{ with certificate }}{{ index (split ":" .Serial) 15 }} {{ slice .FingerprintSHA256 0 16 }} {{ index (split " " .Issuer) 0 }}{{ end }}`
	if _, err := Check(Input{Text: text}, Certificate{Name: "web"}); err != nil {
		t.Errorf("a template using the serial, fingerprint and issuer was refused: %v", err)
	}
}

// TestMustEnv: mustEnv returns a set variable and refuses an empty one.
func TestMustEnv(t *testing.T) {
	t.Setenv("CERTKEEPER_TEST_SITE", "eu-1")
	t.Setenv("CERTKEEPER_TEST_EMPTY", "")
	if out, err := Render(Input{Text: `{{ mustEnv "CERTKEEPER_TEST_SITE" }}`}, Certificate{}); err != nil || string(out) != "eu-1" {
		t.Errorf("mustEnv of a set variable: %q, %v", out, err)
	}
	if _, err := Render(Input{Text: `{{ mustEnv "CERTKEEPER_TEST_EMPTY" }}`}, Certificate{}); err == nil || !strings.Contains(err.Error(), "required environment variable CERTKEEPER_TEST_EMPTY is empty") {
		t.Errorf("mustEnv of an empty variable: %v", err)
	}
}
