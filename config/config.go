// Package config reads certkeeper's HCL configuration into plain values.
//
// Loading is strict: unknown keys, wrong types and bad values are reported
// together, each with the file:line:col where the user can fix it. Defaults
// (including those taken from VAULT_* environment variables) are applied in
// one place, here, so the rest of the program never guesses.
package config

import (
	"io/fs"
	"net"
	"time"
)

// DefaultPath is where packages and config management put the config.
const DefaultPath = "/etc/certkeeper/certkeeper.hcl"

// Config is a whole, validated certkeeper configuration.
type Config struct {
	// Path is the file the config was read from.
	Path string
	// StateDir holds what certkeeper must remember between runs: which
	// request produced the certificate on disk, and write journals.
	StateDir     string
	Vault        Vault
	Certificates []Certificate
	// Telemetry is the metrics and health endpoint; Watch lists certificate
	// files certkeeper does not manage but exports expiry metrics for.
	Telemetry Telemetry
	Watch     Watch
	// Services are reloaded when files they read change; TrustBundles
	// are the CA certificates and CRLs servers verify clients against.
	Services     []Service
	TrustBundles []TrustBundle

	// CASoak is how long a new default issuer of a mount must have been in
	// this host's trust bundles before leaves move to it; IssuerCheck is
	// how often the agent lists each certificate mount's issuers.
	CASoak      time.Duration
	IssuerCheck time.Duration

	// Warnings are settings that are valid but unsafe, one line each with
	// file:line:col, for validate to print (a plain-http Vault address).
	Warnings []string

	// byName indexes Certificates, set by Load; Certificate falls back to
	// a scan when it is missing or stale (a Config built in code).
	byName map[string]int
}

// Vault says how to reach and log in to Vault.
type Vault struct {
	// Addresses are tried in order; the first is the usual one.
	Addresses     []string
	CACert        string
	TLSServerName string
	// TLSSkipVerify is only ever set by an explicit tls_skip_verify = true;
	// VAULT_SKIP_VERIFY in the environment is deliberately ignored.
	TLSSkipVerify bool
	Namespace     string
	// Timeout bounds each request to Vault.
	Timeout time.Duration
	// MaxParallel bounds concurrent issuance requests.
	MaxParallel int
	// Auth is the chain of auth methods, one per auth block, in the order
	// they are tried at every login; never empty.
	Auth []Auth
}

// Auth methods.
const (
	AuthToken   = "token"
	AuthAppRole = "approle"
	// AuthCert logs in with a TLS client certificate that certkeeper itself
	// manages and renews (a certificate block of this config).
	AuthCert = "cert"
	// AuthAWS logs in with the host's AWS identity: an STS
	// GetCallerIdentity request signed with its credentials (IAM type).
	AuthAWS = "aws"
	// AuthJWT logs in with a JWT from a file or a cloud's metadata server.
	AuthJWT = "jwt"
)

// Metadata servers a JWT can come from.
const (
	MetadataGCP   = "gcp"
	MetadataAzure = "azure"
)

// Defaults of the cloud auth methods.
const (
	DefaultAWSRegion = "us-east-1"
	// DefaultIMDSEndpoint is EC2's instance metadata service.
	DefaultIMDSEndpoint = "http://169.254.169.254"
	// DefaultGCPMetadataURL is the GCE metadata server (its DNS name, as
	// Google's own tools use).
	DefaultGCPMetadataURL = "http://metadata.google.internal"
	// DefaultAzureMetadataURL is Azure's instance metadata service.
	DefaultAzureMetadataURL = "http://169.254.169.254"
)

// Auth is how certkeeper obtains a Vault token.
type Auth struct {
	Method string
	// TokenFile is read at every login: the token of the token method
	// (empty means $VAULT_TOKEN), or the JWT of the jwt method.
	TokenFile string
	// RoleIDFile and SecretIDFile are read for the approle method.
	RoleIDFile   string
	SecretIDFile string
	// Mount is where the auth method is enabled (default: the method name).
	Mount string
	// SecretIDWrapped says SecretIDFile holds a response-wrapping token
	// around the secret_id, which is unwrapped once, at start, and then
	// kept only in memory.
	SecretIDWrapped bool
	// Certificate names the certificate block whose key pair logs in, for
	// the cert method; ClientCert, ClientKey and ClientChain are its files.
	Certificate string
	ClientCert  string
	ClientKey   string
	ClientChain string
	// CertRole is the cert auth role to log in against ("name" in Vault's
	// API); empty lets Vault pick the role that matches the certificate.
	CertRole string

	// Role is the Vault role of the aws and jwt methods.
	Role string
	// Region (aws) decides the STS endpoint the request is signed for;
	// HeaderValue is sent, signed, as X-Vault-AWS-IAM-Server-ID when set;
	// IMDSEndpoint is where the instance profile's credentials are asked.
	Region       string
	HeaderValue  string
	IMDSEndpoint string
	// Metadata (jwt) names the metadata server the JWT comes from
	// (MetadataGCP, MetadataAzure), at MetadataURL; empty means the JWT is
	// read from TokenFile. Audience is the audience asked for (the
	// resource, for Azure).
	Metadata    string
	MetadataURL string
	Audience    string
}

