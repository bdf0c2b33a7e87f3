package vaultagent

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/certkeeper/certkeeper/config"
)

// vaultOut is certkeeper's vault block.
type vaultOut struct {
	address, caCert, serverName, namespace string
	addressNote                            string
	skipVerify                             bool
	// method is "" (the token from VAULT_TOKEN), "approle", "token",
	// "aws", "jwt" or "cert".
	method, mount                  string
	roleIDFile, secretIDFile       string
	secretIDWrapped                bool
	tokenFile                      string
	authNotes                      []string
	removeSecretIDAfterReading     bool
	removeSecretIDAfterReadingLine int
	// role is aws's and jwt's Vault role; region and headerValue aws's.
	role, region, headerValue string
	// certificate names the certificate block cert auth logs in with;
	// certRole is the cert role ("name").
	certificate, certRole string
	// clientCert and clientKey are the vault block's client certificate,
	// which Vault Agent's cert method uses when its own config names none.
	clientCert, clientKey         string
	clientCertLine, clientKeyLine int
	// cert is a cert method waiting for the certificates to be placed:
	// whether it maps depends on which files they write.
	cert *certMethod
}

// certMethod is Vault Agent's auto_auth method "cert" as read.
type certMethod struct {
	line, cfgLine         int
	mount, name           string
	clientCert, clientKey string
	caCert                string
	reload                bool
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
	// Read here, said after the templates: a cert method may log in with
	// them (resolveCertAuth).
	if s, line, ok := v.str("client_cert"); ok {
		c.vault.clientCert, c.vault.clientCertLine = c.path(s, line), line
	}
	if s, line, ok := v.str("client_key"); ok {
		c.vault.clientKey, c.vault.clientKeyLine = c.path(s, line), line
	}
	for _, k := range v.unused() {
		why := "certkeeper's vault block has no such setting"
		switch strings.Fields(k.key)[0] {
		case "ca_path":
			why = "certkeeper takes one PEM file of CA certificates (ca_cert): concatenate the directory's files into one"
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
	case "aws":
		c.readAWS(m, mount, cfgLine, take)
		if c.vault.method == "" {
			mount, cfg = "", nil
		}
	case "jwt":
		c.readJWT(m, cfgLine, take)
		if c.vault.method == "" {
			mount, cfg = "", nil
		}
	case "cert":
		cm := &certMethod{line: m.line, cfgLine: cfgLine, mount: mount}
		cm.name, _ = take("name")
		if v, ok := take("client_cert"); ok {
			cm.clientCert = c.path(v, cfgLine)
		}
		if v, ok := take("client_key"); ok {
			cm.clientKey = c.path(v, cfgLine)
		}
		if v, ok := take("ca_cert"); ok {
			cm.caCert = c.path(v, cfgLine)
		}
		if v, ok := take("reload"); ok {
			cm.reload = v == "true"
		}
		take("reload_period")
		c.vault.cert = cm
		// Whether it maps is known once the certificates are placed
		// (resolveCertAuth); its mount goes with it.
		mount = ""
	default:
		c.skip(m.line, "auto_auth method %q: certkeeper logs in with approle, token, aws, jwt or cert; until you pick one the token comes from VAULT_TOKEN", typ)
		mount = ""
		cfg = nil
	}
	if c.vault.method != "" && mount != "" && mount != c.vault.method {
		c.vault.mount = mount
	}
	// In key order: the notes of one line keep their order.
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
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

// readAWS translates method "aws": the IAM login is certkeeper's auth
// "aws", the EC2 one has no equivalent. No credential given in the
// config is copied: certkeeper takes them from the host.
func (c *converter) readAWS(m *block, mount string, cfgLine int, take func(string) (string, bool)) {
	typ, _ := take("type")
	role, _ := take("role")
	switch {
	case typ != "iam":
		c.skip(m.line, "auto_auth method \"aws\" with type %q: certkeeper's auth \"aws\" is the IAM login (a signed sts:GetCallerIdentity, type iam); the EC2 login (the instance identity document and its nonce) has no equivalent. Add an iam role for this host to Vault's aws auth and use auth \"aws\" { role = ... }; until then the token comes from VAULT_TOKEN", typ)
		return
	case role == "" || strings.Contains(role, "/"):
		c.skip(m.line, "auto_auth method \"aws\" without a role name: certkeeper's auth \"aws\" needs the Vault role; the token comes from VAULT_TOKEN until it is set")
		return
	}
	c.vault.method, c.vault.role = "aws", role
	if v, ok := take("region"); ok {
		if config.IsAWSRegion(v) {
			c.vault.region = v
		} else {
			c.skip(cfgLine, "auto_auth method \"aws\" config region: %q is not an AWS region name certkeeper takes (such as \"eu-west-1\"); it signs for %s until one is set", v, config.DefaultAWSRegion)
		}
	}
	if v, ok := take("header_value"); ok {
		if strings.ContainsAny(v, "\r\n\x00") {
			c.skip(cfgLine, "auto_auth method \"aws\" config header_value: it is not one line, and certkeeper sends it as an HTTP header")
		} else {
			c.vault.headerValue = v
		}
	}
	var keys []string
	for _, k := range []string{"access_key", "secret_key", "session_token"} {
		if _, ok := take(k); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		c.skip(cfgLine, "auto_auth method \"aws\" config %s: certkeeper takes no AWS keys in its config (they would sit in it in plain text, and they are not copied here); it signs with the instance profile's credentials (IMDSv2), then those of the AWS SDK's chain: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN in its environment, or the shared credentials file", strings.Join(keys, ", "))
	}
	if _, ok := take("credential_poll_interval"); ok {
		c.skip(cfgLine, "auto_auth method \"aws\" config credential_poll_interval: certkeeper gets the credentials afresh at each login")
	}
}

// readJWT translates method "jwt": a JWT read from a file is certkeeper's
// auth "jwt" with token_file.
func (c *converter) readJWT(m *block, cfgLine int, take func(string) (string, bool)) {
	path, _ := take("path")
	role, _ := take("role")
	if path == "" || role == "" || strings.Contains(role, "/") {
		c.skip(m.line, "auto_auth method \"jwt\" without path and role: certkeeper's auth \"jwt\" needs both (token_file, the file holding the JWT, and the Vault role); the token comes from VAULT_TOKEN until they are set")
		return
	}
	c.vault.method, c.vault.role, c.vault.tokenFile = "jwt", role, c.path(path, cfgLine)
	remove := true // Vault Agent's default
	if v, ok := take("remove_jwt_after_reading"); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			remove = b
		}
	}
	take("remove_jwt_follows_symlinks") // only with remove, said below
	if remove {
		c.vault.authNotes = append(c.vault.authNotes, fmt.Sprintf("Vault Agent deleted %s after reading it (remove_jwt_after_reading, true by default); certkeeper reads the JWT from it at every login and never deletes it: whatever writes the file (a projected service account token, an OIDC helper) must keep a current JWT there", c.vault.tokenFile))
	}
	if _, ok := take("jwt_read_period"); ok {
		c.skip(cfgLine, "auto_auth method \"jwt\" config jwt_read_period: certkeeper reads the file at every login, not on a period")
	}
}

