package config

import (
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/zclconf/go-cty/cty"
)

// builder turns raw HCL values into a Config, collecting every problem
// instead of stopping at the first.
type builder struct {
	dir   string // relative paths are relative to the config file
	opts  Options
	file  string // the config file, absolute; no output may overwrite it
	diags hcl.Diagnostics
	// warnings are valid but unsafe settings (Config.Warnings).
	warnings hcl.Diagnostics
}

// warn records something valid but unsafe; validate prints it.
func (b *builder) warn(rng hcl.Range, format string, args ...any) {
	r := rng
	b.warnings = append(b.warnings, &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  fmt.Sprintf(format, args...),
		Subject:  &r,
	})
}

func (b *builder) fail(rng hcl.Range, format string, args ...any) {
	r := rng
	b.diags = append(b.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf(format, args...),
		Subject:  &r,
	})
}

func (b *builder) build(raw *rawFile) *Config {
	cfg := &Config{StateDir: DefaultStateDir}
	if raw.StateDir != "" {
		cfg.StateDir = b.path(raw.StateDir)
	}
	if raw.Vault == nil {
		b.fail(raw.Body.MissingItemRange(), `a "vault" block is required`)
	} else {
		cfg.Vault = b.vault(raw.Vault)
	}
	b.caRotation(raw, cfg)
	defaultWindows, _ := b.renewWindows(raw.RenewWindow, raw.Body, raw.Body.MissingItemRange())
	seen := map[string]hcl.Range{}
	writers := map[string]string{} // output path -> certificate writing it
	// Sized once: growing by appends left up to half again the slice's
	// size as slack for the life of the process (Certificate is large).
	cfg.Certificates = make([]Certificate, 0, len(raw.Certificates))
	for i := range raw.Certificates {
		rc := &raw.Certificates[i]
		if first, dup := seen[rc.Name]; dup {
			b.fail(rc.DefRange, "certificate %q is defined twice (first at line %d)", rc.Name, first.Start.Line)
			continue
		}
		seen[rc.Name] = rc.DefRange
		c := b.certificate(rc)
		if ws, set := b.renewWindows(rc.RenewWindow, rc.Body, rc.DefRange); set {
			c.RenewWindows = ws
		} else {
			c.RenewWindows = defaultWindows
		}
		for _, p := range c.OutputPaths() {
			if p == "" {
				continue
			}
			if other, taken := writers[p]; taken {
				b.fail(rc.DefRange, "certificate %q writes %s, which certificate %q also writes", rc.Name, p, other)
				continue
			}
			writers[p] = rc.Name
		}
		cfg.Certificates = append(cfg.Certificates, c)
	}
	// A host whose own server certificate comes from elsewhere may use
	// certkeeper only to keep the CAs and CRLs it verifies clients with.
	if len(raw.Certificates) == 0 && len(raw.TrustBundles) == 0 {
		b.fail(raw.Body.MissingItemRange(), `at least one "certificate" or "trust_bundle" block is required`)
	}
	cfg.Telemetry = b.telemetry(raw.Telemetry)
	cfg.Watch = b.watch(raw.Watch, cfg.Telemetry)
	b.serving(raw, cfg, writers)
	b.telemetryRefs(cfg, raw.Telemetry, writers)
	b.crossCheck(cfg, raw)
	b.credentials(cfg, raw)
	cfg.byName = make(map[string]int, len(cfg.Certificates))
	for i, c := range cfg.Certificates {
		cfg.byName[c.Name] = i
	}
	return cfg
}

