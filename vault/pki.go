package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/certkeeper/certkeeper/config"
)

// CertRequest asks a PKI role for the configured certificate: its mount,
// role, names and TTL. With a CSR it goes to <mount>/sign/<role> and the
// key never leaves the host; without, to <mount>/issue/<role> and Vault
// makes the key.
type CertRequest struct {
	config.Certificate
	CSR []byte // PEM; empty for issue
	// IssuerRef, when set, names the issuer that must sign: the request
	// goes to <mount>/issuer/<ref>/sign/<role> (or issue). Vault ignores
	// an issuer_ref in the body of <mount>/sign/<role>; only the path
	// form pins the issuer. Empty: the mount's default issuer.
	IssuerRef string
}

// Issued is Vault's answer, as PEM strings, not yet trusted: the caller
// checks it before writing anything.
type Issued struct {
	Certificate string
	IssuingCA   string
	CAChain     []string
	PrivateKey  string // only from issue
	Serial      string
	Warnings    []string
}

// Obtain asks Vault for a certificate.
func (c *Client) Obtain(ctx context.Context, r CertRequest) (*Issued, error) {
	op := "issue"
	data := map[string]any{
		"common_name": r.CommonName,
		"format":      "pem",
	}
	if len(r.AltNames) > 0 {
		data["alt_names"] = strings.Join(r.AltNames, ",")
	}
	if len(r.IPSANs) > 0 {
		ips := make([]string, len(r.IPSANs))
		for i, ip := range r.IPSANs {
			ips[i] = ip.String()
		}
		data["ip_sans"] = strings.Join(ips, ",")
	}
	if len(r.URISANs) > 0 {
		data["uri_sans"] = strings.Join(r.URISANs, ",")
	}
	if r.TTL > 0 {
		data["ttl"] = fmt.Sprintf("%ds", int64(r.TTL.Seconds()))
	}
	if len(r.CSR) > 0 {
		op = "sign"
		data["csr"] = string(r.CSR)
	}
	path := fmt.Sprintf("%s/%s/%s", r.Mount, op, r.Role)
	if r.IssuerRef != "" {
		path = fmt.Sprintf("%s/issuer/%s/%s/%s", r.Mount, r.IssuerRef, op, r.Role)
	}
	secret, err := c.write(ctx, path, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if secret == nil || secret.Data == nil {
		return nil, &Error{Err: fmt.Errorf("%s: vault returned no data", path)}
	}
	out, err := parseIssued(secret.Data, op == "issue")
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("%s: unusable answer from vault: %w", path, err)}
	}
	out.Warnings = secret.Warnings
	return out, nil
}

// parseIssued reads the fields of a sign or issue response, refusing
// answers of the wrong shape rather than guessing.
func parseIssued(data map[string]any, wantKey bool) (*Issued, error) {
	str := func(name string) (string, error) {
		v, ok := data[name]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("field %s is %T, not a string", name, v)
		}
		return s, nil
	}
	var out Issued
	var errs []error
	var err error
	if out.Certificate, err = str("certificate"); err != nil || out.Certificate == "" {
		errs = append(errs, errors.Join(err, errors.New("no certificate")))
	}
	if out.IssuingCA, err = str("issuing_ca"); err != nil {
		errs = append(errs, err)
	}
	if out.Serial, err = str("serial_number"); err != nil {
		errs = append(errs, err)
	}
	if wantKey {
		if out.PrivateKey, err = str("private_key"); err != nil || out.PrivateKey == "" {
			// err never holds the value, only its type.
			errs = append(errs, errors.Join(err, errors.New("no private key")))
		}
	}
	if raw, ok := data["ca_chain"]; ok && raw != nil {
		list, ok := raw.([]any)
		if !ok {
			errs = append(errs, fmt.Errorf("field ca_chain is %T, not a list", raw))
		}
		for _, item := range list {
			s, ok := item.(string)
			if !ok {
				errs = append(errs, fmt.Errorf("ca_chain holds a %T, not a string", item))
				continue
			}
			out.CAChain = append(out.CAChain, s)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &out, nil
}
