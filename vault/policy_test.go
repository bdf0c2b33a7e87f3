package vault

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/certkeeper/certkeeper/config"
)

// TestPolicyNamesTheAuthRoles: `certkeeper policy` says, for each auth
// block in order, the Vault role to create with this policy, bound to
// what proves the host (the cert block's CA and common name, the instance
// role's ARN, the audience and the cloud's claims), fallbacks with a
// short token_max_ttl; and the whole output is still a policy (the role
// lines are comments).
func TestPolicyNamesTheAuthRoles(t *testing.T) {
	cfg := &config.Config{Path: "/etc/certkeeper/certkeeper.hcl",
		Certificates: []config.Certificate{{Name: "vault-identity", Mount: "pki_clients", Role: "client", CommonName: "host1.example.internal", IssueMode: "sign"}},
		Vault: config.Vault{Auth: []config.Auth{
			{Method: "cert", Mount: "cert", Certificate: "vault-identity", CertRole: "hosts"},
			{Method: "aws", Mount: "aws", Role: "web-host", Region: "eu-west-3", HeaderValue: "vault.example.internal"},
			{Method: "jwt", Mount: "jwt-gcp", Role: "web-host", Metadata: "gcp", Audience: "vault/certkeeper"},
			{Method: "jwt", Mount: "jwt-azure", Role: "web-host", Metadata: "azure", Audience: "https://vault.example.internal"},
		}},
	}
	out := Policy(cfg)
	for _, want := range []string{
		"#  1. auth \"cert\" (mount cert):\n#       vault auth enable cert\n#       vault write auth/cert/certs/hosts certificate=@<(vault read -field=certificate pki_clients/issuer/default) allowed_common_names=host1.example.internal token_policies=certkeeper token_ttl=20m token_max_ttl=24h\n",
		"vault write auth/aws/config/client iam_server_id_header_value=vault.example.internal sts_endpoint=https://sts.eu-west-3.amazonaws.com sts_region=eu-west-3\n",
		"vault write auth/aws/role/web-host auth_type=iam bound_iam_principal_arn=arn:aws:iam::<ACCOUNT>:role/<INSTANCE ROLE> token_policies=certkeeper token_ttl=20m token_max_ttl=1h\n",
		"vault auth enable -path=jwt-gcp jwt\n",
		`"bound_audiences":["vault/certkeeper"],"bound_claims":{"/google/compute_engine/project_id":"<PROJECT>"}`,
		`"bound_audiences":["https://vault.example.internal"],"bound_claims_type":"glob","bound_claims":{"tid":"<TENANT>","xms_mirid":"/subscriptions/<SUBSCRIPTION>/`,
		`| vault write auth/jwt-azure/role/web-host -`,
		`path "pki_clients/sign/client"`,
		"path \"pki_clients/issuer/+/sign/client\" {\n  capabilities = [\"update\"]\n}",
		"path \"pki_clients/issuers\" {\n  capabilities = [\"list\"]\n}",
		"path \"pki_clients/issuer/+/json\" {\n  capabilities = [\"read\"]\n}",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("policy lacks %q:\n%s", want, out)
		}
	}
	f, diags := hclsyntax.ParseConfig([]byte(out), "policy.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("the output is not HCL: %v", diags)
	}
	if n := len(f.Body.(*hclsyntax.Body).Blocks); n != 8 {
		t.Errorf("%d path blocks, want 8 (lookup-self, renew-self, the sign path, the sign path naming an issuer, and the issuers, issuer json, CRL and crl/rotate of its mount for the revocation check and CA rotation)", n)
	}
}
