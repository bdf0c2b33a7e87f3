package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
)

// Each invalid file is paired with exactly what a user sees, so a change in
// wording or position is a deliberate, reviewed change.
func TestInvalidConfigs(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"invalid-auth-cert.hcl", `testdata/invalid-auth-cert.hcl:4:25: auth "cert": no certificate block named "vault-id" (cert auth logs in with a certificate certkeeper manages)
testdata/invalid-auth-cert.hcl:5:25: secret_id_wrapped does not apply to auth "cert"`},
		{"invalid-auth-chain.hcl", `testdata/invalid-auth-chain.hcl:6:3: auth method "kerberos" is not supported (use "approle", "aws", "cert", "jwt" or "token")
testdata/invalid-auth-chain.hcl:9:3: auth "aws" needs role
testdata/invalid-auth-chain.hcl:10:20: region "Frankfurt" is not an AWS region name such as "us-east-1"
testdata/invalid-auth-chain.hcl:13:3: auth "jwt" needs token_file (a file holding the JWT) or metadata ("gcp" or "azure", the metadata server that makes one)
testdata/invalid-auth-chain.hcl:20:3: auth "aws" with mount "aws" is defined twice (first at line 9); each auth block needs its own method or mount
testdata/invalid-auth-chain.hcl:21:21: role "team/web" must be a role name, without slashes
testdata/invalid-auth-chain.hcl:22:21: imds_endpoint "169.254.169.254" must be a base URL such as "http://169.254.169.254"
testdata/invalid-auth-chain.hcl:23:21: token_file does not apply to auth "aws"
testdata/invalid-auth-chain.hcl:25:3: only one auth "cert" block is allowed (the first is at line 3): a connection to vault presents one client certificate`},
		{"invalid-auth-jwt.hcl", `testdata/invalid-auth-jwt.hcl:7:18: set token_file or metadata, not both
testdata/invalid-auth-jwt.hcl:9:3: auth "jwt" with metadata = "gcp" needs audience: the audience Vault's role is bound to
testdata/invalid-auth-jwt.hcl:13:16: resource does not apply to metadata = "gcp" (it takes audience)
testdata/invalid-auth-jwt.hcl:15:3: auth "jwt" with metadata = "azure" needs resource: the audience Vault's role is bound to
testdata/invalid-auth-jwt.hcl:19:20: metadata_url "http://169.254.169.254/metadata?api-version=1" must be a base URL such as "http://169.254.169.254"
testdata/invalid-auth-jwt.hcl:24:16: metadata must be "gcp" or "azure", not "aws"
testdata/invalid-auth-jwt.hcl:30:18: audience applies only with metadata; a JWT from token_file carries its own audience
testdata/invalid-auth-jwt.hcl:31:18: region does not apply to auth "jwt"`},
		{"invalid-overwrites-auth-chain.hcl", `testdata/invalid-overwrites-auth-chain.hcl:2:13: auth "cert" needs https:// vault addresses: a client certificate only travels over TLS, and http://127.0.0.1:8200 is not one
testdata/invalid-overwrites-auth-chain.hcl:23:1: certificate "web" writes /etc/certkeeper/id.key, which certificate "vault-id" also writes
testdata/invalid-overwrites-auth-chain.hcl:27:17: certificate "web" cert_file /var/run/secrets/vault/token is the auth token_file (line 8), which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-auth-chain.hcl:28:17: certificate "web" key_file /etc/certkeeper/id.key is the client key of cert auth (line 11), which certkeeper reads: an output must never overwrite an input`},
		{"invalid-auth-cert-http.hcl", `testdata/invalid-auth-cert-http.hcl:2:13: auth "cert" needs https:// vault addresses: a client certificate only travels over TLS, and http://vault-b.example.internal:8200 is not one`},
		{"invalid-overwrites-credentials.hcl", `testdata/invalid-overwrites-credentials.hcl:15:17: certificate "web" key_file /etc/certkeeper/secret-id is the auth secret_id_file (line 6), which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-credentials.hcl:16:17: certificate "web" ca_file /etc/certkeeper/vault-ca.pem is the vault ca_cert (line 3), which certkeeper reads: an output must never overwrite an input`},
		{"invalid-overwrites-inputs.hcl", `testdata/invalid-overwrites-inputs.hcl:21:26: certificate "web" key_file /var/lib/certkeeper/web.key is inside state_dir /var/lib/certkeeper, whose files certkeeper reads back as its own state; write outputs elsewhere
testdata/invalid-overwrites-inputs.hcl:22:26: certificate "web" fullchain_file /run/nginx.pid is the pid_file of service "nginx" (line 13), which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-inputs.hcl:23:26: certificate "web" pkcs12_file /etc/certkeeper/role-id is the auth role_id_file (line 7), which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-inputs.hcl:27:19: certificate "web" template destination TESTDATA/invalid-overwrites-inputs.hcl is this config file, which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-inputs.hcl:27:19: certificate "web" template destination TESTDATA/invalid-overwrites-inputs.hcl is the pkcs12_password_file of certificate "web" (line 24), which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-inputs.hcl:31:19: certificate "web" template destination TESTDATA/templates/leaf.tmpl is a template source of certificate "web" (line 26), which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-inputs.hcl:41:17: certificate "api" pkcs12_file /etc/certkeeper/secret-id is the auth secret_id_file (line 8), which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-inputs.hcl:44:1: trust_bundle "clients" writes /etc/certkeeper/secret-id, which certificate "api" also writes
testdata/invalid-overwrites-inputs.hcl:46:14: trust_bundle "clients" ca_file /etc/certkeeper/secret-id is the auth secret_id_file (line 8), which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-inputs.hcl:47:14: trust_bundle "clients" crl_file /etc/certkeeper/vault-ca.pem is the vault ca_cert (line 5), which certkeeper reads: an output must never overwrite an input`},
		{"invalid-overwrites-cert-auth.hcl", `testdata/invalid-overwrites-cert-auth.hcl:17:1: certificate "web" writes /etc/certkeeper/vault-id.key, which certificate "vault-id" also writes
testdata/invalid-overwrites-cert-auth.hcl:25:19: certificate "web" template destination /etc/certkeeper/vault-id.key is the client key of cert auth (line 4), which certkeeper reads: an output must never overwrite an input
testdata/invalid-overwrites-cert-auth.hcl:29:1: trust_bundle "clients" writes /etc/certkeeper/vault-id.chain.pem, which certificate "vault-id" also writes
testdata/invalid-overwrites-cert-auth.hcl:31:13: trust_bundle "clients" ca_file /etc/certkeeper/vault-id.chain.pem is the client chain of cert auth (line 4), which certkeeper reads: an output must never overwrite an input`},
		{"invalid-auth.hcl", `testdata/invalid-auth.hcl:3:3: auth "approle" needs secret_id_file
testdata/invalid-auth.hcl:5:20: token_file does not apply to auth "approle"
testdata/invalid-auth.hcl:14:17: key_bits 256 does not fit key_type "rsa" (ec: 256, 384, 521; rsa: 2048, 3072, 4096; ed25519: leave unset)
testdata/invalid-auth.hcl:17:17: owner "no-such-user-here" is not a user on this host`},
		{"invalid-bad-values.hcl", `testdata/invalid-bad-values.hcl:2:13: vault address "vault.example.internal" must be an http:// or https:// URL
testdata/invalid-bad-values.hcl:3:13: timeout: "soon" is not a positive duration (examples: "90m", "72h", "30d")
testdata/invalid-bad-values.hcl:10:20: ip_sans: "not-an-ip" is not an IP address
testdata/invalid-bad-values.hcl:11:20: key_type must be "ec", "rsa" or "ed25519", not "dsa"
testdata/invalid-bad-values.hcl:12:20: issue_mode must be "sign" or "issue", not "fetch"
testdata/invalid-bad-values.hcl:13:20: renew_fraction must be between 0 and 1 (exclusive), not 1.5
testdata/invalid-bad-values.hcl:14:20: ttl: "-3h" is not a positive duration (examples: "90m", "72h", "30d")
testdata/invalid-bad-values.hcl:17:20: key_mode 0644 would let every user on the host read or change the private key; use 0600 or 0640
testdata/invalid-bad-values.hcl:18:20: cert_mode must be an octal permission such as "0640", not "rw-r--r--"`},
		{"invalid-binary.hcl", `testdata/invalid-binary.hcl:4:1: Invalid character: This character is not used within the language.
testdata/invalid-binary.hcl:4:1: Argument or block definition required: An argument or block definition is required here.
testdata/invalid-binary.hcl:4:2: Invalid character: This character is not used within the language.
testdata/invalid-binary.hcl:4:3: Invalid character: This character is not used within the language.
testdata/invalid-binary.hcl:4:4: Invalid character encoding: All input files must be UTF-8 encoded. Ensure that UTF-8 encoding is selected in your editor.`},
		{"invalid-duplicates.hcl", `testdata/invalid-duplicates.hcl:13:1: certificate "web" is defined twice (first at line 5)
testdata/invalid-duplicates.hcl:21:1: certificate "api" writes /tmp/web.key, which certificate "web" also writes`},
		{"invalid-empty.hcl", `testdata/invalid-empty.hcl:1:1: a "vault" block is required
testdata/invalid-empty.hcl:1:1: at least one "certificate" or "trust_bundle" block is required`},
		{"invalid-names.hcl", `testdata/invalid-names.hcl:5:1: certificate name ".web.json.certkeeper-tmp-1" must not begin with a dot: in state_dir, names beginning with a dot are certkeeper's temp files
testdata/invalid-names.hcl:13:1: certificate name ".." must not begin with a dot: in state_dir, names beginning with a dot are certkeeper's temp files
testdata/invalid-names.hcl:29:1: trust_bundle name ".clients" must not begin with a dot: in state_dir, names beginning with a dot are certkeeper's temp files`},
		{"invalid-missing.hcl", `testdata/invalid-missing.hcl:5:19: Missing required argument: The argument "cert_file" is required, but no definition was found.
testdata/invalid-missing.hcl:5:19: Missing required argument: The argument "mount" is required, but no definition was found.`},
		{"invalid-syntax.hcl", `testdata/invalid-syntax.hcl:4:19: Unclosed configuration block: There is no closing brace for this block before the end of the file. This may be caused by incorrect brace nesting elsewhere in this file.`},
		{"invalid-templates.hcl", `testdata/invalid-templates.hcl:9:26: pkcs12_password_file is set but pkcs12_file is not
testdata/invalid-templates.hcl:12:19: template source "templates/bad.tmpl": line 3: at <.Kye>: can't evaluate field Kye in type templates.Certificate
testdata/invalid-templates.hcl:16:19: template contents: line 2: function "secret" is disabled: templates render only the certificate certkeeper holds; they never call Vault (use the certificate function)
testdata/invalid-templates.hcl:16:19: template contents: line 3: function "file" is disabled: templates must not read local files: that would let a template copy any file certkeeper can read (another key, a token) into its output
testdata/invalid-templates.hcl:27:19: mode 0644 would let every user on the host read this template's output, which includes the private key; use 0600 or 0640
testdata/invalid-templates.hcl:30:19: stock template "nginx" does not exist (stock templates: bundle, haproxy, json)
testdata/invalid-templates.hcl:33:3: a template needs exactly one of source, contents or stock
testdata/invalid-templates.hcl:40:19: template destination /tmp/web.key is already an output of this certificate
testdata/invalid-templates.hcl:43:19: template contents: line 2: unexpected "}" in operand
testdata/invalid-templates.hcl:52:1: certificate "api" writes /tmp/web.crt, which certificate "web" also writes
testdata/invalid-templates.hcl:52:1: certificate "api" writes /tmp/web.json, which certificate "web" also writes`},
		{"invalid-template-key-encoded.hcl", `testdata/invalid-template-key-encoded.hcl:13:19: mode 0644 would let every user on the host read this template's output, which includes the private key; use 0600 or 0640
testdata/invalid-template-key-encoded.hcl:18:19: mode 0604 would let every user on the host read this template's output, which includes the private key; use 0600 or 0640`},
		{"invalid-telemetry.hcl", `testdata/invalid-telemetry.hcl:14:12: listen must be host:port such as "127.0.0.1:9847" (or "" to turn the endpoint off), not "9847"
testdata/invalid-telemetry.hcl:17:1: only one "telemetry" block is allowed (the first is at line 13)
testdata/invalid-telemetry.hcl:22:12: paths: "/etc/ssl/private/[*.pem" is not a valid glob pattern
testdata/invalid-telemetry.hcl:22:12: paths: an empty path watches nothing
testdata/invalid-telemetry.hcl:23:12: rescan: "often" is not a positive duration (examples: "90m", "72h", "30d")`},
		{"invalid-change-control.hcl", `testdata/invalid-change-control.hcl:5:16: renew_window: "any" cannot be one of several windows; use it alone
testdata/invalid-change-control.hcl:6:16: ca_soak: "a day" is not a positive duration (examples: "90m", "72h", "30d")
testdata/invalid-change-control.hcl:7:16: issuer_check: "0s" is not a positive duration (examples: "90m", "72h", "30d")
testdata/invalid-change-control.hcl:11:25: min_reload_interval: "1 minute" is not a positive duration (examples: "90m", "72h", "30d")
testdata/invalid-change-control.hcl:20:18: renew_window "Moon-Fri 02:00-05:00" days "Moon-Fri": "moon" is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges such as Mon-Fri, lists such as Sat,Sun, or daily)
testdata/invalid-change-control.hcl:20:18: renew_window "Mon 02:00-02:00" hours "02:00-02:00" open and close at once; the whole day is 00:00-24:00
testdata/invalid-change-control.hcl:20:18: renew_window "0 2 * * 1-5 2027 for 3h" cron part "0 2 * * 1-5 2027" must have 5 fields (minute hour day-of-month month day-of-week) or be one of @hourly, @daily, @weekly, @monthly, @yearly, @annually
testdata/invalid-change-control.hcl:20:18: renew_window "0 2 31 2 * for 1h" cron expression "0 2 31 2 *" never matches (a day such as 31 February)
testdata/invalid-change-control.hcl:20:18: renew_window "02:00-05:00 Mars/Olympus" time zone "Mars/Olympus" is not an IANA zone name such as Europe/Berlin or UTC
testdata/invalid-change-control.hcl:29:18: renew_window must be a window, a list of windows, or "any"`},
		{"invalid-telemetry-tls.hcl", `testdata/invalid-telemetry-tls.hcl:20:29: web_config_file TESTDATA/web-config-tls.yml has a tls_server_config, and tls_certificate also sets up TLS: keep one (with tls_certificate, the file may still hold basic_auth_users)
testdata/invalid-telemetry-tls.hcl:21:29: tls_certificate: no certificate block named "metrics" (the endpoint serves a certificate certkeeper manages)
testdata/invalid-telemetry-tls.hcl:22:29: tls_client_trust_bundle: no trust_bundle block named "scrapers"`},
		{"invalid-telemetry-names.hcl", `testdata/invalid-telemetry-names.hcl:19:29: tls_client_trust_bundle needs tls_certificate: client certificates are only asked for over TLS
testdata/invalid-telemetry-names.hcl:20:29: tls_client_names: an empty name matches no certificate
testdata/invalid-telemetry-names.hcl:21:29: textfile /tmp/web.crt must end in .prom: node_exporter's textfile collector reads no other file
testdata/invalid-telemetry-names.hcl:21:29: textfile /tmp/web.crt is also an output of certificate "web"`},
		{"invalid-telemetry-off.hcl", `testdata/invalid-telemetry-off.hcl:15:23: tls_certificate protects the telemetry endpoint, which listen = "" turns off
testdata/invalid-telemetry-off.hcl:16:23: tls_client_names protects the telemetry endpoint, which listen = "" turns off
testdata/invalid-telemetry-off.hcl:17:23: textfile_interval needs textfile`},
		{"invalid-unknown-key.hcl", `testdata/invalid-unknown-key.hcl:11:3: Unsupported argument: An argument named "colour" is not expected here.`},
		{"invalid-watch.hcl", `testdata/invalid-watch.hcl:17:1: watch needs the telemetry endpoint (which listen = "" turns off) or a textfile
testdata/invalid-watch.hcl:18:11: paths must list at least one file, directory or glob pattern`},
		{"invalid-services.hcl", `testdata/invalid-services.hcl:6:12: check must be a command and its arguments, such as ["nginx", "-t"]
testdata/invalid-services.hcl:8:12: set reload (a command) or signal (sent to the pid in pid_file), not both
testdata/invalid-services.hcl:11:1: service "apache" needs reload (a command) or pid_file (whose process is sent signal, HUP by default)
testdata/invalid-services.hcl:12:12: signal "USR9" is not one certkeeper sends (use HUP, USR1, USR2, WINCH, QUIT, INT, TERM or ALRM)
testdata/invalid-services.hcl:13:3: service "apache" has a verify block, but no certificate notifies it, so there is no certificate it should serve
testdata/invalid-services.hcl:14:15: verify address "localhost" must be host:port, such as "127.0.0.1:443"
testdata/invalid-services.hcl:18:1: service "nothing" needs reload (a command) or pid_file (whose process is sent signal, HUP by default)
testdata/invalid-services.hcl:19:12: settle: "soon" is not a positive duration (examples: "90m", "72h", "30d")
testdata/invalid-services.hcl:22:1: service "nginx" is defined twice (first at line 5)
testdata/invalid-services.hcl:32:17: notify: there is no service "ngnix" (defined: nginx, apache, nothing)
testdata/invalid-services.hcl:35:1: trust_bundle "clients" writes /tmp/web.crt, which certificate "web" also writes
testdata/invalid-services.hcl:37:17: set mount or mounts, not both
testdata/invalid-services.hcl:39:17: crl_file and ca_file must be different files
testdata/invalid-services.hcl:40:17: notify: there is no service "apache2" (defined: nginx, apache, nothing)
testdata/invalid-services.hcl:41:17: crl_refresh: "0s" is not a positive duration (examples: "90m", "72h", "30d")
testdata/invalid-services.hcl:44:1: trust_bundle "nomount" needs mount (a PKI mount) or mounts (a list, such as ["pki_int", "pki"])
testdata/invalid-services.hcl:48:1: trust_bundle "clients" is defined twice (first at line 35)`},
		{"invalid-revocation.hcl", `testdata/invalid-revocation.hcl:9:26: client_certificate: there is no certificate "caller"
testdata/invalid-revocation.hcl:17:26: client_certificate proves that clients still get in after a trust bundle changes, but no trust_bundle notifies service "apache"
testdata/invalid-revocation.hcl:28:22: revoke_grace only applies with revoke_superseded = true
testdata/invalid-revocation.hcl:29:22: revocation_check: "never" is not a positive duration (examples: "90m", "72h", "30d")`},
		{"invalid-trust-unknown-key.hcl", `testdata/invalid-trust-unknown-key.hcl:16:3: Unsupported argument: An argument named "crl" is not expected here.
testdata/invalid-trust-unknown-key.hcl:23:5: Unsupported argument: An argument named "sni" is not expected here.`},
		{"invalid-wrong-type.hcl", `testdata/invalid-wrong-type.hcl:9:18: Unsuitable value type: Unsuitable value: list of string required, but have string
testdata/invalid-wrong-type.hcl:10:18: Unsuitable value type: Unsuitable value: a number is required`},
	}
	// Paths the config resolves against its own directory are absolute in
	// messages; TESTDATA stands for that directory here.
	testdata, _ := filepath.Abs("testdata")
	files, _ := filepath.Glob("testdata/invalid-*.hcl")
	if len(files) != len(tests) {
		t.Errorf("%d invalid-*.hcl files but %d table rows: every file needs its expected message", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := config.Load(filepath.Join("testdata", tt.file), withTemplates)
			if err == nil {
				t.Fatalf("loaded without error: %+v", cfg)
			}
			if want := strings.ReplaceAll(tt.want, "TESTDATA", testdata); err.Error() != want {
				t.Errorf("got:\n%s\nwant:\n%s", err, want)
			}
		})
	}
}

