package vault

import (
	"fmt"
	"slices"
	"strings"

	"github.com/certkeeper/certkeeper/config"
)

// Policy returns the least-privilege Vault policy (HCL) that cfg needs:
// exactly the sign or issue path of each certificate's role, the issuer
// list and issuer certificates of each trust bundle's mounts and each
// certificate's mount, their CRLs and the rebuild of them (crl/rotate)
// where CRLs are read, revoke-with-key on the mounts of certificates with
// revoke_superseded, and what a token needs to look itself up and renew
// itself. Nothing else.
// (Vault 1.21 serves the issuer reads without a token too; the policy
// grants them so a Vault that requires one still works.)
func Policy(cfg *config.Config) string {
	rules := map[string][]string{
		// Token auth looks the token up to learn its TTL; every method
		// renews its token while Vault allows.
		"auth/token/lookup-self": {"read"},
		"auth/token/renew-self":  {"update"},
	}
	// crls: reading a mount's CRLs comes with rebuilding them when Vault
	// lets them near expiry (auto_rebuild off, as setup-pki.sh ships).
	crls := func(m string) {
		rules[m+"/issuers"] = []string{"list"}
		rules[m+"/issuer/+/json"] = []string{"read"}
		rules[m+"/issuer/+/crl/pem"] = []string{"read"}
		rules[m+"/crl/rotate"] = []string{"read"}
	}
	for _, c := range cfg.Certificates {
		rules[fmt.Sprintf("%s/%s/%s", c.Mount, c.IssueMode, c.Role)] = []string{"update"}
		// Whether the certificate was revoked: its issuer's CRL.
		crls(c.Mount)
		if c.RevokeSuperseded {
			// revoke-with-key, not revoke: it revokes only a certificate
			// whose key the caller holds, where revoke takes any serial
			// of the mount.
			rules[c.Mount+"/revoke-with-key"] = []string{"update"}
		}
	}
	for _, tb := range cfg.TrustBundles {
		for _, m := range tb.Mounts {
			rules[m+"/issuers"] = []string{"list"}
			rules[m+"/issuer/+/json"] = []string{"read"}
			if tb.CRLFile != "" {
				crls(m)
			}
		}
	}
	paths := make([]string, 0, len(rules))
	for p := range rules {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var b strings.Builder
	fmt.Fprintf(&b, "# Vault policy for certkeeper, generated from %s by `certkeeper policy`.\n", cfg.Path)
	b.WriteString("# Apply with: vault policy write certkeeper <this file>\n")
	for _, p := range paths {
		caps := rules[p]
		quoted := make([]string, len(caps))
		for i, c := range caps {
			quoted[i] = fmt.Sprintf("%q", c)
		}
		fmt.Fprintf(&b, "\npath %q {\n  capabilities = [%s]\n}\n", p, strings.Join(quoted, ", "))
	}
	return b.String()
}
