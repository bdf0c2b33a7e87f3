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
		// During a CA rotation a certificate stays with its issuer until
		// the new one has soaked (agent/carotation.go): the issuer is named
		// in the path; crls below lists the mount's issuers, which is how
		// a new one is noticed.
		rules[fmt.Sprintf("%s/issuer/+/%s/%s", c.Mount, c.IssueMode, c.Role)] = []string{"update"}
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
	authRoles(&b, cfg)
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

// policyName is the name the policy is written under, as the header says.
const policyName = "certkeeper"

// authRoles writes, as comments (the output stays a policy Vault takes),
// the Vault side of each auth block: the role it logs in to, bound to
// what proves the host's identity, with this policy. What certkeeper
// cannot know (an account, a project, a tenant) is an <UPPERCASE>
// placeholder. Fallback methods get a short token_max_ttl, so a host
// that had to use one returns to its preferred method within the hour.
func authRoles(b *strings.Builder, cfg *config.Config) {
	chain := cfg.Vault.Auth
	if len(chain) == 0 {
		return
	}
	b.WriteString("#\n# The Vault roles this config logs in to, each with this policy")
	if len(chain) > 1 {
		b.WriteString(" (tried in\n# this order; the ones after the first get a short token_max_ttl, so a\n# host that fell back returns to the first within the hour)")
	}
	b.WriteString(":\n")
	for i, a := range chain {
		maxTTL := "24h"
		if i > 0 {
			maxTTL = "1h"
		}
		ttls := fmt.Sprintf("token_policies=%s token_ttl=20m token_max_ttl=%s", policyName, maxTTL)
		var lines []string
		enable := func(kind string) {
			if a.Mount == kind {
				lines = append(lines, fmt.Sprintf("vault auth enable %s", kind))
			} else {
				lines = append(lines, fmt.Sprintf("vault auth enable -path=%s %s", a.Mount, kind))
			}
		}
		head := fmt.Sprintf("auth %q (mount %s)", a.Method, a.Mount)
		switch a.Method {
		case config.AuthCert:
			role := a.CertRole
			if role == "" {
				role = "<NAME>"
			}
			cn, ca := "<HOST COMMON NAME>", "<CLIENT CA PEM>"
			if c, ok := cfg.Certificate(a.Certificate); ok {
				cn = c.CommonName
				ca = fmt.Sprintf("<(vault read -field=certificate %s/issuer/default)", c.Mount)
			}
			enable("cert")
			lines = append(lines, fmt.Sprintf("vault write auth/%s/certs/%s certificate=@%s allowed_common_names=%s %s", a.Mount, role, ca, cn, ttls))
		case config.AuthAWS:
			head = fmt.Sprintf("auth %q (mount %s, role %s)", a.Method, a.Mount, a.Role)
			enable("aws")
			client := ""
			if a.HeaderValue != "" {
				client += " iam_server_id_header_value=" + a.HeaderValue
			}
			if a.Region != config.DefaultAWSRegion {
				client += fmt.Sprintf(" sts_endpoint=%s sts_region=%s", strings.TrimSuffix(stsEndpoint(a.Region), "/"), a.Region)
			}
			if client != "" {
				lines = append(lines, fmt.Sprintf("vault write auth/%s/config/client%s", a.Mount, client))
			}
			lines = append(lines, fmt.Sprintf("vault write auth/%s/role/%s auth_type=iam bound_iam_principal_arn=arn:aws:iam::<ACCOUNT>:role/<INSTANCE ROLE> %s", a.Mount, a.Role, ttls))
		case config.AuthJWT:
			head = fmt.Sprintf("auth %q (mount %s, role %s)", a.Method, a.Mount, a.Role)
			enable("jwt")
			var keys, role string
			switch a.Metadata {
			case config.MetadataGCP:
				keys = "jwks_url=https://www.googleapis.com/oauth2/v3/certs bound_issuer=https://accounts.google.com"
				role = fmt.Sprintf(`{"role_type":"jwt","user_claim":"sub","bound_audiences":[%q],"bound_claims":{"/google/compute_engine/project_id":"<PROJECT>"},"claim_mappings":{"/google/compute_engine/instance_name":"instance_name"}`, a.Audience)
			case config.MetadataAzure:
				keys = "jwks_url=https://login.microsoftonline.com/<TENANT>/discovery/keys bound_issuer=https://sts.windows.net/<TENANT>/"
				role = fmt.Sprintf(`{"role_type":"jwt","user_claim":"oid","bound_audiences":[%q],"bound_claims_type":"glob","bound_claims":{"tid":"<TENANT>","xms_mirid":"/subscriptions/<SUBSCRIPTION>/resourcegroups/<GROUP>/providers/Microsoft.Compute/virtualMachines/*"}`, a.Audience)
			default:
				keys = "oidc_discovery_url=<ISSUER URL>"
				role = `{"role_type":"jwt","user_claim":"sub","bound_audiences":["<AUDIENCE>"],"bound_subject":"<SUBJECT>"`
			}
			role += fmt.Sprintf(`,"token_policies":[%q],"token_ttl":"20m","token_max_ttl":%q}`, policyName, maxTTL)
			lines = append(lines, fmt.Sprintf("vault write auth/%s/config %s", a.Mount, keys),
				fmt.Sprintf("echo '%s' | vault write auth/%s/role/%s -", role, a.Mount, a.Role))
		case config.AuthAppRole:
			enable("approle")
			lines = append(lines, fmt.Sprintf("vault write auth/%s/role/<ROLE> token_no_default_policy=true %s", a.Mount, ttls))
		case config.AuthToken:
			lines = append(lines, fmt.Sprintf("vault token create -policy=%s -no-default-policy -period=24h", policyName))
		}
		fmt.Fprintf(b, "#  %d. %s:\n", i+1, head)
		for _, l := range lines {
			fmt.Fprintf(b, "#       %s\n", l)
		}
	}
}
