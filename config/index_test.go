package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestCertificateByName: lookups answer right from a loaded config, and
// still right when code changes the list afterwards (the index is then
// stale and must not be trusted).
func TestCertificateByName(t *testing.T) {
	var src strings.Builder
	src.WriteString("vault {\n  address = \"https://v:8200\"\n}\n")
	for i := range 30 {
		fmt.Fprintf(&src, "certificate \"c%d\" {\n  mount = \"pki_int\"\n  role = \"web\"\n  common_name = \"c%d.example.internal\"\n  cert_file = \"/tls/c%d.crt\"\n  key_file = \"/tls/c%d.key\"\n}\n", i, i, i, i)
	}
	cfg, err := Parse("index.hcl", []byte(src.String()), withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"c0", "c17", "c29"} {
		if c, ok := cfg.Certificate(name); !ok || c.Name != name || c.CommonName != name+".example.internal" {
			t.Errorf("Certificate(%q) = %q, %v", name, c.Name, ok)
		}
	}
	if _, ok := cfg.Certificate("c30"); ok {
		t.Error("found a certificate that is not configured")
	}

	cfg.Certificates = append(cfg.Certificates[:5], cfg.Certificates[6:]...) // drop c5, shift the rest
	cfg.Certificates = append(cfg.Certificates, Certificate{Name: "added"})
	if _, ok := cfg.Certificate("c5"); ok {
		t.Error("a removed certificate is still found")
	}
	for _, name := range []string{"c6", "c29", "added"} {
		if c, ok := cfg.Certificate(name); !ok || c.Name != name {
			t.Errorf("after editing the list, Certificate(%q) = %q, %v", name, c.Name, ok)
		}
	}
	if c, ok := (&Config{Certificates: []Certificate{{Name: "x"}}}).Certificate("x"); !ok || c.Name != "x" {
		t.Error("a Config built in code is not searched")
	}
}
