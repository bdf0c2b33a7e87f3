package vaulttest

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/api"
)

// WrapSecretID gives AppRole role the secret_id secretID (a custom one, so
// a test knows the secret it must never find in logs) and returns a
// response-wrapping token for it that lives wrapTTL (e.g. "60s"): what an
// orchestrator hands a new host.
func WrapSecretID(ctx context.Context, c *api.Client, role, secretID, wrapTTL string) (string, error) {
	cl, err := c.Clone()
	if err != nil {
		return "", err
	}
	cl.SetToken(c.Token())
	cl.SetWrappingLookupFunc(func(string, string) string { return wrapTTL })
	sec, err := cl.Logical().WriteWithContext(ctx, "auth/approle/role/"+role+"/custom-secret-id", map[string]any{"secret_id": secretID})
	if err != nil {
		return "", fmt.Errorf("wrapping a secret_id for %s: %w", role, err)
	}
	if sec == nil || sec.WrapInfo == nil || sec.WrapInfo.Token == "" {
		return "", fmt.Errorf("wrapping a secret_id for %s: no wrapping token in the answer", role)
	}
	return sec.WrapInfo.Token, nil
}

// CertAuthOptions describe a cert auth role (auth/cert/certs/<Name>).
type CertAuthOptions struct {
	Name string
	// CAPEM is the CA that client certificates must chain to.
	CAPEM string
	// AllowedCommonNames restricts which certificates may log in.
	AllowedCommonNames []string
	// Mounts the role's policy reaches; default pki and pki_int.
	Mounts []string
	// TokenTTL and TokenMaxTTL of tokens from login; default "1h", "24h".
	TokenTTL, TokenMaxTTL string
}

// EnableCertAuth enables auth/cert if needed and writes the role o.Name
// with a policy limited to the PKI mounts, as for AppRole.
func EnableCertAuth(ctx context.Context, c *api.Client, o CertAuthOptions) error {
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
		return fmt.Errorf("listing auth methods: %w", err)
	}
	if _, ok := auths["cert/"]; !ok {
		if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, "cert", &api.EnableAuthOptions{Type: "cert"}); err != nil {
			return fmt.Errorf("enabling cert auth: %w", err)
		}
	}
	policy := "cert-" + o.Name
	if err := c.Sys().PutPolicyWithContext(ctx, policy, pkiPolicy(o.Mounts)); err != nil {
		return fmt.Errorf("writing policy %s: %w", policy, err)
	}
	_, err = c.Logical().WriteWithContext(ctx, "auth/cert/certs/"+o.Name, map[string]any{
		"certificate":          o.CAPEM,
		"allowed_common_names": o.AllowedCommonNames,
		"token_policies":       []string{policy},
		"token_ttl":            o.TokenTTL,
		"token_max_ttl":        o.TokenMaxTTL,
	})
	if err != nil {
		return fmt.Errorf("writing cert auth role %s: %w", o.Name, err)
	}
	return nil
}