func (b *builder) vault(rv *rawVault) Vault {
	v := Vault{
		CACert:        b.path(rv.CACert),
		TLSServerName: rv.TLSServerName,
		TLSSkipVerify: rv.TLSSkipVerify,
		Namespace:     rv.Namespace,
		Timeout:       DefaultTimeout,
		MaxParallel:   DefaultMaxParallel,
	}
	v.Addresses = b.addresses(rv)
	if v.CACert == "" {
		v.CACert = os.Getenv("VAULT_CACERT")
	}
	if rv.Timeout != "" {
		v.Timeout = b.duration(rv.Body, "timeout", rv.Timeout, rv.DefRange)
	}
	if rv.MaxParallel != nil {
		v.MaxParallel = *rv.MaxParallel
		if v.MaxParallel < 1 || v.MaxParallel > 1024 {
			b.fail(valueRange(rv.Body, "max_parallel", rv.DefRange), "max_parallel must be between 1 and 1024, not %d", v.MaxParallel)
		}
	}
	if len(rv.Auth) == 0 {
		// The token comes from VAULT_TOKEN, as for the vault CLI.
		v.Auth = []Auth{{Method: AuthToken}}
	}
	// Blocks are told apart by method and mount: logs, metrics and status
	// name them so, and two logins at one mount add nothing.
	first := map[[2]string]int{}
	certLine := 0
	for i := range rv.Auth {
		a := b.auth(&rv.Auth[i])
		line := rv.Auth[i].DefRange.Start.Line
		key := [2]string{a.Method, a.Mount}
		switch prev, dup := first[key]; {
		case dup:
			b.fail(rv.Auth[i].DefRange, "auth %q with mount %q is defined twice (first at line %d); each auth block needs its own method or mount", a.Method, a.Mount, prev)
		case a.Method == AuthCert && certLine != 0:
			// A connection presents one client certificate.
			b.fail(rv.Auth[i].DefRange, `only one auth "cert" block is allowed (the first is at line %d): a connection to vault presents one client certificate`, certLine)
		default:
			first[key] = line
			if a.Method == AuthCert {
				certLine = line
			}
		}
		v.Auth = append(v.Auth, a)
	}
	return v
}

func (b *builder) addresses(rv *rawVault) []string {
	rng := valueRange(rv.Body, "address", rv.DefRange)
	var addrs []string
	val, diags := rv.Address.Value(nil)
	switch {
	case diags.HasErrors():
		b.diags = append(b.diags, diags...)
		return nil
	case val.IsNull():
		if env := os.Getenv("VAULT_ADDR"); env != "" {
			addrs = []string{env}
		}
	case val.Type() == cty.String:
		addrs = []string{val.AsString()}
	default:
		if diags := gohcl.DecodeExpression(rv.Address, nil, &addrs); diags.HasErrors() {
			b.fail(rng, "address must be a string or a list of strings")
			return nil
		}
	}
	if len(addrs) == 0 {
		b.fail(rng, "vault address is not set: set address, or VAULT_ADDR in the environment")
	}
	for _, a := range addrs {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			b.fail(rng, "vault address %q must be an http:// or https:// URL", a)
			continue
		}
		if PlainHTTP(a) {
			from := ""
			if val.IsNull() {
				from = " (from VAULT_ADDR)"
			}
			b.warn(rng, "vault address %s%s %s", a, from, PlainHTTPRisk)
		}
	}
	return addrs
}

// PlainHTTPRisk is what an http:// address to another host costs, for the
// warnings validate and the Vault client give.
const PlainHTTPRisk = "is plain http to a host that is not this one: certkeeper's token, its secret_id at every login and every private key Vault issues cross the network unencrypted; use https://"

