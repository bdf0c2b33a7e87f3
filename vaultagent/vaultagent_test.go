package vaultagent_test

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	hcl1 "github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/telemetry"
	"github.com/certkeeper/certkeeper/templates"
	"github.com/certkeeper/certkeeper/vaultagent"
)

var update = flag.Bool("update", false, "write testdata/*.golden from the converter")

// configs are the Vault Agent configurations of testdata: the benchmark's,
// ones written after Vault's and consul-template's documentation, and one
// of things certkeeper does not do.
func configs(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"testdata/*.hcl", "testdata/*.json"} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	if len(out) < 5 {
		t.Fatalf("only %d configs in testdata", len(out))
	}
	return out
}

func convert(t *testing.T, path string) *vaultagent.Result {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := vaultagent.Convert(src, vaultagent.Options{Path: path, GroupExists: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestConvertGolden pins what the converter prints for each config; each
// output also loads as a certkeeper config, templates checked, as
// `certkeeper validate` loads it. -update writes the golden files.
func TestConvertGolden(t *testing.T) {
	for _, path := range configs(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			res := convert(t, path)
			if _, err := config.Parse(filepath.Join(t.TempDir(), "certkeeper.hcl"), res.Config,
				config.Options{Templates: templates.Checker{}, WebConfig: telemetry.WebConfigChecker{}}); err != nil {
				t.Fatalf("the converted config does not validate:\n%v\n%s", err, res.Config)
			}
			golden := strings.TrimSuffix(path, filepath.Ext(path)) + ".golden"
			if *update {
				if err := os.WriteFile(golden, res.Config, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != string(res.Config) {
				t.Errorf("output differs from %s (go test -update writes it):\n%s", golden, res.Config)
			}
		})
	}
}

// flatten joins the output's lines, comment marks and indentation
// removed, so a test can look for a sentence that wraps.
func flatten(out string) string {
	var words []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimLeft(strings.TrimSpace(line), "#")
		words = append(words, strings.Fields(line)...)
	}
	return strings.Join(words, " ")
}

// translated are the keys of a template block the converter turns into
// certkeeper settings; every other key of a template, and every top-level
// block besides vault, auto_auth and template_config, must be named in
// the output by its line.
var translated = []string{"destination", "source", "contents", "perms", "command", "command_timeout", "exec",
	"user", "group", "uid", "gid", "left_delimiter", "right_delimiter"}

// TestNothingIsDropped: every template and every setting the converter
// does not turn into certkeeper's is in the output by its line, either as
// the source of a certificate or among what is not translated.
func TestNothingIsDropped(t *testing.T) {
	for _, path := range configs(t) {
		if filepath.Ext(path) == ".json" {
			continue // JSON has no lines; the golden file pins it
		}
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := hcl1.ParseBytes(src)
			if err != nil {
				t.Fatal(err)
			}
			out := string(convert(t, path).Config)
			mentioned := map[int]bool{}
			for _, m := range regexp.MustCompile(`\blines? ([0-9]+(?:(?:, | and )[0-9]+)*)`).FindAllStringSubmatch(flatten(out), -1) {
				for _, n := range regexp.MustCompile(`[0-9]+`).FindAllString(m[1], -1) {
					i, _ := strconv.Atoi(n)
					mentioned[i] = true
				}
			}
			for _, it := range f.Node.(*ast.ObjectList).Items {
				key := it.Keys[0].Token.Text
				switch key {
				case "vault", "auto_auth", "template_config":
					continue
				case "template":
					if !mentioned[it.Pos().Line] {
						t.Errorf("the template at line %d is not mentioned", it.Pos().Line)
					}
					for _, inner := range it.Val.(*ast.ObjectType).List.Items {
						k := inner.Keys[0].Token.Text
						if !slices.Contains(translated, k) && !mentioned[inner.Pos().Line] && !(k == "create_dest_dirs") {
							t.Errorf("%s at line %d is not mentioned", k, inner.Pos().Line)
						}
					}
				default:
					if !mentioned[it.Pos().Line] {
						t.Errorf("%s at line %d is not mentioned", key, it.Pos().Line)
					}
				}
			}
		})
	}
}

