package config

import (
	"net/url"
)

// crossCheck validates what ties the vault block to the certificate blocks,
// once both are built: the certificate cert auth logs in with, and (in
// overlaps) outputs that would overwrite anything certkeeper reads.
func (b *builder) crossCheck(cfg *Config, raw *rawFile) {
	if raw.Vault != nil && len(raw.Vault.Auth) == len(cfg.Vault.Auth) {
		for i, a := range cfg.Vault.Auth {
			if a.Method == AuthCert && a.Certificate != "" {
				b.resolveCertAuth(cfg, raw.Vault, i)
			}
		}
	}
	b.overlaps(cfg, raw)
}

// resolveCertAuth points cert auth at the files of the certificate block it
// names, which must exist: the point of cert auth is that certkeeper renews
// its own login certificate.
func (b *builder) resolveCertAuth(cfg *Config, rv *rawVault, i int) {
	ra := &rv.Auth[i]
	a := &cfg.Vault.Auth[i]
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
