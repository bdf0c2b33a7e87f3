package vaultagent

import (
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// hclText builds the output: blocks, attributes and comments.
type hclText struct {
	b      strings.Builder
	indent string
}

// comment writes text as # lines of at most 76 columns; continuation lines
// of a "- " item are indented under it.
func (h *hclText) comment(text string) {
	lead := h.indent + "# "
	cont := lead
	if strings.HasPrefix(text, "- ") {
		cont = lead + "  "
	}
	line := lead
	for i, word := range strings.Fields(text) {
		if i > 0 && len(line)+1+len(word) > 76 {
			h.b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = cont
		} else if i > 0 {
			line += " "
		}
		line += word
	}
	h.b.WriteString(line + "\n")
}

func (h *hclText) blank() { h.b.WriteString("\n") }

func (h *hclText) open(typ string, labels ...string) {
	h.b.WriteString(h.indent + typ)
	for _, l := range labels {
		h.b.WriteString(" " + quote(l))
	}
	h.b.WriteString(" {\n")
	h.indent += "  "
}

func (h *hclText) close() {
	h.indent = h.indent[:len(h.indent)-2]
	h.b.WriteString(h.indent + "}\n")
}

func quote(s string) string {
	return string(hclwrite.TokensForValue(cty.StringVal(s)).Bytes())
}

func (h *hclText) str(name, v string) {
	if v != "" {
		h.b.WriteString(h.indent + name + " = " + quote(v) + "\n")
	}
}

func (h *hclText) list(name string, vs []string) {
	if len(vs) == 0 {
		return
	}
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = quote(v)
	}
	h.b.WriteString(h.indent + name + " = [" + strings.Join(q, ", ") + "]\n")
}

func (h *hclText) raw(name, v string) { h.b.WriteString(h.indent + name + " = " + v + "\n") }

// text writes a template: as a heredoc when that keeps it exactly (it
// ends with a newline and no line is the marker), else quoted.
func (h *hclText) text(name, v string) {
	if !strings.HasSuffix(v, "\n") || strings.Contains("\n"+v, "\nEOT\n") {
		h.str(name, v)
		return
	}
	esc := strings.NewReplacer("${", "$${", "%{", "%%{").Replace(v)
	h.b.WriteString(h.indent + name + " = <<EOT\n" + esc + "EOT\n")
}

func percent(fraction string) string {
	f, err := strconv.ParseFloat(fraction, 64)
	if err != nil {
		return fraction
	}
	return strconv.FormatFloat(f*100, 'f', -1, 64) + "%"
}

func mode(m fs.FileMode) string { return fmt.Sprintf("%q", fmt.Sprintf("%04o", m)) }

// joined lists where templates are: "at lines 3 and 9", or for JSON,
// which has no lines, "writing /a and /b".
func joined(froms []string) string {
	lines := true
	var q []string
	for _, f := range froms {
		n, ok := strings.CutPrefix(f, "line ")
		lines = lines && ok
		q = append(q, n)
	}
	if !lines {
		q = froms
	}
	var list string
	switch len(q) {
	case 1:
		list = q[0]
	case 2:
		list = q[0] + " and " + q[1]
	default:
		list = strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
	}
	switch {
	case !lines:
		return "writing " + list
	case len(q) == 1:
		return "at line " + list
	}
	return "at lines " + list
}

func (c *converter) write() []byte {
	h := &hclText{}
	h.comment(fmt.Sprintf("certkeeper configuration translated from the Vault Agent configuration %s by `certkeeper convert vault-agent`. Check it with `certkeeper validate -config FILE`, give certkeeper's login the policy `certkeeper policy -config FILE` prints, run `certkeeper once -config FILE`, compare the files, then stop Vault Agent and start certkeeper.", c.o.Path))
	h.blank()
	h.comment("What changes:")
	for _, ch := range c.changes() {
		h.comment("- " + ch)
	}
	if len(c.skipped) > 0 {
		slices.SortStableFunc(c.skipped, func(a, b note) int { return a.line - b.line })
		h.blank()
		h.comment(fmt.Sprintf("Not translated (%d): Vault Agent did these and certkeeper will not.", len(c.skipped)))
		for _, n := range c.skipped {
			h.comment("- " + n.String())
		}
	}
	h.blank()
	c.writeVault(h)
	for _, cert := range c.certs {
		h.blank()
		c.writeCert(h, cert)
	}
	for _, s := range c.svcs {
		h.blank()
		h.comment(fmt.Sprintf("From the command of the template%s %s.", map[bool]string{true: "s", false: ""}[len(s.froms) > 1], joined(s.froms)))
		for _, n := range s.notes {
			h.comment(n)
		}
		h.open("service", s.name)
		h.list("reload", s.argv)
		if s.timeout != "" && s.timeout != "30s" {
			h.str("timeout", s.timeout)
		}
		h.close()
	}
	out := hclwrite.Format([]byte(h.b.String()))
	if !strings.HasSuffix(string(out), "\n") {
		out = append(out, '\n')
	}
	return out
}