// The configuration certkeeper cannot take whole: each thing beyond it is
// said, with its reason, and what it can take is translated.
func TestConvertUntranslatable(t *testing.T) {
	res := convert(t, "testdata/untranslatable.hcl")
	out := string(res.Config)
	flat := flatten(out)
	for _, want := range []string{
		`auto_auth method "kubernetes": certkeeper logs in with approle, token, aws, jwt or cert`,
		`auto_auth sink "file" (/var/run/secrets/vault-token): certkeeper keeps its Vault token in memory`,
		`cache: Vault Agent's cache`,
		`listener tcp:`,
		`vault ca_path:`,
		`vault retry:`,
		`exit_on_retry_failure: certkeeper never exits`,
		`/etc/payments/db.env: it reads secret "kv/data/payments/db", which is not a certificate`,
		`/etc/payments/tls/host.pem: its pkiCert call computes an argument when it renders`,
		`/etc/payments/tls/signed.pem: it reads secret "pki_int/sign/payments"`,
		`/etc/payments/bundle.txt: it reads secret "kv/data/payments/db"`,
		`backup: certkeeper keeps no .bak copy`,
		`wait: certkeeper waits for a service's changes to settle`,
		`env_template DB_PASSWORD:`,
		`exec: process supervisor mode`,
		`telemetry: Vault Agent's own metrics`,
		`other_sans=1.2.3.4;UTF8:payments is not translated`,
		`Vault Agent wrote it 0644, readable by every user on the host; certkeeper writes it 0600`,
		`which may not reload services with systemctl`,
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the output does not say %q", want)
		}
	}
	if res.Certificates != 1 || res.Skipped != 18 {
		t.Errorf("%d certificates, %d not translated; want 1 and 18", res.Certificates, res.Skipped)
	}
	if !strings.Contains(out, `certificate "payments.example.internal"`) || !strings.Contains(out, `service "payments"`) {
		t.Errorf("the one translatable template is not translated:\n%s", out)
	}
}

// What the operator must know is said whatever the config: sign mode,
// spread renewals, no re-issue on restart, and the key format.
func TestConvertSaysWhatChanges(t *testing.T) {
	out := flatten(string(convert(t, "testdata/split-secret.hcl").Config))
	for _, want := range []string{
		"certkeeper sends Vault a CSR (<mount>/sign/<role>) and the key never leaves the host",
		"renews at 66% of each certificate's lifetime, give or take 10% at random",
		"Vault Agent renewed at about 90% of it",
		"A restart does not issue new certificates",
		"Vault Agent's secret function issued new ones at every start",
		"Keys are PKCS#8 PEM",
		"Vault Agent deleted", // remove_secret_id_file_after_reading defaults to true... but this config sets false
	} {
		if want == "Vault Agent deleted" {
			if strings.Contains(out, want) {
				t.Errorf("says the secret_id was deleted, but the config keeps it (remove_secret_id_file_after_reading = false)")
			}
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q", want)
		}
	}
}

