package vaulttest

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/api"
)

// AppRoleOptions describe the AppRole an agent under test logs in with.
type AppRoleOptions struct {
	Name string
	// Mounts the role's policy grants access to; default pki and pki_int.
	Mounts []string
	// TokenTTL and TokenMaxTTL of tokens from login; default "1h" and "24h".
	TokenTTL, TokenMaxTTL string
}

// CreateAppRole enables auth/approle if needed and creates role o.Name with a
// policy that reaches only the PKI mounts: what the agent needs to issue,
// sign and fetch CA chains and CRLs, and nothing else, so tests notice when
// the agent asks for more. It returns the role_id and a fresh secret_id.
func CreateAppRole(ctx context.Context, c *api.Client, o AppRoleOptions) (roleID, secretID string, err error) {
	if o.Name == "" {
		return "", "", fmt.Errorf("creating approle: empty name")
	}
	if len(o.Mounts) == 0 {
		o.Mounts = []string{RootMount, IntMount}
	}
	if o.TokenTTL == "" {
		o.TokenTTL = "1h"
	}
	if o.TokenMaxTTL == "" {
		o.TokenMaxTTL = "24h"
	}

	auths, err := c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return "", "", fmt.Errorf("listing auth methods: %w", err)
	}
	if _, ok := auths["approle/"]; !ok {
		err := c.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &api.EnableAuthOptions{Type: "approle"})
		if err != nil {
			return "", "", fmt.Errorf("enabling approle auth: %w", err)
		}
	}

	policy := "approle-" + o.Name
	if err := c.Sys().PutPolicyWithContext(ctx, policy, pkiPolicy(o.Mounts)); err != nil {
		return "", "", fmt.Errorf("writing policy %s: %w", policy, err)
	}

	rolePath := "auth/approle/role/" + o.Name
	_, err = c.Logical().WriteWithContext(ctx, rolePath, map[string]any{
		"token_policies": []string{policy},
		"token_ttl":      o.TokenTTL,
		"token_max_ttl":  o.TokenMaxTTL,
	})
	if err != nil {
		return "", "", fmt.Errorf("writing approle %s: %w", o.Name, err)
	}
	sec, err := c.Logical().ReadWithContext(ctx, rolePath+"/role-id")
	if err != nil {
		return "", "", fmt.Errorf("reading role_id of %s: %w", o.Name, err)
	}
	if roleID, err = stringField(sec, "role_id"); err != nil {
		return "", "", fmt.Errorf("reading role_id of %s: %w", o.Name, err)
	}
	sec, err = c.Logical().WriteWithContext(ctx, rolePath+"/secret-id", nil)
	if err != nil {
		return "", "", fmt.Errorf("creating secret_id for %s: %w", o.Name, err)
	}
	if secretID, err = stringField(sec, "secret_id"); err != nil {
		return "", "", fmt.Errorf("creating secret_id for %s: %w", o.Name, err)
	}
	return roleID, secretID, nil
}

// pkiPolicy grants the same paths on every mount; a root mount has no roles,
// so sign/* and issue/* there grant nothing in practice. PKI serves cert/*,
// ca_chain, the issuers LIST and the CRLs without a token anyway; they are
// listed so the policy states what the agent reads rather than rely on that.
func pkiPolicy(mounts []string) string {
	var b strings.Builder
	for _, m := range mounts {
		fmt.Fprintf(&b, `path "%[1]s/sign/*"   { capabilities = ["update"] }
path "%[1]s/issue/*"  { capabilities = ["update"] }
path "%[1]s/cert/*"   { capabilities = ["read"] }
path "%[1]s/ca_chain" { capabilities = ["read"] }
path "%[1]s/issuers"  { capabilities = ["read", "list"] }
path "%[1]s/issuer/*" { capabilities = ["read"] }
path "%[1]s/crl*"     { capabilities = ["read"] }
`, m)
	}
	return b.String()
}
