package vaultagent

import (
	"slices"
	"strings"
	"testing"
)

// Each way a Vault Agent template prints a certificate, what the
// converter makes of it.
func TestAnalyse(t *testing.T) {
	const issue = `secret "pki_int/issue/web" "common_name=web.example.internal"`
	tests := []struct {
		name, text string
		plain      bool
		fields     []string
		slot       string // slotOf(fields), or the stock template
		text2      string // part of the rewritten template
		sides      int
		problem    string
	}{
		{name: "secret certificate", text: `{{ with ` + issue + ` }}{{ .Data.certificate }}{{ end }}`,
			plain: true, fields: []string{fCert}, slot: "cert"},
		{name: "secret key, trimmed", text: "{{- with " + issue + " -}}\n{{ .Data.private_key }}\n{{- end }}\n",
			plain: true, fields: []string{fKey}, slot: "key"},
		{name: "issuing CA", text: `{{ with ` + issue + ` }}{{ .Data.issuing_ca }}{{ end }}`,
			plain: true, fields: []string{fIssuer}, slot: "chain"},
		{name: "chain by range", text: `{{ with ` + issue + ` }}{{ range .Data.ca_chain }}{{ . }}` + "\n" + `{{ end }}{{ end }}`,
			plain: true, fields: []string{fCAChain}, slot: "ca", text2: "{{.CA}}"},
		{name: "fullchain", text: `{{ with ` + issue + ` }}{{ .Data.certificate }}` + "\n" + `{{ .Data.issuing_ca }}{{ end }}`,
			plain: true, fields: []string{fCert, fIssuer}, slot: "fullchain"},
		{name: "pkiCert all in one", text: `{{ with pkiCert "pki_int/issue/web" "common_name=a.example.internal" }}{{ .Cert }}{{ .CA }}{{ .Key }}{{ end }}`,
			plain: true, fields: []string{fCert, fIssuer, fKey}, slot: "haproxy"},
		{name: "pkiCert through Data", text: `{{ with pkiCert "pki_int/issue/web" "common_name=a.example.internal" }}{{ .Data.Key }}{{ .Data.Cert }}{{ .Data.CA }}{{ end }}`,
			plain: true, fields: []string{fKey, fCert, fIssuer}, slot: "bundle"},
		{name: "text around", text: `{{ with ` + issue + ` }}serial={{ .Data.serial_number }} until={{ .Data.expiration }}{{ end }}`,
			plain: false, text2: "serial={{.Serial}} until={{.NotAfter.Unix}}"},
		{name: "a function on a field", text: `{{ with ` + issue + ` }}{{ .Data.certificate | toUpper }}{{ end }}`,
			plain: false, text2: "{{.Cert | toUpper}}"},
		{name: "conditional", text: `{{ with ` + issue + ` }}{{ if .Data.certificate }}{{ .Data.certificate }}{{ end }}{{ end }}`,
			plain: false, text2: "{{if .Cert}}{{.Cert}}{{end}}"},
		{name: "writeToFile", text: `{{ with pkiCert "pki_int/issue/web" "common_name=a.example.internal" }}{{ .Cert }}{{ .Key | writeToFile "/k.pem" "" "" "0400" }}{{ end }}`,
			plain: true, fields: []string{fCert}, slot: "cert", sides: 1},
		{name: "the mount's CA chain", text: `{{ with ` + issue + ` }}{{ .Data.certificate }}{{ end }}{{ with secret "pki_int/cert/ca_chain" }}{{ .Data.ca_chain }}{{ end }}`,
			plain: true, fields: []string{fCert, fCAChain}},
		{name: "a KV secret", text: `{{ with secret "kv/data/app" }}{{ .Data.data.password }}{{ end }}`,
			problem: `it reads secret "kv/data/app", which is not a certificate`},
		{name: "a call outside with", text: `{{ (secret "pki_int/issue/web" "common_name=x").Data.certificate }}`,
			problem: "it calls secret"},
		{name: "a computed parameter", text: `{{ with pkiCert "pki_int/issue/web" (printf "common_name=%s" (env "HOST")) }}{{ .Cert }}{{ end }}`,
			problem: "computes an argument"},
		{name: "two certificates", text: `{{ with ` + issue + ` }}{{ .Data.certificate }}{{ end }}{{ with secret "pki_int/issue/web" "common_name=b.example.internal" }}{{ .Data.certificate }}{{ end }}`,
			problem: "it renders two certificates"},
		{name: "a lease field", text: `{{ with ` + issue + ` }}{{ .LeaseID }}{{ end }}`,
			problem: "it uses .LeaseID"},
		{name: "the chain printed as a list", text: `{{ with ` + issue + ` }}{{ .Data.ca_chain }}{{ end }}`,
			problem: "a list"},
		{name: "another mount's chain", text: `{{ with ` + issue + ` }}{{ .Data.certificate }}{{ end }}{{ with secret "pki/cert/ca_chain" }}{{ .Data.certificate }}{{ end }}`,
			problem: "it reads the CA chain of pki but issues from pki_int"},
		{name: "reading a file", text: `{{ with ` + issue + ` }}{{ .Data.certificate }}{{ file "/etc/passwd" }}{{ end }}`,
			problem: "it calls file"},
		{name: "no certificate at all", text: `hello`,
			problem: "it issues no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := analyse(tt.text, "", "", "/dest.pem", 1)
			if tt.problem != "" {
				if !slices.ContainsFunc(r.problems, func(p string) bool { return strings.Contains(p, tt.problem) }) {
					t.Fatalf("problems %q, want one saying %q", r.problems, tt.problem)
				}
				return
			}
			if len(r.problems) > 0 {
				t.Fatalf("problems: %q", r.problems)
			}
			if r.plain != tt.plain {
				t.Errorf("plain = %v, want %v (fields %v)", r.plain, tt.plain, r.fields)
			}
			if tt.plain && !slices.Equal(r.fields, tt.fields) {
				t.Errorf("fields %v, want %v", r.fields, tt.fields)
			}
			if tt.slot != "" {
				slot, stock := slotOf(r.fields)
				if slot+stock != tt.slot {
					t.Errorf("slot %q stock %q, want %q", slot, stock, tt.slot)
				}
			}
			if tt.text2 != "" && !strings.Contains(r.text, tt.text2) {
				t.Errorf("rewritten %q, want it to hold %q", r.text, tt.text2)
			}
			if strings.Contains(r.text, "secret") || strings.Contains(r.text, "pkiCert") || strings.Contains(r.text, "writeToFile") {
				t.Errorf("rewritten template still calls Vault or writes files: %q", r.text)
			}
			if len(r.sides) != tt.sides {
				t.Errorf("%d writeToFile, want %d", len(r.sides), tt.sides)
			}
		})
	}
}

// One string with spaces runs through sh -c in Vault Agent unless it has
// no shell syntax, when its words are the same command.
func TestCommandArgv(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want []string
	}{
		{[]string{"systemctl reload nginx"}, []string{"systemctl", "reload", "nginx"}},
		{[]string{"/usr/local/bin/reload"}, []string{"/usr/local/bin/reload"}},
		{[]string{"nginx -t && nginx -s reload"}, []string{"sh", "-c", "nginx -t && nginx -s reload"}},
		{[]string{"kill -HUP $(cat /run/app.pid)"}, []string{"sh", "-c", "kill -HUP $(cat /run/app.pid)"}},
		{[]string{"a", "b c"}, []string{"a", "b c"}},
	} {
		if got := commandArgv(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("commandArgv(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