// Vault Agent makes one request for identical secret calls in several
// templates, so their files hold one certificate; pkiCert keeps a
// certificate per destination, so each of its templates has its own.
func TestIdenticalCalls(t *testing.T) {
	tmpl := func(dest, fn string) string {
		return "template {\n  destination = \"" + dest + "\"\n  contents = \"{{ with " + fn + " \\\"pki_int/issue/web\\\" \\\"common_name=web.example.internal\\\" }}{{ .Data.certificate }}{{ end }}\"\n}\n"
	}
	for _, tt := range []struct {
		fn   string
		want int
	}{{"secret", 1}, {"pkiCert", 2}} {
		src := "vault { address = \"https://vault.example.internal:8200\" }\n" + tmpl("/etc/a/one.pem", tt.fn) + tmpl("/etc/a/two.pem", tt.fn)
		if tt.fn == "pkiCert" {
			src = strings.ReplaceAll(src, ".Data.certificate", ".Cert")
		}
		res, err := vaultagent.Convert([]byte(src), vaultagent.Options{Path: "agent.hcl"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Certificates != tt.want {
			t.Errorf("two templates with the same %s call: %d certificates, want %d\n%s", tt.fn, res.Certificates, tt.want, res.Config)
		}
	}
}

// Each auto_auth method Vault Agent has, and what certkeeper's vault block
// says for it.
func TestConvertAuth(t *testing.T) {
	const tmpl = `
template {
  destination = "/etc/a/a.pem"
  contents    = "{{ with secret \"pki_int/issue/web\" \"common_name=a.example.internal\" }}{{ .Data.certificate }}{{ end }}"
}
`
	for _, tt := range []struct {
		name, method string
		want, not    []string
	}{
		{"approle, wrapped, own mount", `method "approle" {
    mount_path = "auth/approle-prod"
    config = {
      role_id_file_path                = "/etc/va/role-id"
      secret_id_file_path              = "/etc/va/wrapped-secret-id"
      secret_id_response_wrapping_path = "auth/approle-prod/role/web/secret-id"
    }
  }`, []string{`auth "approle" {`, `mount = "approle-prod"`, `secret_id_file = "/etc/va/wrapped-secret-id"`, `secret_id_wrapped = true`,
			"Vault Agent deleted /etc/va/wrapped-secret-id after reading it"}, nil},
		{"token file", `method "token_file" {
    config = { token_file_path = "/etc/va/token" }
  }`, []string{`auth "token" {`, `token_file = "/etc/va/token"`}, []string{"    mount ="}},
		{"cert", `method "cert" {
    config = { client_cert = "/etc/va/client.crt", client_key = "/etc/va/client.key" }
  }`, []string{`auto_auth method "cert" (/etc/va/client.crt): certkeeper logs in with a client certificate it manages itself`,
			"No auth block: the token comes from VAULT_TOKEN"}, []string{"\n  auth \""}},
		{"aws", `method "aws" {
    config = { type = "iam", role = "web" }
  }`, []string{`auth "aws" {`, `role = "web"`}, []string{"No auth block"}},
		{"kubernetes", `method "kubernetes" {
    config = { role = "web" }
  }`, []string{`auto_auth method "kubernetes": certkeeper logs in with approle, token, aws, jwt or cert`}, []string{"\n  auth \""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := "vault { address = \"https://vault.example.internal:8200\" }\nauto_auth {\n  " + tt.method + "\n}\n" + tmpl
			res, err := vaultagent.Convert([]byte(src), vaultagent.Options{Path: "/etc/va/agent.hcl"})
			if err != nil {
				t.Fatal(err)
			}
			out := string(res.Config)
			if _, err := config.Parse("/etc/certkeeper/certkeeper.hcl", res.Config, config.Options{Templates: templates.Checker{}}); err != nil {
				t.Fatalf("does not validate: %v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) && !strings.Contains(flatten(out), w) {
					t.Errorf("no %q in:\n%s", w, out)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("%q in:\n%s", n, out)
				}
			}
		})
	}
}

// Vault Agent's aws (iam), jwt and cert methods become certkeeper's auth
// blocks where they map; what does not map is a comment with the reason,
// and no credential in the source reaches the output.
func TestConvertCloudAndCertAuth(t *testing.T) {
	const https = `vault { address = "https://vault.example.internal:8200" }`
	const web = `
template {
  destination = "/etc/a/a.pem"
  contents    = "{{ with secret \"pki_int/issue/web\" \"common_name=a.example.internal\" }}{{ .Data.certificate }}{{ end }}"
}
`
	// The client certificate Vault Agent logs in with, which its own
	// templates keep.
	const client = `
template {
  destination = "/etc/va/client.crt"
  contents    = "{{ with secret \"pki_clients/issue/host\" \"common_name=host1.example.internal\" }}{{ .Data.certificate }}{{ end }}"
}
template {
  destination = "/etc/va/client.key"
  contents    = "{{ with secret \"pki_clients/issue/host\" \"common_name=host1.example.internal\" }}{{ .Data.private_key }}{{ end }}"
}
`
	autoAuth := func(method string) string { return "auto_auth {\n  " + method + "\n}\n" }
	for _, tt := range []struct {
		name, src string
		want, not []string
	}{
		{"aws iam", https + autoAuth(`method "aws" {
    mount_path = "auth/aws-prod"
    config = {
      type                     = "iam"
      role                     = "web-host"
      region                   = "eu-west-1"
      header_value             = "vault.example.internal"
      access_key               = "AKIAEXAMPLEKEY000001"
      secret_key               = "secret-key-must-not-be-printed"
      session_token            = "session-token-must-not-be-printed"
      credential_poll_interval = 60
    }
  }`) + web,
			[]string{`auth "aws" {`, `mount = "aws-prod"`, `role = "web-host"`, `region = "eu-west-1"`, `header_value = "vault.example.internal"`,
				`auto_auth method "aws" config access_key, secret_key, session_token: certkeeper takes no AWS keys in its config`,
				`auto_auth method "aws" config credential_poll_interval: certkeeper gets the credentials afresh at each login`},
			[]string{"AKIAEXAMPLEKEY000001", "secret-key-must-not-be-printed", "session-token-must-not-be-printed", "No auth block"}},
		{"aws iam, defaults", https + autoAuth(`method "aws" {
    config = { type = "iam", role = "web-host" }
  }`) + web,
			[]string{`auth "aws" {`, `role = "web-host"`}, []string{"    mount =", "region =", "No auth block"}},
		{"aws ec2", https + autoAuth(`method "aws" {
    config = { type = "ec2", role = "web-host", nonce = "nonce-must-not-be-printed" }
  }`) + web,
			[]string{`auto_auth method "aws" with type "ec2": certkeeper's auth "aws" is the IAM login`, "No auth block"},
			[]string{"\n  auth \"", "nonce-must-not-be-printed"}},
		{"aws, a region certkeeper refuses", https + autoAuth(`method "aws" {
    config = { type = "iam", role = "web-host", region = "moon-base" }
  }`) + web,
			[]string{`auth "aws" {`, `auto_auth method "aws" config region: "moon-base" is not an AWS region name`}, []string{"region ="}},
		{"jwt from a file", https + autoAuth(`method "jwt" {
    config = { path = "/var/run/secrets/tokens/vault", role = "web" }
  }`) + web,
			[]string{`auth "jwt" {`, `token_file = "/var/run/secrets/tokens/vault"`, `role = "web"`,
				"Vault Agent deleted /var/run/secrets/tokens/vault after reading it (remove_jwt_after_reading, true by default)"},
			[]string{"    mount =", "No auth block"}},
		{"jwt kept, read on a period", https + autoAuth(`method "jwt" {
    mount_path = "auth/jwt-k8s"
    config = {
      path                     = "/var/run/secrets/tokens/vault"
      role                     = "web"
      remove_jwt_after_reading = false
      jwt_read_period          = "30s"
    }
  }`) + web,
			[]string{`auth "jwt" {`, `mount = "jwt-k8s"`, `auto_auth method "jwt" config jwt_read_period: certkeeper reads the file at every login`},
			[]string{"Vault Agent deleted", "No auth block"}},
		{"jwt without a role", https + autoAuth(`method "jwt" {
    config = { path = "/var/run/secrets/tokens/vault" }
  }`) + web,
			[]string{`auto_auth method "jwt" without path and role: certkeeper's auth "jwt" needs both`, "No auth block"}, []string{"\n  auth \""}},
		{"cert with a certificate the templates keep", https + autoAuth(`method "cert" {
    mount_path = "auth/cert-hosts"
    config = {
      name        = "hosts"
      client_cert = "/etc/va/client.crt"
      client_key  = "/etc/va/client.key"
      reload      = true
    }
  }`) + client + web,
			[]string{`auth "cert" {`, `mount = "cert-hosts"`, `certificate = "host1.example.internal"`, `name = "hosts"`,
				`cert_file = "/etc/va/client.crt"`, `key_file = "/etc/va/client.key"`,
				"Vault Agent logged in with /etc/va/client.crt and /etc/va/client.key, which certificate \"host1.example.internal\" below writes"},
			[]string{"No auth block", `auto_auth method "cert"`}},
		{"cert with the vault block's client certificate", `vault {
  address     = "https://vault.example.internal:8200"
  client_cert = "/etc/va/client.crt"
  client_key  = "/etc/va/client.key"
}
` + autoAuth(`method "cert" {}`) + client,
			[]string{`auth "cert" {`, `certificate = "host1.example.internal"`},
			[]string{"No auth block", "vault client_cert:", "vault client_key:"}},
		{"cert with a certificate kept elsewhere", https + autoAuth(`method "cert" {
    config = { client_cert = "/etc/va/other.crt", client_key = "/etc/va/other.key" }
  }`) + client,
			[]string{`auto_auth method "cert" (/etc/va/other.crt): certkeeper logs in with a client certificate it manages itself`, "No auth block"},
			[]string{"\n  auth \""}},
		{"cert over plain http", `vault { address = "http://127.0.0.1:8200" }` + autoAuth(`method "cert" {
    config = { client_cert = "/etc/va/client.crt", client_key = "/etc/va/client.key" }
  }`) + client,
			[]string{`auto_auth method "cert": certkeeper's auth "cert" needs an https:// vault address`, "No auth block"},
			[]string{"\n  auth \""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := vaultagent.Convert([]byte(tt.src), vaultagent.Options{Path: "/etc/va/agent.hcl"})
			if err != nil {
				t.Fatal(err)
			}
			out := string(res.Config)
			if _, err := config.Parse("/etc/certkeeper/certkeeper.hcl", res.Config, config.Options{Templates: templates.Checker{}}); err != nil {
				t.Fatalf("does not validate: %v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) && !strings.Contains(flatten(out), w) {
					t.Errorf("no %q in:\n%s", w, out)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("%q in:\n%s", n, out)
				}
			}
		})
	}
}
