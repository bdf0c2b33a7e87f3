package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// maxFileSize keeps a wrong path (a log, a binary) from being slurped whole.
// A certificate block takes about 450 bytes, so 16 MB leaves room for tens
// of thousands of certificates (1 MB stopped at about 2,300).
const maxFileSize = 16 << 20

// The raw* types mirror the HCL file. Pointers mark values whose absence
// matters, so defaults are applied in build and nowhere else.
type rawFile struct {
	StateDir     string           `hcl:"state_dir,optional"`
	Vault        *rawVault        `hcl:"vault,block"`
	Certificates []rawCertificate `hcl:"certificate,block"`
	Telemetry    []rawTelemetry   `hcl:"telemetry,block"`
	Watch        []rawWatch       `hcl:"watch,block"`
	Services     []rawService     `hcl:"service,block"`
	TrustBundles []rawTrustBundle `hcl:"trust_bundle,block"`
	Body         hcl.Body         `hcl:",body"`

	// RenewWindow is the default of every certificate's renew_window.
	RenewWindow hcl.Expression `hcl:"renew_window,optional"`
	CASoak      string         `hcl:"ca_soak,optional"`
	IssuerCheck string         `hcl:"issuer_check,optional"`
}

type rawVault struct {
	Address       hcl.Expression `hcl:"address,optional"`
	CACert        string         `hcl:"ca_cert,optional"`
	TLSServerName string         `hcl:"tls_server_name,optional"`
	TLSSkipVerify bool           `hcl:"tls_skip_verify,optional"`
	Namespace     string         `hcl:"namespace,optional"`
	Timeout       string         `hcl:"timeout,optional"`
	MaxParallel   *int           `hcl:"max_parallel,optional"`
	Auth          []rawAuth      `hcl:"auth,block"`
	Body          hcl.Body       `hcl:",body"`
	DefRange      hcl.Range      `hcl:",def_range"`
}

type rawAuth struct {
	Method       string    `hcl:"method,label"`
	TokenFile    string    `hcl:"token_file,optional"`
	RoleIDFile   string    `hcl:"role_id_file,optional"`
	SecretIDFile string    `hcl:"secret_id_file,optional"`
	Mount        string    `hcl:"mount,optional"`
	Body         hcl.Body  `hcl:",body"`
	DefRange     hcl.Range `hcl:",def_range"`

	// SecretIDWrapped is a pointer so that "secret_id_wrapped = false" on
	// another method is reported like any other misplaced attribute.
	SecretIDWrapped *bool  `hcl:"secret_id_wrapped,optional"`
	Certificate     string `hcl:"certificate,optional"`
	Name            string `hcl:"name,optional"`

	// aws and jwt.
	Role         string `hcl:"role,optional"`
	Region       string `hcl:"region,optional"`
	HeaderValue  string `hcl:"header_value,optional"`
	IMDSEndpoint string `hcl:"imds_endpoint,optional"`
	Metadata     string `hcl:"metadata,optional"`
	MetadataURL  string `hcl:"metadata_url,optional"`
	Audience     string `hcl:"audience,optional"`
	Resource     string `hcl:"resource,optional"`
}

type rawCertificate struct {
	Name          string    `hcl:"name,label"`
	Mount         string    `hcl:"mount"`
	Role          string    `hcl:"role"`
	CommonName    string    `hcl:"common_name"`
	AltNames      []string  `hcl:"alt_names,optional"`
	IPSANs        []string  `hcl:"ip_sans,optional"`
	URISANs       []string  `hcl:"uri_sans,optional"`
	TTL           string    `hcl:"ttl,optional"`
	KeyType       string    `hcl:"key_type,optional"`
	KeyBits       *int      `hcl:"key_bits,optional"`
	IssueMode     string    `hcl:"issue_mode,optional"`
	RenewFraction *float64  `hcl:"renew_fraction,optional"`
	RenewJitter   *float64  `hcl:"renew_jitter,optional"`
	RenewBefore   string    `hcl:"renew_before,optional"`
	CertFile      string    `hcl:"cert_file"`
	KeyFile       string    `hcl:"key_file"`
	ChainFile     string    `hcl:"chain_file,optional"`
	FullchainFile string    `hcl:"fullchain_file,optional"`
	CAFile        string    `hcl:"ca_file,optional"`
	Owner         string    `hcl:"owner,optional"`
	Group         string    `hcl:"group,optional"`
	KeyMode       string    `hcl:"key_mode,optional"`
	CertMode      string    `hcl:"cert_mode,optional"`
	Notify        []string  `hcl:"notify,optional"`
	Body          hcl.Body  `hcl:",body"`
	DefRange      hcl.Range `hcl:",def_range"`

	RevokeSuperseded *bool  `hcl:"revoke_superseded,optional"`
	RevokeGrace      string `hcl:"revoke_grace,optional"`
	RevocationCheck  string `hcl:"revocation_check,optional"`

	Templates          []rawTemplate `hcl:"template,block"`
	PKCS12File         string        `hcl:"pkcs12_file,optional"`
	PKCS12PasswordFile string        `hcl:"pkcs12_password_file,optional"`

	// RenewWindow is a string or a list of strings (config/window.go).
	RenewWindow hcl.Expression `hcl:"renew_window,optional"`
}

