package vaulttest

import (
	"context"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/api"
)

// Mounts and roles created by Bootstrap.
const (
	RootMount = "pki"
	IntMount  = "pki_int"

	RoleEC      = "ec"      // issues EC P-256 keys
	RoleRSA     = "rsa"     // issues RSA 2048 keys
	RoleAny     = "any"     // signs CSRs of any key type; cannot issue
	RoleEd25519 = "ed25519" // issues Ed25519 keys

	// Domain is the only domain the roles allow (with subdomains),
	// besides localhost and IP SANs.
	Domain = "example.internal"
)

// PKI describes the two-tier CA that Bootstrap created.
type PKI struct {
	RootMount, IntMount      string
	RootPEM, IntermediatePEM string // the CA certificates
}

// Bootstrap mounts a self-signed root CA at "pki" and an intermediate at
// "pki_int" signed by it, with the roles RoleEC, RoleRSA, RoleAny and
// RoleEd25519 in pki_int. addr is the server's address as clients see it; it
// goes into the AIA and CRL distribution URLs of issued certificates.
func Bootstrap(ctx context.Context, c *api.Client, addr string) (*PKI, error) {
	l := c.Logical()
	for _, m := range []string{RootMount, IntMount} {
		err := c.Sys().MountWithContext(ctx, m, &api.MountInput{
			Type:   "pki",
			Config: api.MountConfigInput{MaxLeaseTTL: "87600h"},
		})
		if err != nil {
			return nil, fmt.Errorf("mounting %s: %w", m, err)
		}
		_, err = l.WriteWithContext(ctx, m+"/config/urls", map[string]any{
			"issuing_certificates":    addr + "/v1/" + m + "/ca",
			"crl_distribution_points": addr + "/v1/" + m + "/crl",
		})
		if err != nil {
			return nil, fmt.Errorf("configuring %s urls: %w", m, err)
		}
	}

	root, err := l.WriteWithContext(ctx, RootMount+"/root/generate/internal", map[string]any{
		"common_name": "certkeeper test root",
		"ttl":         "87600h",
		"key_type":    "ec",
		"key_bits":    256,
	})
	if err != nil {
		return nil, fmt.Errorf("generating root ca: %w", err)
	}
	rootPEM, err := stringField(root, "certificate")
	if err != nil {
		return nil, fmt.Errorf("generating root ca: %w", err)
	}

	gen, err := l.WriteWithContext(ctx, IntMount+"/intermediate/generate/internal", map[string]any{
		"common_name": "certkeeper test intermediate",
		"key_type":    "ec",
		"key_bits":    256,
	})
	if err != nil {
		return nil, fmt.Errorf("generating intermediate csr: %w", err)
	}
	csr, err := stringField(gen, "csr")
	if err != nil {
		return nil, fmt.Errorf("generating intermediate csr: %w", err)
	}

	signed, err := l.WriteWithContext(ctx, RootMount+"/root/sign-intermediate", map[string]any{
		"csr":    csr,
		"format": "pem",
		"ttl":    "43800h",
	})
	if err != nil {
		return nil, fmt.Errorf("signing intermediate: %w", err)
	}
	intPEM, err := stringField(signed, "certificate")
	if err != nil {
		return nil, fmt.Errorf("signing intermediate: %w", err)
	}

	// The root lives in another mount, so pki_int cannot find it on its own:
	// without it in the bundle, ca_chain would stop at the intermediate and
	// clients would have no path to the trust anchor.
	_, err = l.WriteWithContext(ctx, IntMount+"/intermediate/set-signed", map[string]any{
		"certificate": intPEM + "\n" + rootPEM,
	})
	if err != nil {
		return nil, fmt.Errorf("importing signed intermediate: %w", err)
	}
	if err := checkChain(ctx, l); err != nil {
		return nil, err
	}

	roles := []struct{ name, keyType string }{
		{RoleEC, "ec"}, {RoleRSA, "rsa"}, {RoleAny, "any"}, {RoleEd25519, "ed25519"},
	}
	for _, r := range roles {
		role := map[string]any{
			"allowed_domains":    Domain,
			"allow_subdomains":   true,
			"allow_bare_domains": true,
			"allow_localhost":    true,
			"allow_ip_sans":      true,
			"max_ttl":            "72h",
			"ttl":                "24h",
			"server_flag":        true,
			"client_flag":        true,
			"no_store":           false,
			"key_type":           r.keyType,
		}
		switch r.keyType {
		case "ec":
			role["key_bits"] = 256
		case "rsa":
			role["key_bits"] = 2048
		}
		if _, err := l.WriteWithContext(ctx, IntMount+"/roles/"+r.name, role); err != nil {
			return nil, fmt.Errorf("writing role %s: %w", r.name, err)
		}
	}

	return &PKI{
		RootMount:       RootMount,
		IntMount:        IntMount,
		RootPEM:         rootPEM,
		IntermediatePEM: intPEM,
	}, nil
}

// checkChain makes sure pki_int's default issuer chains to the root, which is
// what issue and sign return as ca_chain.
func checkChain(ctx context.Context, l *api.Logical) error {
	sec, err := l.ReadWithContext(ctx, IntMount+"/cert/ca_chain")
	if err != nil {
		return fmt.Errorf("reading %s ca_chain: %w", IntMount, err)
	}
	chain, err := stringField(sec, "certificate")
	if err != nil {
		return fmt.Errorf("reading %s ca_chain: %w", IntMount, err)
	}
	if n := countPEM(chain); n != 2 {
		return fmt.Errorf("%s ca_chain has %d certificates, want intermediate and root", IntMount, n)
	}
	return nil
}

// stringField returns a non-empty string from a response's data.
func stringField(sec *api.Secret, key string) (string, error) {
	if sec == nil || sec.Data == nil {
		return "", fmt.Errorf("empty response, want field %q", key)
	}
	s, ok := sec.Data[key].(string)
	if !ok || strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("response field %q is %T, want a non-empty string", key, sec.Data[key])
	}
	return s, nil
}

// countPEM counts the PEM blocks in s.
func countPEM(s string) int {
	n := 0
	for rest := []byte(s); ; n++ {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return n
		}
	}
}