// PlainHTTP says whether a Vault address is http:// to a host other than
// this one (a loopback address or localhost), where anyone on the path can
// read credentials.
func PlainHTTP(addr string) bool {
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "http" {
		return false
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

func (b *builder) auth(ra *rawAuth) Auth {
	a := Auth{Method: ra.Method, Mount: strings.Trim(ra.Mount, "/"), Role: ra.Role, Region: ra.Region,
		HeaderValue: ra.HeaderValue, IMDSEndpoint: ra.IMDSEndpoint, Metadata: ra.Metadata, MetadataURL: ra.MetadataURL}
	if a.Mount == "" {
		a.Mount = ra.Method
	}
	at := func(name string) hcl.Range { return valueRange(ra.Body, name, ra.DefRange) }
	// set lists the attributes given, so each method can refuse the others'.
	set := map[string]string{"token_file": ra.TokenFile, "role_id_file": ra.RoleIDFile, "secret_id_file": ra.SecretIDFile,
		"certificate": ra.Certificate, "name": ra.Name, "role": ra.Role, "region": ra.Region, "header_value": ra.HeaderValue,
		"imds_endpoint": ra.IMDSEndpoint, "metadata": ra.Metadata, "metadata_url": ra.MetadataURL,
		"audience": ra.Audience, "resource": ra.Resource}
	if ra.SecretIDWrapped != nil {
		set["secret_id_wrapped"] = strconv.FormatBool(*ra.SecretIDWrapped)
		a.SecretIDWrapped = *ra.SecretIDWrapped
	}
	var allowed, required []string
	switch ra.Method {
	case AuthToken:
		allowed = []string{"token_file"}
		a.TokenFile = b.path(ra.TokenFile)
	case AuthAppRole:
		allowed = []string{"role_id_file", "secret_id_file"}
		required = allowed
		a.RoleIDFile = b.path(ra.RoleIDFile)
		a.SecretIDFile = b.path(ra.SecretIDFile)
		allowed = append(slices.Clone(allowed), "secret_id_wrapped")
	case AuthCert:
		allowed = []string{"certificate", "name"}
		required = []string{"certificate"}
		a.Certificate, a.CertRole = ra.Certificate, ra.Name
	case AuthAWS:
		allowed = []string{"role", "region", "header_value", "imds_endpoint"}
		required = []string{"role"}
		if a.Region == "" {
			a.Region = DefaultAWSRegion
		} else if !awsRegion.MatchString(a.Region) {
			b.fail(at("region"), "region %q is not an AWS region name such as \"us-east-1\"", a.Region)
		}
		if strings.ContainsAny(a.HeaderValue, "\r\n\x00") {
			b.fail(at("header_value"), "header_value must be one line: it is sent as an HTTP header")
		}
		if a.IMDSEndpoint == "" {
			a.IMDSEndpoint = DefaultIMDSEndpoint
		} else {
			b.baseURL(at("imds_endpoint"), "imds_endpoint", a.IMDSEndpoint)
		}
	case AuthJWT:
		allowed = []string{"role", "token_file", "metadata", "metadata_url", "audience", "resource"}
		required = []string{"role"}
		a.TokenFile = b.path(ra.TokenFile)
		b.jwtSource(ra, &a)
	default:
		b.fail(ra.DefRange, `auth method %q is not supported (use "approle", "aws", "cert", "jwt" or "token")`, ra.Method)
		return a
	}
	for name, val := range set {
		if val != "" && !slices.Contains(allowed, name) {
			b.fail(at(name), "%s does not apply to auth %q", name, ra.Method)
		}
	}
	for _, name := range required {
		if set[name] == "" {
			b.fail(ra.DefRange, "auth %q needs %s", ra.Method, name)
		}
	}
	if strings.Contains(a.Role, "/") {
		b.fail(at("role"), "role %q must be a role name, without slashes", a.Role)
	}
	return a
}

// awsRegion matches AWS region names: us-east-1, eu-central-2,
// us-gov-west-1, cn-north-1, ap-southeast-4.
var awsRegion = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

// IsAWSRegion says whether auth "aws" takes s as its region (for the
// converter, which must print only what validates).
func IsAWSRegion(s string) bool { return awsRegion.MatchString(s) }

// jwtSource checks where the JWT of auth "jwt" comes from: a file, or a
// cloud's metadata server, which needs the audience to put in the token.
func (b *builder) jwtSource(ra *rawAuth, a *Auth) {
	at := func(name string) hcl.Range { return valueRange(ra.Body, name, ra.DefRange) }
	switch {
	case ra.TokenFile != "" && ra.Metadata != "":
		b.fail(at("metadata"), "set token_file or metadata, not both")
		return
	case ra.TokenFile == "" && ra.Metadata == "":
		b.fail(ra.DefRange, `auth "jwt" needs token_file (a file holding the JWT) or metadata ("gcp" or "azure", the metadata server that makes one)`)
		return
	case ra.TokenFile != "":
		for _, name := range []string{"metadata_url", "audience", "resource"} {
			if valueRange(ra.Body, name, hcl.Range{}) != (hcl.Range{}) {
				b.fail(at(name), "%s applies only with metadata; a JWT from token_file carries its own audience", name)
			}
		}
		return
	}
	// want is the audience key of this cloud, other the other cloud's.
	want, other, def := "audience", "resource", DefaultGCPMetadataURL
	switch ra.Metadata {
	case MetadataGCP:
		a.Audience = ra.Audience
	case MetadataAzure:
		want, other, def = "resource", "audience", DefaultAzureMetadataURL
		a.Audience = ra.Resource
	default:
		b.fail(at("metadata"), `metadata must be "gcp" or "azure", not %q`, ra.Metadata)
		return
	}
	if valueRange(ra.Body, other, hcl.Range{}) != (hcl.Range{}) {
		b.fail(at(other), "%s does not apply to metadata = %q (it takes %s)", other, ra.Metadata, want)
	}
	if a.Audience == "" {
		b.fail(ra.DefRange, "auth \"jwt\" with metadata = %q needs %s: the audience Vault's role is bound to", ra.Metadata, want)
	}
	if a.MetadataURL == "" {
		a.MetadataURL = def
	} else {
		b.baseURL(at("metadata_url"), "metadata_url", a.MetadataURL)
	}
	a.MetadataURL = strings.TrimRight(a.MetadataURL, "/")
}

// baseURL checks a metadata server's base URL: http or https, a host, no
// query; certkeeper appends the path.
func (b *builder) baseURL(rng hcl.Range, name, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		b.fail(rng, "%s %q must be a base URL such as \"http://169.254.169.254\"", name, s)
	}
}

func (b *builder) certificate(rc *rawCertificate) Certificate {
	at := func(name string) hcl.Range { return valueRange(rc.Body, name, rc.DefRange) }
	c := Certificate{
		Name:          rc.Name,
		Mount:         strings.Trim(rc.Mount, "/"),
		Role:          rc.Role,
		CommonName:    rc.CommonName,
		AltNames:      rc.AltNames,
		URISANs:       rc.URISANs,
		KeyType:       rc.KeyType,
		IssueMode:     rc.IssueMode,
		RenewFraction: DefaultRenewFraction,
		RenewJitter:   DefaultRenewJitter,
		UID:           -1,
		GID:           -1,
		KeyMode:       DefaultKeyMode,
		CertMode:      DefaultCertMode,

		RevokeGrace:     DefaultRevokeGrace,
		RevocationCheck: DefaultRevocationCheck,
		Files: Files{
			Cert:      b.path(rc.CertFile),
			Key:       b.path(rc.KeyFile),
			Chain:     b.path(rc.ChainFile),
			Fullchain: b.path(rc.FullchainFile),
			CA:        b.path(rc.CAFile),
		},
	}
	if rc.Name == "" || strings.ContainsAny(rc.Name, "/\\\x00") {
		b.fail(rc.DefRange, "certificate name %q must be non-empty and must not contain slashes", rc.Name)
	}
	if strings.HasPrefix(rc.Name, ".") {
		b.fail(rc.DefRange, "certificate name %q must not begin with a dot: in state_dir, names beginning with a dot are certkeeper's temp files", rc.Name)
	}
	for name, val := range map[string]string{"mount": c.Mount, "role": c.Role, "common_name": c.CommonName} {
		if strings.TrimSpace(val) == "" {
			b.fail(at(name), "%s must not be empty", name)
		}
	}
	if strings.Contains(c.Role, "/") {
		b.fail(at("role"), "role %q must be a role name, without slashes", c.Role)
	}
	for _, ip := range rc.IPSANs {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			b.fail(at("ip_sans"), "ip_sans: %q is not an IP address", ip)
			continue
		}
		c.IPSANs = append(c.IPSANs, parsed)
	}
	for _, u := range rc.URISANs {
		if parsed, err := url.Parse(u); err != nil || parsed.Scheme == "" {
			b.fail(at("uri_sans"), "uri_sans: %q is not an absolute URI", u)
		}
	}

	if c.KeyType == "" {
		c.KeyType = KeyEC
	}
	switch c.KeyType {
	case KeyEC, KeyRSA, KeyEd25519:
	default:
		b.fail(at("key_type"), `key_type must be "ec", "rsa" or "ed25519", not %q`, c.KeyType)
	}
	c.KeyBits = DefaultKeyBits(c.KeyType)
	if rc.KeyBits != nil {
		c.KeyBits = *rc.KeyBits
		if !validKeyBits(c.KeyType, c.KeyBits) {
			b.fail(at("key_bits"), "key_bits %d does not fit key_type %q (ec: 256, 384, 521; rsa: 2048, 3072, 4096; ed25519: leave unset)", c.KeyBits, c.KeyType)
		}
	}
	if c.IssueMode == "" {
		c.IssueMode = ModeSign
	}
	if c.IssueMode != ModeSign && c.IssueMode != ModeIssue {
		b.fail(at("issue_mode"), `issue_mode must be "sign" or "issue", not %q`, c.IssueMode)
	}

	if rc.TTL != "" {
		c.TTL = b.duration(rc.Body, "ttl", rc.TTL, rc.DefRange)
	}
	if rc.RenewBefore != "" {
		c.RenewBefore = b.duration(rc.Body, "renew_before", rc.RenewBefore, rc.DefRange)
	}
	if rc.RenewFraction != nil {
		c.RenewFraction = *rc.RenewFraction
		if c.RenewFraction <= 0 || c.RenewFraction >= 1 {
			b.fail(at("renew_fraction"), "renew_fraction must be between 0 and 1 (exclusive), not %g", c.RenewFraction)
		}
	}
	if rc.RenewJitter != nil {
		c.RenewJitter = *rc.RenewJitter
		if c.RenewJitter < 0 || c.RenewJitter >= c.RenewFraction {
			b.fail(at("renew_jitter"), "renew_jitter must be at least 0 and less than renew_fraction (%g), not %g", c.RenewFraction, c.RenewJitter)
		}
	}

	if c.Files.Cert == "" {
		b.fail(at("cert_file"), "cert_file must not be empty")
	}
	if c.Files.Key == "" {
		b.fail(at("key_file"), "key_file must not be empty")
	}
	if rc.Owner != "" {
		c.UID = b.lookupUser(at("owner"), rc.Owner)
	}
	if rc.Group != "" {
		c.GID = b.lookupGroup(at("group"), rc.Group)
	}
	if rc.KeyMode != "" {
		c.KeyMode = b.mode(at("key_mode"), "key_mode", rc.KeyMode)
		if c.KeyMode&0o007 != 0 {
			b.fail(at("key_mode"), "key_mode %s would let every user on the host read or change the private key; use 0600 or 0640", rc.KeyMode)
		}
	}
	if rc.CertMode != "" {
		c.CertMode = b.mode(at("cert_mode"), "cert_mode", rc.CertMode)
	}
	if rc.RevokeSuperseded != nil {
		c.RevokeSuperseded = *rc.RevokeSuperseded
	}
	if rc.RevokeGrace != "" {
		c.RevokeGrace = b.duration(rc.Body, "revoke_grace", rc.RevokeGrace, rc.DefRange)
		if !c.RevokeSuperseded {
			b.fail(at("revoke_grace"), "revoke_grace only applies with revoke_superseded = true")
		}
	}
	if rc.RevocationCheck != "" {
		c.RevocationCheck = b.duration(rc.Body, "revocation_check", rc.RevocationCheck, rc.DefRange)
	}
	b.formats(rc, &c)
	return c
}

