package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/config"
)

// FuzzParse feeds the config parser anything. It must never panic; when
// it fails, every line of the error names the file; when it succeeds, the
// config must satisfy what the rest of certkeeper takes for granted.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.hcl")
	for _, name := range files {
		if src, err := os.ReadFile(name); err == nil {
			f.Add(src)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := config.Parse("fuzz.hcl", src, withTemplates)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.hcl:") {
					t.Fatalf("error line without file:line: %q", line)
				}
			}
			return
		}
		if len(cfg.Vault.Addresses) == 0 || len(cfg.Certificates) == 0 {
			t.Fatalf("accepted a config without vault address or certificates: %+v", cfg)
		}
		written := map[string]bool{}
		for _, c := range cfg.Certificates {
			if c.KeyMode&0o007 != 0 {
				t.Fatalf("accepted key_mode %o", c.KeyMode)
			}
			if c.RenewFraction <= 0 || c.RenewFraction >= 1 || c.RenewJitter < 0 || c.RenewJitter >= c.RenewFraction {
				t.Fatalf("accepted renewal policy %g/%g", c.RenewFraction, c.RenewJitter)
			}
			for _, p := range []string{c.Files.Cert, c.Files.Key, c.Files.Chain, c.Files.Fullchain, c.Files.CA} {
				if p == "" {
					continue
				}
				if !filepath.IsAbs(p) {
					t.Fatalf("output path %q is not absolute", p)
				}
				if written[p] {
					t.Fatalf("two outputs write %s", p)
				}
				written[p] = true
			}
		}
		for _, a := range cfg.Vault.Auth {
			if a.Method == config.AuthCert && a.ClientCert == "" {
				t.Fatal("cert auth accepted without the certificate's files")
			}
		}
	})
}
