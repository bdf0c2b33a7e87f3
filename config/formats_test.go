package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/config"
)

// TestTemplatesAndPKCS12 loads every way of giving a template and checks
// what the agent will get: the text (read at load), defaults, and the paths
// to write and to watch.
func TestTemplatesAndPKCS12(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "haproxy.tmpl")
	if err := os.WriteFile(src, []byte("[[ with certificate ]][[ .Cert ]][[ .Key ]][[ end ]]"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "p12.pass")
	if err := os.WriteFile(pw, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "certkeeper.hcl")
	cfgText := `
vault { address = "https://vault.example.internal:8200" }
certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  alt_names   = ["web.example.internal"]
  ip_sans     = ["127.0.0.1"]
  cert_file   = "web.crt"
  key_file    = "web.key"
  pkcs12_file          = "web.p12"
  pkcs12_password_file = "p12.pass"
  template {
    source         = "haproxy.tmpl"
    destination    = "web.custom.pem"
    left_delimiter  = "[["
    right_delimiter = "]]"
  }
  template {
    stock       = "json"
    destination = "web.json"
    mode        = "0640"
  }
  template {
    contents    = "{{ with certificate }}{{ index .IPSANs 0 }} {{ .NotAfter.Format \"2006\" }}{{ end }}"
    destination = "web.info"
    mode        = "0644"
  }
}
`
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	web := cfg.Certificates[0]
	if len(web.Templates) != 3 {
		t.Fatalf("%d templates, want 3", len(web.Templates))
	}
	custom, stock, inline := web.Templates[0], web.Templates[1], web.Templates[2]
	if custom.Source != src || !strings.Contains(custom.Text, "[[ .Key ]]") || custom.LeftDelim != "[[" {
		t.Errorf("source template = %+v", custom)
	}
	if custom.Mode != config.DefaultTemplateMode || custom.UID != web.UID {
		t.Errorf("source template defaults: mode %o uid %d", custom.Mode, custom.UID)
	}
	if stock.Stock != "json" || !strings.Contains(stock.Text, "toJSONPretty") || stock.Mode != 0o640 {
		t.Errorf("stock template = %+v", stock)
	}
	if inline.Source != "" || inline.Mode != 0o644 {
		t.Errorf("inline template = %+v", inline)
	}
	if web.Files.PKCS12 != filepath.Join(dir, "web.p12") || web.PKCS12PasswordFile != pw {
		t.Errorf("pkcs12 = %q, %q", web.Files.PKCS12, web.PKCS12PasswordFile)
	}
	wantOut := []string{"web.crt", "web.key", "web.p12", "web.custom.pem", "web.json", "web.info"}
	for i := range wantOut {
		wantOut[i] = filepath.Join(dir, wantOut[i])
	}
	if got := web.OutputPaths(); !slices.Equal(got, wantOut) {
		t.Errorf("OutputPaths = %v, want %v", got, wantOut)
	}
	if got := cfg.InputPaths(); !slices.Equal(got, []string{src, pw}) {
		t.Errorf("InputPaths = %v", got)
	}
}

// TestTemplateSourceReadAtLoad: the template text is what the file held
// when the config was loaded; a later edit changes nothing until a reload.
func TestTemplateSourceReadAtLoad(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "t.tmpl")
	os.WriteFile(src, []byte("{{ with certificate }}{{ .Cert }}{{ end }}"), 0o600)
	cfgPath := filepath.Join(dir, "c.hcl")
	os.WriteFile(cfgPath, []byte(`
vault { address = "https://v:8200" }
certificate "a" {
  mount = "pki"
  role = "r"
  common_name = "a.example.internal"
  cert_file = "a.crt"
  key_file = "a.key"
  template {
    source = "t.tmpl"
    destination = "a.out"
  }
}
`), 0o600)
	cfg, err := config.Load(cfgPath, withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(src, []byte("{{ secret \"x\" }}"), 0o600)
	if got := cfg.Certificates[0].Templates[0].Text; got != "{{ with certificate }}{{ .Cert }}{{ end }}" {
		t.Errorf("template text changed with the file: %q", got)
	}
	if _, err := config.Load(cfgPath, withTemplates); err == nil || !strings.Contains(err.Error(), `function "secret" is disabled`) {
		t.Errorf("reloading with a disabled function: %v", err)
	}
}