// changes are what the operator must know before switching.
func (c *converter) changes() []string {
	out := []string{
		"Keys are made on this host: certkeeper sends Vault a CSR (<mount>/sign/<role>) and the key never leaves the host; Vault Agent had Vault make each key (<mount>/issue/<role>) and send it. certkeeper's login needs update on <mount>/sign/<role>, and the role must accept the key: its key_type must be the certificate's key_type below (ec, P-256) or \"any\". For a role with key_type rsa set key_type = \"rsa\"; for a role that must make the keys itself set issue_mode = \"issue\".",
		fmt.Sprintf("Renewals are spread: certkeeper renews at 66%% of each certificate's lifetime, give or take 10%% at random, so a fleet does not renew at once (renew_fraction, renew_jitter). Vault Agent renewed at about %s of it (template_config lease_renewal_threshold).", percent(c.threshold)),
	}
	if c.issuedWithSecret {
		out = append(out, "A restart does not issue new certificates: certkeeper reads back what is on disk and keeps it until it is due. Vault Agent's secret function issued new ones at every start.")
	} else {
		out = append(out, "A restart does not issue new certificates: certkeeper reads back what is on disk and keeps it until it is due (Vault Agent's pkiCert did the same from its destination files).")
	}
	out = append(out,
		"Keys are PKCS#8 PEM (BEGIN PRIVATE KEY); Vault's default was PKCS#1 or SEC 1 (BEGIN RSA PRIVATE KEY, BEGIN EC PRIVATE KEY). nginx, Apache and HAProxy read both.",
		"The files of a certificate are replaced together, atomically; each service is reloaded once per change, and put back on the previous files if its check fails.",
	)
	return out
}

func (c *converter) writeVault(h *hclText) {
	v := c.vault
	h.open("vault")
	if v.addressNote != "" {
		h.comment(v.addressNote)
	}
	h.str("address", v.address)
	h.str("ca_cert", v.caCert)
	h.str("tls_server_name", v.serverName)
	h.str("namespace", v.namespace)
	if v.skipVerify {
		h.comment("Vault Agent did not verify Vault's certificate (tls_skip_verify); certkeeper warns about it at every start. Set ca_cert instead.")
		h.raw("tls_skip_verify", "true")
	}
	for _, n := range v.authNotes {
		h.comment(n)
	}
	switch v.method {
	case "approle":
		h.open("auth", "approle")
		h.str("mount", v.mount)
		h.str("role_id_file", v.roleIDFile)
		h.str("secret_id_file", v.secretIDFile)
		if v.secretIDWrapped {
			h.raw("secret_id_wrapped", "true")
		}
		h.close()
	case "token":
		h.open("auth", "token")
		h.str("mount", v.mount)
		h.str("token_file", v.tokenFile)
		h.close()
	case "aws":
		h.open("auth", "aws")
		h.str("mount", v.mount)
		h.str("role", v.role)
		h.str("region", v.region)
		h.str("header_value", v.headerValue)
		h.close()
	case "jwt":
		h.open("auth", "jwt")
		h.str("mount", v.mount)
		h.str("role", v.role)
		h.str("token_file", v.tokenFile)
		h.close()
	case "cert":
		h.open("auth", "cert")
		h.str("mount", v.mount)
		h.str("certificate", v.certificate)
		h.str("name", v.certRole)
		h.close()
	default:
		h.comment("No auth block: the token comes from VAULT_TOKEN (see above for why).")
	}
	h.close()
}

func (c *converter) writeCert(h *hclText, cert *certOut) {
	h.comment(fmt.Sprintf("From the template%s %s: %s.", map[bool]string{true: "s", false: ""}[len(cert.froms) > 1], joined(cert.froms), cert.call))
	for _, n := range cert.notes {
		h.comment(n)
	}
	h.open("certificate", cert.name)
	h.str("mount", cert.mount)
	h.str("role", cert.role)
	h.str("common_name", cert.cn)
	h.list("alt_names", cert.alt)
	h.list("ip_sans", cert.ips)
	h.list("uri_sans", cert.uris)
	h.str("ttl", cert.ttl)
	h.str("key_type", "ec")
	for _, slot := range []struct{ slot, key string }{
		{"cert", "cert_file"}, {"key", "key_file"}, {"chain", "chain_file"}, {"fullchain", "fullchain_file"}, {"ca", "ca_file"},
	} {
		if o := cert.files[slot.slot]; o != nil {
			h.str(slot.key, o.path)
		}
	}
	if cert.certMode != 0o644 {
		h.raw("cert_mode", mode(cert.certMode))
	}
	if cert.keyMode != 0o600 {
		h.raw("key_mode", mode(cert.keyMode))
	}
	h.str("group", cert.group)
	h.list("notify", cert.notify)
	for _, t := range cert.templates {
		h.blank()
		h.open("template")
		if t.stock != "" {
			h.str("stock", t.stock)
		} else {
			h.text("contents", t.text)
		}
		h.str("destination", t.path)
		h.raw("mode", mode(t.mode))
		if t.group != "" && t.group != cert.group {
			h.str("group", t.group)
		}
		h.close()
	}
	h.close()
}