// resolveCertAuth decides, once the certificates are placed, whether
// Vault Agent's cert method maps: certkeeper logs in with a certificate
// it keeps itself, so it does when the client certificate and key Vault
// Agent used are the cert_file and key_file of one of the certificates
// translated (Vault Agent's templates kept its own login certificate). The
// files it left there are what certkeeper's first login uses. It also says
// what becomes of the vault block's client certificate.
func (c *converter) resolveCertAuth() {
	v := &c.vault
	usedVaultPair := false
	defer func() {
		if usedVaultPair {
			return
		}
		const why = "a client certificate for Vault's TLS listener; certkeeper presents one only to log in with auth \"cert\", and then one it manages itself"
		if v.clientCertLine > 0 {
			c.skip(v.clientCertLine, "vault client_cert: %s", why)
		}
		if v.clientKeyLine > 0 {
			c.skip(v.clientKeyLine, "vault client_key: %s", why)
		}
	}()
	cm := v.cert
	if cm == nil {
		return
	}
	certFile, keyFile := cm.clientCert, cm.clientKey
	if certFile == "" && keyFile == "" {
		certFile, keyFile = v.clientCert, v.clientKey
		usedVaultPair = certFile != ""
	}
	what := ""
	if certFile != "" {
		what = " (" + certFile + ")"
	}
	if u, err := url.Parse(v.address); err != nil || u.Scheme != "https" {
		usedVaultPair = false
		c.skip(cm.line, "auto_auth method \"cert\": certkeeper's auth \"cert\" needs an https:// vault address (a client certificate only travels over TLS), and %s is not one; the token comes from VAULT_TOKEN", v.address)
		return
	}
	var found *certOut
	for _, cert := range c.certs {
		cf, kf := cert.files["cert"], cert.files["key"]
		if cf != nil && kf != nil && cf.path == certFile && kf.path == keyFile && !slices.Contains(cert.synthesizedFiles, certFile) && !slices.Contains(cert.synthesizedFiles, keyFile) {
			found = cert
		}
	}
	if found == nil {
		usedVaultPair = false
		c.skip(cm.line, "auto_auth method \"cert\"%s: certkeeper logs in with a client certificate it manages itself, one of its certificate blocks, so it renews its own login certificate; no template here writes this certificate and key as the only contents of two files. Add a certificate block for that client certificate (the mount and role that issue it, its cert_file and key_file where the current ones are) and, in the vault block, auth \"cert\" { certificate = \"NAME\" }; until then the token comes from VAULT_TOKEN", what)
		return
	}
	v.method, v.certificate, v.certRole = "cert", found.name, cm.name
	if cm.mount != "" && cm.mount != "cert" {
		v.mount = cm.mount
	}
	v.authNotes = append(v.authNotes, fmt.Sprintf("Vault Agent logged in with %s and %s, which certificate %q below writes: certkeeper logs in with that block's files and renews them itself, so leave the ones Vault Agent wrote in place for its first login", certFile, keyFile, found.name))
	if cm.reload {
		v.authNotes = append(v.authNotes, "Vault Agent reloaded its client certificate (reload = true); certkeeper always does: it reads the certificate and key at every login and closes idle connections when they change")
	}
	if cm.caCert != "" && cm.caCert != v.caCert {
		if v.caCert == "" {
			v.caCert = cm.caCert
			v.authNotes = append(v.authNotes, fmt.Sprintf("ca_cert is the cert method's (%s): certkeeper checks Vault's certificate with one CA file for every request", cm.caCert))
		} else {
			c.skip(cm.cfgLine, "auto_auth method \"cert\" config ca_cert: certkeeper checks Vault's certificate with the vault block's ca_cert (%s) for every request, the login included", v.caCert)
		}
	}
}