// Key types.
const (
	KeyEC      = "ec"
	KeyRSA     = "rsa"
	KeyEd25519 = "ed25519"
)

// Issue modes.
const (
	// ModeSign makes the key on this host and sends Vault only a CSR.
	ModeSign = "sign"
	// ModeIssue lets Vault generate the key, for roles that demand it.
	ModeIssue = "issue"
)

// Certificate is one certificate certkeeper keeps fresh.
type Certificate struct {
	Name       string
	Mount      string
	Role       string
	CommonName string
	AltNames   []string
	IPSANs     []net.IP
	URISANs    []string
	// TTL is asked of Vault; zero leaves it to the role.
	TTL       time.Duration
	KeyType   string
	KeyBits   int
	IssueMode string

	RenewFraction float64
	RenewJitter   float64
	RenewBefore   time.Duration
	// RenewWindows are when routine renewals may happen (any of them);
	// nil means at any time.
	RenewWindows []RenewWindow

	Files Files

	// UID and GID own the written files; -1 leaves them as the process makes them.
	UID, GID int
	KeyMode  fs.FileMode
	CertMode fs.FileMode

	// Templates are extra output files rendered from the certificate.
	Templates []Template
	// PKCS12PasswordFile holds the password of Files.PKCS12; empty means
	// an empty password.
	PKCS12PasswordFile string
	// Notify names the services to reload when this certificate's files
	// change.
	Notify []string

	// RevokeSuperseded revokes, in Vault, the certificate a renewal or
	// rotation replaced, once it is out of service (every notified
	// service reloaded and, with verify, seen serving the new one) and
	// RevokeGrace has passed since.
	RevokeSuperseded bool
	RevokeGrace      time.Duration
	// RevocationCheck is how often the CRL of the certificate's issuer is
	// fetched to see whether the certificate was revoked, when no trust
	// bundle already fetches that CRL.
	RevocationCheck time.Duration
}

// Files are the output paths of a certificate; only CertFile and KeyFile
// are required.
type Files struct {
	Cert      string
	Key       string
	Chain     string
	Fullchain string
	CA        string
	// PKCS12 is the key, leaf and CA chain in one PKCS#12 file.
	PKCS12 string
}

// Defaults, in one place.
const (
	DefaultStateDir      = "/var/lib/certkeeper"
	DefaultRenewFraction = 0.66
	DefaultRenewJitter   = 0.10
	DefaultKeyMode       = fs.FileMode(0o600)
	DefaultCertMode      = fs.FileMode(0o644)
	DefaultTimeout       = 30 * time.Second
	DefaultMaxParallel   = 16
	// DefaultRevokeGrace is how long a replaced certificate stays valid
	// after it is out of service, for clients that still hold it.
	DefaultRevokeGrace = time.Hour
	// DefaultRevocationCheck matches DefaultCRLRefresh: a revoked
	// certificate is noticed as fast as a revoked client is.
	DefaultRevocationCheck = time.Minute
)

// DefaultKeyBits is the key size used when key_bits is not set.
func DefaultKeyBits(keyType string) int {
	switch keyType {
	case KeyEC:
		return 256
	case KeyRSA:
		return 2048
	}
	return 0
}

// Certificate returns the certificate with that name, if configured. The
// agent asks on every pass, so a scan made the first pass over N
// certificates O(N^2): 4% of its CPU at N=10,000 (profile).
func (c *Config) Certificate(name string) (Certificate, bool) {
	if i, ok := c.byName[name]; ok && i < len(c.Certificates) && c.Certificates[i].Name == name {
		return c.Certificates[i], true
	}
	for _, cert := range c.Certificates {
		if cert.Name == name {
			return cert, true
		}
	}
	return Certificate{}, false
}
