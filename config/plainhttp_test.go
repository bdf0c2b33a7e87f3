package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlainHTTPWarning: an http:// Vault address to another host is valid
// but sends the token and secret_id in clear: validate warns, at the
// address's line. Loopback and https addresses get no warning.
func TestPlainHTTPWarning(t *testing.T) {
	const cert = `
certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "/tmp/web.crt"
  key_file    = "/tmp/web.key"
}
`
	tests := []struct {
		address, env string
		warn         []string // addresses warned about
	}{
		{address: `"http://10.0.0.5:8200"`, warn: []string{"http://10.0.0.5:8200"}},
		{address: `"http://vault.example.internal:8200"`, warn: []string{"http://vault.example.internal:8200"}},
		{address: `["https://vault-a.example.internal:8200", "http://vault-b.example.internal:8200", "http://127.0.0.1:8200"]`, warn: []string{"http://vault-b.example.internal:8200"}},
		{address: `"http://127.0.0.1:8200"`},
		{address: `"http://127.8.9.10:8200"`},
		{address: `"http://localhost:8200"`},
		{address: `"http://[::1]:8200"`},
		{address: `"https://10.0.0.5:8200"`},
		{env: "http://192.0.2.7:8200", warn: []string{"http://192.0.2.7:8200 (from VAULT_ADDR)"}},
	}
	for _, tt := range tests {
		t.Setenv("VAULT_ADDR", tt.env)
		vault := "vault {\n}\n"
		if tt.address != "" {
			vault = "vault {\n  address = " + tt.address + "\n}\n"
		}
		path := filepath.Join(t.TempDir(), "certkeeper.hcl")
		os.WriteFile(path, []byte(vault+cert), 0o600)
		cfg, err := Load(path, Options{})
		if err != nil {
			t.Fatalf("%s: %v", tt.address, err)
		}
		if len(cfg.Warnings) != len(tt.warn) {
			t.Errorf("%s%s: warnings %q, want %d", tt.address, tt.env, cfg.Warnings, len(tt.warn))
			continue
		}
		for i, w := range tt.warn {
			line := "2:"
			if tt.env != "" {
				line = "1:"
			}
			want := path + ":" + line
			if got := cfg.Warnings[i]; !strings.HasPrefix(got, want) || !strings.Contains(got, "vault address "+w+" is plain http to a host that is not this one") {
				t.Errorf("warning %q, want it at %s about %s", got, want, w)
			}
		}
	}
}