func validKeyBits(keyType string, bits int) bool {
	switch keyType {
	case KeyEC:
		return bits == 256 || bits == 384 || bits == 521
	case KeyRSA:
		return bits == 2048 || bits == 3072 || bits == 4096
	case KeyEd25519:
		return bits == 0
	}
	return true // the key_type problem is reported on its own
}

// duration accepts Go durations ("90m", "72h") and whole days ("30d"),
// since certificate lifetimes are usually thought of in days.
func (b *builder) duration(body hcl.Body, name, s string, fallback hcl.Range) time.Duration {
	d, err := ParseDuration(s)
	if err != nil {
		b.fail(valueRange(body, name, fallback), "%s: %v", name, err)
	}
	return d
}

// ParseDuration parses a positive duration such as "72h", "90m" or "30d".
func ParseDuration(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (examples: \"90m\", \"72h\", \"30d\")", s)
	}
	return d, nil
}

func (b *builder) mode(rng hcl.Range, name, s string) fs.FileMode {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		b.fail(rng, "%s must be an octal permission such as \"0640\", not %q", name, s)
		return 0
	}
	return fs.FileMode(m)
}

func (b *builder) lookupUser(rng hcl.Range, name string) int {
	u, err := user.Lookup(name)
	if err != nil {
		b.fail(rng, "owner %q is not a user on this host", name)
		return -1
	}
	id, _ := strconv.Atoi(u.Uid)
	return id
}

func (b *builder) lookupGroup(rng hcl.Range, name string) int {
	g, err := user.LookupGroup(name)
	if err != nil {
		b.fail(rng, "group %q is not a group on this host", name)
		return -1
	}
	id, _ := strconv.Atoi(g.Gid)
	return id
}

// path makes p absolute against the config file's directory, so a config
// means the same thing whatever the working directory of the agent.
func (b *builder) path(p string) string {
	if p == "" {
		return ""
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(b.dir, p)
}
