package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateWarnsPlainHTTP: validate passes a plain-http Vault address
// to another host, but says on stderr, at the config line, what it risks.
func TestValidateWarnsPlainHTTP(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	for addr, warn := range map[string]bool{"http://10.0.0.5:8200": true, "http://127.0.0.1:8200": false, "https://10.0.0.5:8200": false} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "certkeeper.hcl")
		os.WriteFile(cfg, []byte(`vault {
  address = "`+addr+`"
}
certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "`+dir+`/web.crt"
  key_file    = "`+dir+`/web.key"
}
`), 0o600)
		var out, errOut bytes.Buffer
		if code := run([]string{"validate", "-config", cfg}, &out, &errOut); code != 0 {
			t.Fatalf("%s: validate exited %d: %s%s", addr, code, out.String(), errOut.String())
		}
		want := "warning: " + cfg + ":2:13: vault address " + addr + " is plain http to a host that is not this one"
		if got := strings.Contains(errOut.String(), want); got != warn {
			t.Errorf("%s: warned %v, want %v:\n%s", addr, got, warn, errOut.String())
		}
		if !strings.Contains(out.String(), ": ok (1 certificates)") {
			t.Errorf("%s: validate did not say ok: %s", addr, out.String())
		}
	}
}
