package agent

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/templates"
)

func stockTemplate(t *testing.T, name, dest string) config.Template {
	t.Helper()
	in, ok := templates.Stock(name)
	if !ok {
		t.Fatalf("no stock template %q", name)
	}
	return config.Template{Stock: name, Text: in.Text, Destination: dest, Mode: 0o600, UID: -1, GID: -1}
}

// withFormats adds a HAProxy template and a PKCS#12 file to cfg's first
// certificate.
func withFormats(t *testing.T, cfg *config.Config, password string) config.Certificate {
	t.Helper()
	c := &cfg.Certificates[0]
	dir := filepath.Dir(c.Files.Cert)
	c.Templates = append(c.Templates, stockTemplate(t, "haproxy", filepath.Join(dir, c.Name+".haproxy.pem")))
	c.Files.PKCS12 = filepath.Join(dir, c.Name+".p12")
	if password != "" {
		c.PKCS12PasswordFile = filepath.Join(dir, "p12.pass")
		if err := os.WriteFile(c.PKCS12PasswordFile, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return *c
}

// onDisk is what a reader finds: the key and certificate files, and the
// key and leaf inside the template and the PKCS#12 file.
type onDisk struct {
	key, leaf             []byte // key_file PEM, cert_file DER
	tmplKey, tmplLeaf     []byte // from the HAProxy file
	p12Key                crypto.PrivateKey
	p12Leaf               *x509.Certificate
	p12CAs                int
	p12Bytes, haproxyFile []byte
}

func readOnDisk(t *testing.T, c config.Certificate, password string) onDisk {
	t.Helper()
	var d onDisk
	d.key = mustRead(t, c.Files.Key)
	leaf, _ := pem.Decode(mustRead(t, c.Files.Cert))
	d.leaf = leaf.Bytes
	d.haproxyFile = mustRead(t, c.Templates[0].Destination)
	rest := d.haproxyFile
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "PRIVATE KEY":
			d.tmplKey = pem.EncodeToMemory(b)
		case b.Type == "CERTIFICATE" && d.tmplLeaf == nil:
			d.tmplLeaf = b.Bytes
		}
	}
	d.p12Bytes = mustRead(t, c.Files.PKCS12)
	var cas []*x509.Certificate
	var err error
	d.p12Key, d.p12Leaf, cas, err = pkcs12.DecodeChain(d.p12Bytes, password)
	if err != nil {
		t.Fatalf("decoding %s: %v", c.Files.PKCS12, err)
	}
	d.p12CAs = len(cas)
	return d
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// agree fails unless every file holds the same key and leaf.
func (d onDisk) agree(t *testing.T) {
	t.Helper()
	if !bytes.Equal(d.tmplKey, d.key) {
		t.Error("the template holds another key than key_file")
	}
	if !bytes.Equal(d.tmplLeaf, d.leaf) {
		t.Error("the template holds another certificate than cert_file")
	}
	if !bytes.Equal(d.p12Leaf.Raw, d.leaf) {
		t.Error("the PKCS#12 file holds another certificate than cert_file")
	}
	key, err := pki.ParseKey(d.key)
	if err != nil {
		t.Fatal(err)
	}
	if !key.(interface{ Equal(crypto.PrivateKey) bool }).Equal(d.p12Key) {
		t.Error("the PKCS#12 file holds another key than key_file")
	}
	leaf, _ := x509.ParseCertificate(d.leaf)
	if err := pki.KeyMatches(leaf, key); err != nil {
		t.Error(err)
	}
}

// TestFormatsRotateWithTheKey: across several rotations, the template and
// the PKCS#12 file always hold the key and certificate that key_file and
// cert_file hold, because they are written in the same set.
func TestFormatsRotateWithTheKey(t *testing.T) {
	cfg := testConfig(t, "web")
	c := withFormats(t, cfg, "s3cret")
	a := New(Options{Config: cfg, Issuer: newFakeVault(t)})
	var serials []string
	for i := range 4 {
		res, err := a.ensure(t.Context(), c, i > 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Action != Issued {
			t.Fatalf("rotation %d: action %s", i, res.Action)
		}
		d := readOnDisk(t, c, "s3cret")
		d.agree(t)
		if d.p12CAs != 1 {
			t.Errorf("PKCS#12 holds %d CA certificates, want the chain (1)", d.p12CAs)
		}
		serials = append(serials, res.Serial)
	}
	if serials[0] == serials[3] {
		t.Error("rotations did not change the certificate")
	}
}

// TestFormatsStableWhenNothingChanged: PKCS#12 encoding is random and a
// template may call timestamp, yet a pass with the same certificate must
// not rewrite anything (no rewrite, no reload).
func TestFormatsStableWhenNothingChanged(t *testing.T) {
	cfg := testConfig(t, "web")
	c := withFormats(t, cfg, "")
	stamp := config.Template{Text: `{{ timestamp "2006-01-02T15:04:05.000000000Z07:00" }} {{ with certificate }}{{ .Serial }}{{ end }}`,
		Destination: filepath.Join(filepath.Dir(c.Files.Cert), "stamp.txt"), Mode: 0o644, UID: -1, GID: -1}
	cfg.Certificates[0].Templates = append(cfg.Certificates[0].Templates, stamp)
	c = cfg.Certificates[0]
	a := New(Options{Config: cfg, Issuer: newFakeVault(t)})
	if _, err := a.ensure(t.Context(), c, false); err != nil {
		t.Fatal(err)
	}
	before := readOnDisk(t, c, "")
	stampBefore := mustRead(t, stamp.Destination)
	res, err := a.ensure(t.Context(), c, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Kept {
		t.Errorf("second pass %s %v, want kept with nothing written", res.Action, res.Written)
	}
	if !bytes.Equal(before.p12Bytes, mustRead(t, c.Files.PKCS12)) || !bytes.Equal(stampBefore, mustRead(t, stamp.Destination)) {
		t.Error("files changed on a no-op pass")
	}

	// A restart re-encodes nothing either: the PKCS#12 file on disk holds
	// the same key and certificates, so its bytes are kept.
	res, err = New(Options{Config: cfg, Issuer: newFakeVault(t)}).ensure(t.Context(), cfg.Certificates[0], false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Written {
		if p == c.Files.PKCS12 {
			t.Error("a restart rewrote the unchanged PKCS#12 file")
		}
	}
}

// TestPKCS12FollowsThePassword: a new password re-encodes the file (the old
// one no longer opens it); a deleted file is restored without Vault.
func TestPKCS12FollowsThePassword(t *testing.T) {
	cfg := testConfig(t, "web")
	c := withFormats(t, cfg, "old-password")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	if _, err := a.ensure(t.Context(), c, false); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(c.PKCS12PasswordFile, []byte("new-password"), 0o600)
	res, err := a.ensure(t.Context(), c, false)
	if err != nil || res.Action != Restored || len(res.Written) != 1 || res.Written[0] != c.Files.PKCS12 {
		t.Fatalf("after a password change: %+v, %v", res, err)
	}
	readOnDisk(t, c, "new-password").agree(t)
	if _, _, _, err := pkcs12.DecodeChain(mustRead(t, c.Files.PKCS12), "old-password"); err == nil {
		t.Error("the old password still opens the file")
	}

	os.Remove(c.Files.PKCS12)
	res, err = a.ensure(t.Context(), c, false)
	if err != nil || res.Action != Restored || len(res.Missing) != 1 || res.Missing[0] != c.Files.PKCS12 {
		t.Fatalf("after deleting the file: %+v, %v", res, err)
	}
	if n := fv.count("web.example.internal"); n != 1 {
		t.Errorf("Vault was asked %d times, want once", n)
	}
}

// TestTemplateFailureKeepsTheWholeSet: a template that fails at render time
// fails the set; neither the key nor any other file changes, so the key on
// disk and the template never disagree.
func TestTemplateFailureKeepsTheWholeSet(t *testing.T) {
	cfg := testConfig(t, "web")
	c := withFormats(t, cfg, "")
	a := New(Options{Config: cfg, Issuer: newFakeVault(t)})
	if _, err := a.ensure(t.Context(), c, false); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain, c.Templates[0].Destination, c.Files.PKCS12)

	// Data-dependent: there is only one DNS name.
	c.Templates = append(c.Templates, config.Template{Text: "{{ with certificate }}\n{{ index .DNSNames 3 }}{{ end }}",
		Destination: filepath.Join(filepath.Dir(c.Files.Cert), "broken"), Mode: 0o600, UID: -1, GID: -1})
	_, err := a.ensure(t.Context(), c, true)
	if err == nil || !strings.Contains(err.Error(), "rendering template contents for") || !strings.Contains(err.Error(), "line 2: at <index .DNSNames 3>") {
		t.Fatalf("err = %v, want the template's line and what failed", err)
	}
	if after := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain, c.Templates[0].Destination, c.Files.PKCS12); after != before {
		t.Error("files changed although a template of the set failed")
	}
	if _, err := os.Stat(c.Templates[1].Destination); err == nil {
		t.Error("the failing template's file was written")
	}
}

// TestKeyInWorldReadableTemplateRefused: the last guard, for a config
// built without validate (or a template validate let through) whose output
// holds the key, plainly or encoded, in a file every user can read.
func TestKeyInWorldReadableTemplateRefused(t *testing.T) {
	for _, text := range []string{
		"{{ with certificate }}{{ if .Serial }}{{ .Key }}{{ end }}{{ end }}",
		"{{ with certificate }}{{ .Key | base64Encode }}{{ end }}",
		"{{ with certificate }}{{ sprig_b64enc .Key }}{{ end }}",
		"{{ certificate | toJSON | base64Encode }}",
	} {
		cfg := testConfig(t, "web")
		dest := filepath.Join(filepath.Dir(cfg.Certificates[0].Files.Cert), "leak.pem")
		cfg.Certificates[0].Templates = []config.Template{{Text: text, Destination: dest, Mode: 0o644, UID: -1, GID: -1}}
		a := New(Options{Config: cfg, Issuer: newFakeVault(t)})
		_, err := a.ensure(t.Context(), cfg.Certificates[0], false)
		if err == nil || !strings.Contains(err.Error(), "includes the private key but its mode 0644") {
			t.Errorf("%s: err = %v", text, err)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Errorf("%s: a world-readable file with the key was written", text)
		}
	}
}

// TestTemplateErrorCarriesNoKey: a template that fails on the key through
// a function that quotes its argument fails the set, and neither the error
// nor the status (which status and /v1/status show) holds the key.
func TestTemplateErrorCarriesNoKey(t *testing.T) {
	cfg := testConfig(t, "web")
	c := &cfg.Certificates[0]
	c.Templates = []config.Template{{Text: "{{ with certificate }}{{ parseInt .Key }}{{ end }}",
		Destination: filepath.Join(filepath.Dir(c.Files.Cert), "web.num"), Mode: 0o600, UID: -1, GID: -1}}
	a := New(Options{Config: cfg, Issuer: newFakeVault(t)})
	out := a.Once(t.Context())
	if out[0].Err == nil {
		t.Fatal("a template that cannot render did not fail the set")
	}
	h := a.pending["web"]
	if h == nil {
		t.Fatal("the certificate obtained was not kept for the next attempt")
	}
	key, err := pki.MarshalKey(h.bundle.Key)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Split(string(key), "\n")[1]
	for what, s := range map[string]string{"error": out[0].Err.Error(), "status": out[0].Status.LastError, "statuses": a.Statuses()[0].LastError} {
		if strings.Contains(s, body[:24]) {
			t.Errorf("the %s carries the private key: %s", what, s)
		}
		if !strings.Contains(s, "at <parseInt .Key>") {
			t.Errorf("the %s does not say where the template failed: %s", what, s)
		}
	}
}
