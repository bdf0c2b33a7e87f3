//go:build integration

package integration

import (
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/certkeeper/certkeeper/test/sidebyside"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestConvertedVaultAgentConfigs: for each Vault Agent configuration in
// vaultagent/testdata, the real Vault Agent (bin/vault agent) and
// certkeeper, on what `certkeeper convert vault-agent` made of it, run
// against one real Vault and write the same files: same paths, same PEM
// layout, same subject, SANs and issuer, same modes, apart from what the
// converter says changes (a key Vault Agent left readable by all, the
// cert_file and key_file certkeeper always writes, a token sink).
func TestConvertedVaultAgentConfigs(t *testing.T) {
	vaultBin, err := vaulttest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		config string
		expect sidebyside.Expect
	}{
		{"split-secret.hcl", sidebyside.Expect{
			OnlyVaultAgent: []string{"/etc/vault-agent/token"},
			Modes:          map[string]fs.FileMode{"/etc/shop/tls/shop.key": 0o600},
		}},
		{"pkicert-writetofile.hcl", sidebyside.Expect{
			OnlyCertkeeper: []string{"/etc/mail/tls/mx1.example.internal.crt"},
		}},
		{"bench.hcl", sidebyside.Expect{
			OnlyCertkeeper: []string{
				"/etc/bench/tls/c0.example.internal.crt", "/etc/bench/tls/c0.example.internal.key",
				"/etc/bench/tls/c1.example.internal.crt", "/etc/bench/tls/c1.example.internal.key",
				"/etc/bench/tls/c2.example.internal.crt", "/etc/bench/tls/c2.example.internal.key",
			},
		}},
		{"json-exec.json", sidebyside.Expect{
			OnlyCertkeeper: []string{"/etc/api/tls/api.example.internal.crt"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.config, func(t *testing.T) {
			v := vaulttest.New(t, vaulttest.Options{})
			v.PKI(t)
			r := sidebyside.Run(t, sidebyside.Options{
				Vault: v, VaultBin: vaultBin, CertkeeperBin: certkeeperBin,
				Config: filepath.Join("..", "..", "vaultagent", "testdata", tc.config),
				Expect: tc.expect,
			})
			t.Logf("files, side by side:\n%s", r.Table())
		})
	}
}
