package vault

import (
	"fmt"
	"slices"
	"strings"

	"github.com/certkeeper/certkeeper/config"
)

// Policy returns the least-privilege Vault policy (HCL) that cfg needs:
// exactly the sign or issue path of each certificate's role, the issuer
// list, issuer certificates and CRLs of each trust bundle's mounts, and
// what a token needs to look itself up and renew itself. Nothing else.
// (Vault 1.21 serves the issuer reads without a token too; the policy
// grants them so a Vault that requires one still works.)
func Policy(cfg *config.Config) string {
	rules := map[string][]string{
		// Token auth looks the token up to learn its TTL; every method
		// renews its token while Vault allows.
		"auth/token/lookup-self": {"read"},
		"auth/token/renew-self":  {"update"},
	}
	for _, c := range cfg.Certificates {
		rules[fmt.Sprintf("%s/%s/%s", c.Mount, c.IssueMode, c.Role)] = []string{"update"}
	}
	for _, tb := range cfg.TrustBundles {
		for _, m := range tb.Mounts {
			rules[m+"/issuers"] = []string{"list"}
			rules[m+"/issuer/+/json"] = []string{"read"}
			rules[m+"/issuer/+/crl/pem"] = []string{"read"}
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
