//go:build integration

package integration

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestVaultSetupScript runs examples/vault/setup-pki.sh against a dev Vault
// (twice: it must be idempotent), then has certkeeper get a server and a
// client certificate through the AppRole and policy the script made.
func TestVaultSetupScript(t *testing.T) {
	v := vaulttest.New(t, vaulttest.Options{})
	vaultBin, err := vaulttest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	root := moduleRoot(t)
	out := t.TempDir()
	script := filepath.Join(root, "examples", "vault", "setup-pki.sh")
	env := append(cleanEnv(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.RootToken, "OUT="+out,
		"PATH="+filepath.Dir(vaultBin)+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+out)
	for i := range 2 {
		cmd := exec.Command("bash", script)
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run %d of setup-pki.sh: %v\n%s", i+1, err, b)
		}
	}
	c := v.Client
	for _, m := range []string{"pki_root", "pki_servers", "pki_clients"} {
		// auto_rebuild off: a revocation rebuilds the CRL at once (with it
		// on, not until the periodic rebuild, days later).
		crl, err := c.Logical().Read(m + "/config/crl")
		if err != nil || crl.Data["auto_rebuild"] != false || crl.Data["enable_delta"] != false || crl.Data["expiry"] != "72h" {
			t.Errorf("%s CRL config: %v %v", m, crl, err)
		}
		tune, err := c.Sys().MountConfig(m)
		if err != nil || !slices.Contains(tune.PassthroughRequestHeaders, "If-Modified-Since") {
			t.Errorf("%s: If-Modified-Since does not reach the PKI engine: %+v %v", m, tune, err)
		}
	}
	tidy, err := c.Logical().Read("pki_servers/config/auto-tidy")
	if err != nil || tidy.Data["enabled"] != true {
		t.Errorf("auto-tidy: %v %v", tidy, err)
	}
	workload, err := c.Logical().Read("pki_clients/roles/workload")
	if err != nil || workload.Data["no_store"] != true {
		t.Errorf("workload role should be no_store: %v %v", workload, err)
	}

	// A host configured against this PKI gets both certificates with the
	// script's AppRole.
	rid, _ := c.Logical().Read("auth/approle/role/web-host/role-id")
	sid, _ := c.Logical().Write("auth/approle/role/web-host/secret-id", nil)
	dir := t.TempDir()
	rf, sf := vaulttest.WriteCreds(t, dir, rid.Data["role_id"].(string), sid.Data["secret_id"].(string))
	cfg := filepath.Join(dir, "certkeeper.hcl")
	os.WriteFile(cfg, []byte(`
state_dir = "state"
vault {
  address = "`+v.Addr+`"
  auth "approle" {
    role_id_file   = "`+rf+`"
    secret_id_file = "`+sf+`"
  }
}
certificate "web" {
  mount          = "pki_servers"
  role           = "web"
  common_name    = "web1.example.internal"
  cert_file      = "tls/web.crt"
  key_file       = "tls/web.key"
  fullchain_file = "tls/web.fullchain.pem"
  ca_file        = "tls/web.ca.pem"
}
certificate "client" {
  mount       = "pki_clients"
  role        = "client"
  common_name = "caller.example.internal"
  cert_file   = "tls/client.crt"
  key_file    = "tls/client.key"
  ca_file     = "tls/client.ca.pem"
}
`), 0o600)
	stdout, stderr, code := once(t, cfg)
	if code != 0 {
		t.Fatalf("once against the scripted PKI exited %d:\n%s\n%s", code, stdout, stderr)
	}
	openssl(t, "verify", "-CAfile", filepath.Join(dir, "tls/web.ca.pem"), filepath.Join(dir, "tls/web.fullchain.pem"))

	// With the shipped settings a revocation is in the CRL at once, and an
	// unchanged CRL costs a poller a 304.
	serial := openssl(t, "x509", "-in", filepath.Join(dir, "tls/client.crt"), "-noout", "-serial")
	serial = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(serial, "serial=")))
	get := func(since time.Time) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", v.Addr+"/v1/pki_clients/crl/pem", nil)
		if !since.IsZero() {
			req.Header.Set("If-Modified-Since", since.UTC().Format(http.TimeFormat))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	time.Sleep(1100 * time.Millisecond) // If-Modified-Since has whole seconds
	if resp, _ := get(time.Now()); resp.StatusCode != http.StatusNotModified {
		t.Errorf("unchanged CRL asked with If-Modified-Since: %s, want 304", resp.Status)
	}
	before := time.Now()
	var hex []string
	for i := 0; i+2 <= len(serial); i += 2 {
		hex = append(hex, serial[i:i+2])
	}
	v.Revoke(t, "pki_clients", strings.Join(hex, ":"))
	resp, body := get(before.Add(-time.Second))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CRL after a revocation: %s", resp.Status)
	}
	crlFile := filepath.Join(dir, "after.crl")
	os.WriteFile(crlFile, body, 0o600)
	if text := openssl(t, "crl", "-in", crlFile, "-noout", "-text"); !strings.Contains(strings.ToLower(strings.ReplaceAll(text, ":", "")), serial) {
		t.Errorf("the CRL served right after the revocation does not list serial %s:\n%s", serial, text)
	}
	purpose := openssl(t, "x509", "-in", filepath.Join(dir, "tls/client.crt"), "-noout", "-ext", "extendedKeyUsage")
	if !strings.Contains(purpose, "TLS Web Client Authentication") || strings.Contains(purpose, "Server") {
		t.Errorf("client certificate usage: %s", purpose)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/certkeeper/certkeeper").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
