package config

import (
	"errors"
	"io/fs"
	"os"

	"github.com/hashicorp/hcl/v2"
)

// credentials refuses, when Options.Credentials asks (validate does), a
// file the vault block reads that is not there: each auth block's
// token_file (the jwt method's too), role_id_file and secret_id_file,
// and ca_cert. Without them certkeeper
// cannot log in, yet validate said ok. Only a file that is certainly
// missing (or not a file) is refused: a user who may not look into its
// directory (validate may be run by anyone) cannot tell, and the daemon's
// user will be told at its first login.
//
// The other commands do not check: a daemon started before its
// credentials are written keeps trying, and says why at each login.
func (b *builder) credentials(cfg *Config, raw *rawFile) {
	if !b.opts.Credentials || raw.Vault == nil {
		return
	}
	rv := raw.Vault
	check := func(attr, path string, body hcl.Body, def hcl.Range, why string) {
		if path == "" {
			return
		}
		info, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			b.fail(valueRange(body, attr, def), "%s %s does not exist: %s", attr, path, why)
		case err == nil && !info.Mode().IsRegular():
			b.fail(valueRange(body, attr, def), "%s %s is not a file: %s", attr, path, why)
		}
	}
	if rv.CACert != "" {
		check("ca_cert", cfg.Vault.CACert, rv.Body, rv.DefRange, "certkeeper cannot check Vault's certificate without it")
	}
	if len(rv.Auth) != len(cfg.Vault.Auth) {
		return // no auth block: the token comes from VAULT_TOKEN
	}
	// In a chain the other blocks may still log in, but this one never
	// will: a missing file is as much a mistake there.
	login := "certkeeper cannot log in to Vault without it"
	if len(rv.Auth) > 1 {
		login = "this auth block cannot log in to Vault without it"
	}
	for i := range rv.Auth {
		ra, a := &rv.Auth[i], cfg.Vault.Auth[i]
		check("token_file", a.TokenFile, ra.Body, ra.DefRange, login)
		check("role_id_file", a.RoleIDFile, ra.Body, ra.DefRange, login)
		check("secret_id_file", a.SecretIDFile, ra.Body, ra.DefRange, login)
	}
}
