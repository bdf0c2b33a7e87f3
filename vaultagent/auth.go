package vaultagent

import (
	"fmt"
	"strings"
)

// vaultOut is certkeeper's vault block.
type vaultOut struct {
	address, caCert, serverName, namespace string
	addressNote                            string
	skipVerify                             bool
	// method is "" (the token from VAULT_TOKEN), "approle" or "token".
	method, mount                  string
	roleIDFile, secretIDFile       string
	secretIDWrapped                bool
	tokenFile                      string
	authNotes                      []string
	removeSecretIDAfterReading     bool
	removeSecretIDAfterReadingLine int
}

func (c *converter) readVault(top *block) {
	vs := top.blocks("vault")
	if len(vs) == 0 {
		c.vault.address = "https://127.0.0.1:8200"
		c.vault.addressNote = "Vault Agent's default without a vault block and without VAULT_ADDR; certkeeper takes VAULT_ADDR only when address is not set"
		return
	}
	v := vs[len(vs)-1]
	if a, _, ok := v.str("address"); ok {
		c.vault.address = a
	} else {
		c.vault.address = "https://127.0.0.1:8200"
		c.vault.addressNote = "Vault Agent's default without address and without VAULT_ADDR; certkeeper takes VAULT_ADDR only when address is not set"
	}
	if s, line, ok := v.str("ca_cert"); ok {
		c.vault.caCert = c.path(s, line)
	}
	if s, _, ok := v.str("tls_server_name"); ok {
		c.vault.serverName = s
	}
	if s, _, ok := v.str("namespace"); ok {
		c.vault.namespace = s
	}
	if b, set := v.boolean("tls_skip_verify"); set && b {
		c.vault.skipVerify = true
	}
	for _, k := range v.unused() {
		why := "certkeeper's vault block has no such setting"
		switch strings.Fields(k.key)[0] {
		case "ca_path":
			why = "certkeeper takes one PEM file of CA certificates (ca_cert): concatenate the directory's files into one"
		case "client_cert", "client_key":
			why = "a client certificate for Vault's TLS listener; certkeeper presents one only to log in with auth \"cert\", and then one it manages itself"
		case "retry":
			why = "certkeeper retries every failed request itself, with jittered backoff and without limit"
		}
		c.skip(k.line, "vault %s: %s", k.key, why)
	}
	if len(vs) > 1 {
		c.skip(vs[0].line, "vault: the file has %d vault blocks; the last one is translated", len(vs))
	}
}

func (c *converter) readAutoAuth(top *block) {
	aas := top.blocks("auto_auth")
	if len(aas) == 0 {
		c.vault.authNotes = append(c.vault.authNotes, "Vault Agent had no auto_auth; certkeeper reads the token from VAULT_TOKEN, like the vault CLI")
		return
	}
	aa := aas[len(aas)-1]
	methods := aa.blocks("method")
	for i, m := range methods {
		if i > 0 {
			c.skip(m.line, "auto_auth: a second method block; Vault Agent uses one, and so does this translation")
			continue
		}
		c.readMethod(m)
	}
	for _, s := range aa.blocks("sink") {
		kind := "sink"
		if len(s.labels) > 0 {
			kind = fmt.Sprintf("sink %q", s.labels[0])
		}
		where := ""
		if cfg, _, _, ok := s.object("config"); ok && cfg["path"] != "" {
			where = " (" + cfg["path"] + ")"
		}
		c.skip(s.line, "auto_auth %s%s: certkeeper keeps its Vault token in memory and writes it nowhere; programs that read this token need another way to log in, or Vault Agent", kind, where)
	}
	for _, k := range aa.unused() {
		c.skip(k.line, "auto_auth %s: no equivalent in certkeeper", k.key)
	}
}