type rawTemplate struct {
	Source         string    `hcl:"source,optional"`
	Contents       string    `hcl:"contents,optional"`
	Stock          string    `hcl:"stock,optional"`
	Destination    string    `hcl:"destination"`
	Mode           string    `hcl:"mode,optional"`
	Owner          string    `hcl:"owner,optional"`
	Group          string    `hcl:"group,optional"`
	LeftDelimiter  string    `hcl:"left_delimiter,optional"`
	RightDelimiter string    `hcl:"right_delimiter,optional"`
	Body           hcl.Body  `hcl:",body"`
	DefRange       hcl.Range `hcl:",def_range"`
}

// Load reads, decodes and validates the config file at path. The error
// lists every problem found, one per line, each starting with file:line:col.
func Load(path string, o Options) (*Config, error) {
	src, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src, o)
}

// Parse is Load for a config already in memory; path is used in messages and
// to resolve relative paths.
func Parse(path string, src []byte, o Options) (*Config, error) {
	raw, diags := decodeHCL(src, path, chunkSize)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	b := &builder{dir: filepath.Dir(absPath(path)), opts: o, file: absPath(path)}
	cfg := b.build(raw)
	if len(b.diags) > 0 {
		return nil, diagError(b.diags)
	}
	cfg.Path = path
	cfg.Warnings = diagLines(b.warnings)
	return cfg, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("reading config %s: not a regular file", path)
	}
	if info.Size() > maxFileSize {
		return nil, fmt.Errorf("reading config %s: %d bytes is more than a config can be (limit %d)", path, info.Size(), maxFileSize)
	}
	src := make([]byte, info.Size())
	if _, err := f.ReadAt(src, 0); err != nil && info.Size() > 0 {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return src, nil
}

func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// diagError turns HCL diagnostics into one error with a line per problem,
// in file order, so the first line is the first thing to fix.
func diagError(diags hcl.Diagnostics) error {
	sorted := append(hcl.Diagnostics(nil), diags...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i].Subject, sorted[j].Subject
		if a == nil || b == nil {
			return b != nil
		}
		if a.Start.Line != b.Start.Line {
			return a.Start.Line < b.Start.Line
		}
		return a.Start.Column < b.Start.Column
	})
	var errs []error
	for _, d := range sorted {
		if d.Severity != hcl.DiagError {
			continue
		}
		errs = append(errs, errors.New(diagLine(d)))
	}
	return errors.Join(errs...)
}

// diagLines are warnings as validate prints them, one per line.
func diagLines(diags hcl.Diagnostics) []string {
	var out []string
	for _, d := range diags {
		out = append(out, diagLine(d))
	}
	return out
}

func diagLine(d *hcl.Diagnostic) string {
	msg := d.Summary
	if d.Detail != "" {
		msg += ": " + d.Detail
	}
	if d.Subject != nil {
		msg = fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, msg)
	}
	return msg
}

// valueRange points at the value of attribute name in body, or at fallback
// when the attribute is absent (a missing value is reported on its block).
func valueRange(body hcl.Body, name string, fallback hcl.Range) hcl.Range {
	if p, ok := body.(*positions); ok {
		if r, ok := p.valueRange(name); ok {
			return r
		}
		return fallback
	}
	if sb, ok := body.(*hclsyntax.Body); ok {
		if attr, ok := sb.Attributes[name]; ok {
			return attr.Expr.Range()
		}
	}
	return fallback
}
