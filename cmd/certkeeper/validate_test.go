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

// TestValidateRefusesMissingCredentials: validate fails, at the line that
// names it, on an AppRole secret_id_file (or role_id_file, token_file,
// ca_cert) that does not exist: it said ok, and the daemon could never log
// in. A directory is no file either.
func TestValidateRefusesMissingCredentials(t *testing.T) {
	t.Setenv("VAULT_CACERT", "")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "role-id"), []byte("r\n"), 0o600)
	os.Mkdir(filepath.Join(dir, "ca.pem"), 0o700)
	cfg := filepath.Join(dir, "certkeeper.hcl")
	os.WriteFile(cfg, []byte(`vault {
  address = "https://vault.example.internal:8200"
  ca_cert = "`+dir+`/ca.pem"
  auth "approle" {
    role_id_file   = "`+dir+`/role-id"
    secret_id_file = "`+dir+`/secret-id"
  }
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
	if code := run([]string{"validate", "-config", cfg}, &out, &errOut); code != 1 {
		t.Fatalf("validate exited %d: %s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{
		cfg + ":6:22: secret_id_file " + dir + "/secret-id does not exist: certkeeper cannot log in to Vault without it",
		cfg + ":3:13: ca_cert " + dir + "/ca.pem is not a file",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("validate does not say\n%s\n:\n%s", want, errOut.String())
		}
	}
	if strings.Contains(errOut.String(), "role_id_file") {
		t.Errorf("validate refused the role_id_file that exists:\n%s", errOut.String())
	}

	os.WriteFile(filepath.Join(dir, "secret-id"), []byte("s\n"), 0o600)
	os.Remove(filepath.Join(dir, "ca.pem"))
	os.WriteFile(filepath.Join(dir, "ca.pem"), nil, 0o644)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"validate", "-config", cfg}, &out, &errOut); code != 0 || !strings.Contains(out.String(), ": ok") {
		t.Errorf("validate with every file in place exited %d: %s%s", code, out.String(), errOut.String())
	}
}

// TestValidateRefusesMissingCredentialsInAChain: every auth block of a
// chain has its files checked, not only a lone one: a later block whose
// secret_id_file is missing could never log in, so never be the way back.
func TestValidateRefusesMissingCredentialsInAChain(t *testing.T) {
	t.Setenv("VAULT_CACERT", "")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "role-id"), []byte("r\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "token"), []byte("t\n"), 0o600)
	cfg := filepath.Join(dir, "certkeeper.hcl")
	os.WriteFile(cfg, []byte(`vault {
  address = "https://vault.example.internal:8200"
  auth "token" {
    token_file = "`+dir+`/token"
  }
  auth "approle" {
    role_id_file   = "`+dir+`/role-id"
    secret_id_file = "`+dir+`/secret-id"
  }
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
	if code := run([]string{"validate", "-config", cfg}, &out, &errOut); code != 1 {
		t.Fatalf("validate exited %d: %s%s", code, out.String(), errOut.String())
	}
	want := cfg + ":8:22: secret_id_file " + dir + "/secret-id does not exist: this auth block cannot log in to Vault without it"
	if !strings.Contains(errOut.String(), want) {
		t.Errorf("validate does not say\n%s\n:\n%s", want, errOut.String())
	}
	os.WriteFile(filepath.Join(dir, "secret-id"), []byte("s\n"), 0o600)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"validate", "-config", cfg}, &out, &errOut); code != 0 {
		t.Errorf("validate with every file in place exited %d: %s%s", code, out.String(), errOut.String())
	}
}