func TestValidFull(t *testing.T) {
	cfg, err := config.Load("testdata/valid-full.hcl", withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	web, ok := cfg.Certificate("web")
	if !ok {
		t.Fatal("certificate web missing")
	}
	if web.KeyBits != 384 || web.KeyMode != 0o640 || web.RenewBefore != 24*time.Hour || web.TTL != 72*time.Hour {
		t.Errorf("web decoded wrong: %+v", web)
	}
	if len(web.IPSANs) != 1 || web.IPSANs[0].String() != "127.0.0.1" {
		t.Errorf("ip_sans = %v", web.IPSANs)
	}
	if web.UID != 0 || web.GID != 0 {
		t.Errorf("owner root/root resolved to %d/%d", web.UID, web.GID)
	}
	if cfg.Vault.Auth[0].Method != config.AuthAppRole || cfg.Vault.Auth[0].Mount != "approle" {
		t.Errorf("auth = %+v", cfg.Vault.Auth[0])
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := config.Load("testdata/valid-full.hcl", withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	client, _ := cfg.Certificate("client")
	abs, _ := filepath.Abs("testdata/tls/client.crt")
	if client.Files.Cert != abs {
		t.Errorf("relative cert_file resolved to %q, want %q (relative to the config file)", client.Files.Cert, abs)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"key_type", client.KeyType, config.KeyEC},
		{"key_bits", client.KeyBits, 256},
		{"issue_mode", client.IssueMode, config.ModeSign},
		{"renew_fraction", client.RenewFraction, 0.66},
		{"renew_jitter", client.RenewJitter, 0.10},
		{"key_mode", client.KeyMode, config.DefaultKeyMode},
		{"cert_mode", client.CertMode, config.DefaultCertMode},
		{"uid", client.UID, -1},
		{"timeout", cfg.Vault.Timeout, config.DefaultTimeout},
		{"max_parallel", cfg.Vault.MaxParallel, config.DefaultMaxParallel},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("default %s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestEnvironmentDefaults(t *testing.T) {
	t.Setenv("VAULT_ADDR", "https://vault.from.env:8200")
	t.Setenv("VAULT_CACERT", "/env/ca.pem")
	src := []byte(`
vault {}
certificate "a" {
  mount = "pki"
  role = "r"
  common_name = "a.example.internal"
  cert_file = "/tmp/a.crt"
  key_file = "/tmp/a.key"
}
`)
	cfg, err := config.Parse("env.hcl", src, withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Vault.Addresses[0] != "https://vault.from.env:8200" || cfg.Vault.CACert != "/env/ca.pem" {
		t.Errorf("vault = %+v", cfg.Vault)
	}
	if cfg.Vault.Auth[0].Method != config.AuthToken {
		t.Errorf("no auth block should mean token auth from VAULT_TOKEN, got %q", cfg.Vault.Auth[0].Method)
	}
	// VAULT_SKIP_VERIFY must never turn verification off by itself.
	t.Setenv("VAULT_SKIP_VERIFY", "1")
	cfg, _ = config.Parse("env.hcl", src, withTemplates)
	if cfg.Vault.TLSSkipVerify {
		t.Error("VAULT_SKIP_VERIFY disabled TLS verification without tls_skip_verify in the config")
	}
}

func TestAddressList(t *testing.T) {
	src := []byte(`
vault { address = ["https://a:8200", "https://b:8200"] }
certificate "a" {
  mount = "pki"
  role = "r"
  common_name = "a.example.internal"
  cert_file = "/tmp/a.crt"
  key_file = "/tmp/a.key"
}
`)
	cfg, err := config.Parse("list.hcl", src, withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Vault.Addresses) != 2 || cfg.Vault.Addresses[1] != "https://b:8200" {
		t.Errorf("addresses = %v", cfg.Vault.Addresses)
	}
}

func TestHugeFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.hcl")
	if err := os.WriteFile(path, make([]byte, config.MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, withTemplates); err == nil {
		t.Fatal("a file over the size limit was loaded")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90m": 90 * time.Minute, "72h": 72 * time.Hour, "30d": 30 * 24 * time.Hour} {
		if got, err := config.ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0s", "-1h", "1.5d", "d", "soon"} {
		if _, err := config.ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestCertAuthUsesManagedCertificate(t *testing.T) {
	src := []byte(`
vault {
  address = ["https://a:8200", "https://b:8200"]
  auth "cert" {
    certificate = "vault-identity"
    name        = "hosts"
  }
}
certificate "vault-identity" {
  mount       = "pki_int"
  role        = "host"
  common_name = "host1.example.internal"
  cert_file   = "/etc/certkeeper/id.crt"
  key_file    = "/etc/certkeeper/id.key"
  chain_file  = "/etc/certkeeper/id.chain.pem"
}
`)
	cfg, err := config.Parse("cert.hcl", src, withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Vault.Auth[0]
	if a.Method != config.AuthCert || a.Mount != "cert" || a.CertRole != "hosts" || a.Certificate != "vault-identity" {
		t.Errorf("auth = %+v", a)
	}
	if a.ClientCert != "/etc/certkeeper/id.crt" || a.ClientKey != "/etc/certkeeper/id.key" || a.ClientChain != "/etc/certkeeper/id.chain.pem" {
		t.Errorf("cert auth files = %q %q %q", a.ClientCert, a.ClientKey, a.ClientChain)
	}
}

func TestWrappedSecretID(t *testing.T) {
	src := []byte(`
vault {
  address = "https://a:8200"
  auth "approle" {
    role_id_file      = "/etc/certkeeper/role-id"
    secret_id_file    = "/etc/certkeeper/secret-id.wrapped"
    secret_id_wrapped = true
  }
}
certificate "a" {
  mount = "pki"
  role = "r"
  common_name = "a.example.internal"
  cert_file = "/tmp/a.crt"
  key_file = "/tmp/a.key"
}
`)
	cfg, err := config.Parse("wrapped.hcl", src, withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Vault.Auth[0].SecretIDWrapped || cfg.Vault.Auth[0].SecretIDFile != "/etc/certkeeper/secret-id.wrapped" {
		t.Errorf("auth = %+v", cfg.Vault.Auth[0])
	}
}

// TestAuthChain: the fleet pattern, every method in one config, decoded in
// order with each method's defaults, and the cert block resolved to the
// files of its certificate wherever it stands in the chain.
func TestAuthChain(t *testing.T) {
	src := []byte(`
vault {
  address = "https://vault.example.internal:8200"
  auth "cert" {
    certificate = "vault-identity"
  }
  auth "aws" {
    role         = "web-host"
    header_value = "vault.example.internal"
  }
  auth "jwt" {
    mount    = "jwt-gcp"
    role     = "web-host"
    metadata = "gcp"
    audience = "vault/certkeeper"
  }
  auth "jwt" {
    mount        = "jwt-azure"
    role         = "web-host"
    metadata     = "azure"
    resource     = "https://vault.example.internal"
    metadata_url = "http://127.0.0.1:8080/"
  }
  auth "jwt" {
    role       = "web-host"
    token_file = "token.jwt"
  }
  auth "approle" {
    role_id_file      = "/etc/certkeeper/role-id"
    secret_id_file    = "/etc/certkeeper/secret-id"
    secret_id_wrapped = true
  }
}
certificate "vault-identity" {
  mount       = "pki_clients"
  role        = "client"
  common_name = "host1.example.internal"
  cert_file   = "/etc/certkeeper/id.crt"
  key_file    = "/etc/certkeeper/id.key"
}
`)
	cfg, err := config.Parse("/etc/certkeeper/chain.hcl", src, withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	want := []config.Auth{
		{Method: "cert", Mount: "cert", Certificate: "vault-identity", ClientCert: "/etc/certkeeper/id.crt", ClientKey: "/etc/certkeeper/id.key"},
		{Method: "aws", Mount: "aws", Role: "web-host", Region: "us-east-1", HeaderValue: "vault.example.internal", IMDSEndpoint: "http://169.254.169.254"},
		{Method: "jwt", Mount: "jwt-gcp", Role: "web-host", Metadata: "gcp", Audience: "vault/certkeeper", MetadataURL: "http://metadata.google.internal"},
		{Method: "jwt", Mount: "jwt-azure", Role: "web-host", Metadata: "azure", Audience: "https://vault.example.internal", MetadataURL: "http://127.0.0.1:8080"},
		{Method: "jwt", Mount: "jwt", Role: "web-host", TokenFile: "/etc/certkeeper/token.jwt"},
		{Method: "approle", Mount: "approle", RoleIDFile: "/etc/certkeeper/role-id", SecretIDFile: "/etc/certkeeper/secret-id", SecretIDWrapped: true},
	}
	if len(cfg.Vault.Auth) != len(want) {
		t.Fatalf("%d auth methods, want %d: %+v", len(cfg.Vault.Auth), len(want), cfg.Vault.Auth)
	}
	for i := range want {
		if cfg.Vault.Auth[i] != want[i] {
			t.Errorf("auth %d:\n got %+v\nwant %+v", i, cfg.Vault.Auth[i], want[i])
		}
	}
}