func (c *converter) readMethod(m *block) {
	typ := ""
	if len(m.labels) > 0 {
		typ = m.labels[0]
	}
	if t, _, ok := m.str("type"); ok {
		typ = t
	}
	mount := ""
	if p, _, ok := m.str("mount_path"); ok {
		mount = strings.TrimPrefix(strings.Trim(p, "/"), "auth/")
	}
	cfg, others, cfgLine, _ := m.object("config")
	take := func(key string) (string, bool) {
		v, ok := cfg[key]
		delete(cfg, key)
		return v, ok
	}
	switch typ {
	case "approle":
		c.vault.method = "approle"
		if v, ok := take("role_id_file_path"); ok {
			c.vault.roleIDFile = c.path(v, cfgLine)
		}
		if v, ok := take("secret_id_file_path"); ok {
			c.vault.secretIDFile = c.path(v, cfgLine)
		}
		remove := true // Vault Agent's default
		if v, ok := take("remove_secret_id_file_after_reading"); ok {
			remove = v == "true"
		}
		if remove && c.vault.secretIDFile != "" {
			c.vault.authNotes = append(c.vault.authNotes, fmt.Sprintf("Vault Agent deleted %s after reading it (remove_secret_id_file_after_reading, true by default); certkeeper reads it at every login and never deletes it: keep it 0640 root:certkeeper, or response-wrapped (secret_id_wrapped)", c.vault.secretIDFile))
		}
		if _, ok := take("secret_id_response_wrapping_path"); ok {
			c.vault.secretIDWrapped = true
			c.vault.authNotes = append(c.vault.authNotes, "secret_id_response_wrapping_path: certkeeper unwraps the secret_id once, at start, and keeps it in memory; it does not compare the wrapping token's creation path")
		}
		if c.vault.roleIDFile == "" || c.vault.secretIDFile == "" {
			c.skip(m.line, "auto_auth method \"approle\" without role_id_file_path and secret_id_file_path: certkeeper needs both files; the token comes from VAULT_TOKEN until they are set")
			c.vault.method = ""
		}
	case "token_file":
		if v, ok := take("token_file_path"); ok {
			c.vault.method = "token"
			c.vault.tokenFile = c.path(v, cfgLine)
			c.vault.authNotes = append(c.vault.authNotes, "auto_auth token_file: certkeeper reads the token from the file and renews it while it can; it does not log in again when it expires")
		}
	case "cert":
		what := ""
		if v, ok := cfg["client_cert"]; ok {
			what = " (" + v + ")"
		}
		c.skip(m.line, "auto_auth method \"cert\"%s: certkeeper logs in with a client certificate it manages itself, one of its certificate blocks, so it renews its own login certificate. Add a certificate block for that client certificate (the mount and role that issue it) and, in the vault block, auth \"cert\" { certificate = \"NAME\" }; until then the token comes from VAULT_TOKEN", what)
		mount = ""
		cfg = nil
	default:
		c.skip(m.line, "auto_auth method %q: certkeeper logs in with approle, token or cert; until you pick one the token comes from VAULT_TOKEN", typ)
		mount = ""
		cfg = nil
	}
	if c.vault.method != "" && mount != "" && mount != c.vault.method {
		c.vault.mount = mount
	}
	for k := range cfg {
		c.skip(cfgLine, "auto_auth method %q config %s: no equivalent in certkeeper", typ, k)
	}
	for _, k := range others {
		c.skip(cfgLine, "auto_auth method %q config %s: no equivalent in certkeeper", typ, k)
	}
	for _, k := range m.unused() {
		why := "no equivalent in certkeeper"
		switch strings.Fields(k.key)[0] {
		case "wrap_ttl":
			why = "wraps the token for a sink; certkeeper writes no sink"
		case "min_backoff", "max_backoff", "max_retries":
			why = "certkeeper's login backoff is its own (jittered, up to 5 minutes)"
		case "exit_on_err":
			why = "certkeeper never exits because a login failed; it keeps the files on disk and retries"
		case "namespace":
			why = "certkeeper logs in in the vault block's namespace"
		}
		c.skip(k.line, "auto_auth method %s: %s", k.key, why)
	}
}
