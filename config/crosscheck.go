package config

import (
	"net/url"

	"github.com/hashicorp/hcl/v2"
)

// crossCheck validates what ties the vault block to the certificate blocks,
// once both are built: the certificate cert auth logs in with, and outputs
// that would overwrite what certkeeper reads to reach Vault.
func (b *builder) crossCheck(cfg *Config, raw *rawFile) {
	if raw.Vault == nil || len(raw.Vault.Auth) != 1 {
		return
	}
	if cfg.Vault.Auth.Method == AuthCert && cfg.Vault.Auth.Certificate != "" {
		b.resolveCertAuth(cfg, raw.Vault)
	}
	inputs := map[string]string{
		cfg.Vault.Auth.TokenFile:    "auth token_file",
		cfg.Vault.Auth.RoleIDFile:   "auth role_id_file",
		cfg.Vault.Auth.SecretIDFile: "auth secret_id_file",
		cfg.Vault.CACert:            "vault ca_cert",
	}
	delete(inputs, "")
	for _, c := range cfg.Certificates {
		for _, p := range []string{c.Files.Cert, c.Files.Key, c.Files.Chain, c.Files.Fullchain, c.Files.CA} {
			if what, ok := inputs[p]; ok && p != "" {
				b.fail(defRangeOf(raw, c.Name), "certificate %q writes %s, which is the %s certkeeper reads to reach Vault", c.Name, p, what)
			}
		}
	}
}

// resolveCertAuth points cert auth at the files of the certificate block it
// names, which must exist: the point of cert auth is that certkeeper renews
// its own login certificate.
func (b *builder) resolveCertAuth(cfg *Config, rv *rawVault) {
	ra := &rv.Auth[0]
	a := &cfg.Vault.Auth
	c, ok := cfg.Certificate(a.Certificate)
	if !ok {
		b.fail(valueRange(ra.Body, "certificate", ra.DefRange), "auth \"cert\": no certificate block named %q (cert auth logs in with a certificate certkeeper manages)", a.Certificate)
		return
	}
	a.ClientCert, a.ClientKey, a.ClientChain = c.Files.Cert, c.Files.Key, c.Files.Chain
	for _, addr := range cfg.Vault.Addresses {
		if u, err := url.Parse(addr); err == nil && u.Scheme != "https" {
			b.fail(valueRange(rv.Body, "address", rv.DefRange), "auth \"cert\" needs https:// vault addresses: a client certificate only travels over TLS, and %s is not one", addr)
		}
	}
}

// defRangeOf is where the (first) certificate block called name starts.
func defRangeOf(raw *rawFile, name string) hcl.Range {
	for _, rc := range raw.Certificates {
		if rc.Name == name {
			return rc.DefRange
		}
	}
	return raw.Body.MissingItemRange()
}
