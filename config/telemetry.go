package config

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Telemetry is what `certkeeper run` tells monitoring: the HTTP endpoint
// serving /metrics, /healthz, /readyz and /v1/status, and the file for
// node_exporter's textfile collector.
type Telemetry struct {
	// Listen is host:port; empty turns the endpoint off. Without a
	// telemetry block it is DefaultTelemetryListen: loopback, so nothing
	// is exposed to the network unless the operator says so.
	Listen string
	// WebConfigFile is a web configuration in the format of Prometheus'
	// exporter toolkit (node_exporter's --web.config.file): TLS from
	// files, basic_auth_users with bcrypt hashes, client certificate
	// verification. It is read again at every connection and request.
	WebConfigFile string
	// TLSCertificate names the certificate block whose key pair the
	// endpoint serves, taken from the agent at each handshake so a renewal
	// needs no restart. ClientTrustBundle names the trust_bundle a client
	// certificate must chain to (and, when the bundle has a crl_file, not
	// be revoked in); ClientNames, when set, are the only names (DNS SAN,
	// URI SAN or common name) a client certificate may carry.
	TLSCertificate    string
	ClientTrustBundle string
	ClientNames       []string
	// Textfile is a .prom file for node_exporter's textfile collector,
	// replaced after every change and every TextfileInterval.
	Textfile         string
	TextfileInterval time.Duration
}

// WebConfigChecker checks a web configuration file while a config loads;
// telemetry has the real one. config does not import the exporter
// toolkit, so reading a config never links it.
type WebConfigChecker interface {
	// CheckWebConfig says whether the file at path is a valid web
	// configuration and whether it sets up TLS itself
	// (tls_server_config).
	CheckWebConfig(path string) (servesTLS bool, err error)
}

// Watch lists certificate files that something else manages (a package, a
// colleague, another tool) whose expiry certkeeper exports as metrics.
type Watch struct {
	// Paths are files, directories (every file directly inside) or glob
	// patterns, absolute after loading.
	Paths []string
	// Rescan is how often every path is read again even without a file
	// system event, for file systems that send none (NFS, some FUSE).
	Rescan time.Duration
}

// Telemetry and watch defaults.
const (
	DefaultTelemetryListen = "127.0.0.1:9847"
	DefaultWatchRescan     = 5 * time.Minute
	// DefaultTextfileInterval keeps node_textfile_mtime_seconds moving, so
	// a stopped certkeeper shows as a file that stopped changing.
	DefaultTextfileInterval = time.Minute
)

type rawTelemetry struct {
	// A pointer, because listen = "" (off) differs from no listen at all.
	Listen               *string   `hcl:"listen,optional"`
	WebConfigFile        string    `hcl:"web_config_file,optional"`
	TLSCertificate       string    `hcl:"tls_certificate,optional"`
	TLSClientTrustBundle string    `hcl:"tls_client_trust_bundle,optional"`
	TLSClientNames       []string  `hcl:"tls_client_names,optional"`
	Textfile             string    `hcl:"textfile,optional"`
	TextfileInterval     string    `hcl:"textfile_interval,optional"`
	Body                 hcl.Body  `hcl:",body"`
	DefRange             hcl.Range `hcl:",def_range"`
}

type rawWatch struct {
	Paths    []string  `hcl:"paths"`
	Rescan   string    `hcl:"rescan,optional"`
	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

func (b *builder) telemetry(raws []rawTelemetry) Telemetry {
	t := Telemetry{Listen: DefaultTelemetryListen, TextfileInterval: DefaultTextfileInterval}
	if len(raws) == 0 {
		return t
	}
	for _, extra := range raws[1:] {
		b.fail(extra.DefRange, `only one "telemetry" block is allowed (the first is at line %d)`, raws[0].DefRange.Start.Line)
	}
	rt := raws[0]
	at := func(name string) hcl.Range { return valueRange(rt.Body, name, rt.DefRange) }
	if rt.Listen != nil {
		t.Listen = *rt.Listen
	}
	if t.Listen != "" {
		host, port, err := net.SplitHostPort(t.Listen)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 0 || n > 65535 || strings.ContainsAny(host, " /") {
			b.fail(at("listen"), `listen must be host:port such as "127.0.0.1:9847" (or "" to turn the endpoint off), not %q`, t.Listen)
		}
	}
	b.endpointSecurity(rt, &t)
	b.textfile(rt, &t)
	return t
}

// endpointSecurity reads how the endpoint is protected: a web
// configuration file, a certificate of this config, or both (the
// certificate for TLS, the file for basic auth). The names are resolved
// once every block is built (telemetryRefs).
func (b *builder) endpointSecurity(rt rawTelemetry, t *Telemetry) {
	at := func(name string) hcl.Range { return valueRange(rt.Body, name, rt.DefRange) }
	t.WebConfigFile = b.path(rt.WebConfigFile)
	t.TLSCertificate = rt.TLSCertificate
	t.ClientTrustBundle = rt.TLSClientTrustBundle
	t.ClientNames = rt.TLSClientNames
	if t.Listen == "" {
		for _, key := range []string{"web_config_file", "tls_certificate", "tls_client_trust_bundle", "tls_client_names"} {
			if attrSet(rt, key) {
				b.fail(at(key), `%s protects the telemetry endpoint, which listen = "" turns off`, key)
			}
		}
		return
	}
	if t.ClientTrustBundle != "" && t.TLSCertificate == "" {
		b.fail(at("tls_client_trust_bundle"), "tls_client_trust_bundle needs tls_certificate: client certificates are only asked for over TLS")
	}
	if len(t.ClientNames) > 0 && t.ClientTrustBundle == "" {
		b.fail(at("tls_client_names"), "tls_client_names needs tls_client_trust_bundle, which client certificates are verified against")
	}
	for _, n := range t.ClientNames {
		if strings.TrimSpace(n) == "" {
			b.fail(at("tls_client_names"), "tls_client_names: an empty name matches no certificate")
		}
	}
	if t.WebConfigFile == "" {
		return
	}
	if b.opts.WebConfig == nil {
		b.fail(at("web_config_file"), "web_config_file cannot be checked here (no web configuration checker)")
		return
	}
	servesTLS, err := b.opts.WebConfig.CheckWebConfig(t.WebConfigFile)
	switch {
	case err != nil:
		b.fail(at("web_config_file"), "web_config_file %s: %v", t.WebConfigFile, err)
	case servesTLS && t.TLSCertificate != "":
		b.fail(at("web_config_file"), "web_config_file %s has a tls_server_config, and tls_certificate also sets up TLS: keep one (with tls_certificate, the file may still hold basic_auth_users)", t.WebConfigFile)
	}
}

// attrSet says whether the telemetry block sets key.
func attrSet(rt rawTelemetry, key string) bool {
	switch key {
	case "web_config_file":
		return rt.WebConfigFile != ""
	case "tls_certificate":
		return rt.TLSCertificate != ""
	case "tls_client_trust_bundle":
		return rt.TLSClientTrustBundle != ""
	case "tls_client_names":
		return len(rt.TLSClientNames) > 0
	}
	return false
}

// textfile reads the node_exporter textfile output.
func (b *builder) textfile(rt rawTelemetry, t *Telemetry) {
	at := func(name string) hcl.Range { return valueRange(rt.Body, name, rt.DefRange) }
	if rt.TextfileInterval != "" {
		t.TextfileInterval = b.duration(rt.Body, "textfile_interval", rt.TextfileInterval, rt.DefRange)
		if rt.Textfile == "" {
			b.fail(at("textfile_interval"), "textfile_interval needs textfile")
		}
	}
	if rt.Textfile == "" {
		return
	}
	t.Textfile = b.path(rt.Textfile)
	// The collector reads *.prom only, and would read a temporary file
	// that ended in .prom: the file must end in .prom, and certkeeper's
	// temporary name does not.
	if filepath.Ext(t.Textfile) != ".prom" {
		b.fail(at("textfile"), "textfile %s must end in .prom: node_exporter's textfile collector reads no other file", t.Textfile)
	}
	if t.TextfileInterval > 0 && t.TextfileInterval < time.Second {
		b.fail(at("textfile_interval"), "textfile_interval must be at least 1s, not %s", t.TextfileInterval)
	}
}

// telemetryRefs resolves the certificate and trust bundle the endpoint
// names, once both kinds of block are built, and keeps the textfile from
// overwriting an output.
func (b *builder) telemetryRefs(cfg *Config, raws []rawTelemetry, writers map[string]string) {
	if len(raws) == 0 {
		return
	}
	rt := raws[0]
	t := cfg.Telemetry
	at := func(name string) hcl.Range { return valueRange(rt.Body, name, rt.DefRange) }
	if t.TLSCertificate != "" && t.Listen != "" {
		if _, ok := cfg.Certificate(t.TLSCertificate); !ok {
			b.fail(at("tls_certificate"), "tls_certificate: no certificate block named %q (the endpoint serves a certificate certkeeper manages)", t.TLSCertificate)
		}
	}
	if t.ClientTrustBundle != "" && t.Listen != "" {
		if !slices.ContainsFunc(cfg.TrustBundles, func(tb TrustBundle) bool { return tb.Name == t.ClientTrustBundle }) {
			b.fail(at("tls_client_trust_bundle"), "tls_client_trust_bundle: no trust_bundle block named %q", t.ClientTrustBundle)
		}
	}
	if t.Textfile != "" {
		if other, taken := writers[t.Textfile]; taken {
			if !strings.HasPrefix(other, "trust_bundle ") {
				other = fmt.Sprintf("certificate %q", other)
			}
			b.fail(at("textfile"), "textfile %s is also an output of %s", t.Textfile, other)
		}
	}
}

func (b *builder) watch(raws []rawWatch, tel Telemetry) Watch {
	w := Watch{Rescan: DefaultWatchRescan}
	if len(raws) == 0 {
		return w
	}
	for _, extra := range raws[1:] {
		b.fail(extra.DefRange, `only one "watch" block is allowed (the first is at line %d)`, raws[0].DefRange.Start.Line)
	}
	rw := raws[0]
	at := valueRange(rw.Body, "paths", rw.DefRange)
	if len(rw.Paths) == 0 {
		b.fail(at, "paths must list at least one file, directory or glob pattern")
	}
	for _, p := range rw.Paths {
		if strings.TrimSpace(p) == "" {
			b.fail(at, "paths: an empty path watches nothing")
			continue
		}
		if _, err := filepath.Match(p, ""); err != nil {
			b.fail(at, "paths: %q is not a valid glob pattern", p)
			continue
		}
		w.Paths = append(w.Paths, b.path(p))
	}
	if rw.Rescan != "" {
		w.Rescan = b.duration(rw.Body, "rescan", rw.Rescan, rw.DefRange)
	}
	if tel.Listen == "" && tel.Textfile == "" {
		// Watched files are only ever reported as metrics: with the
		// endpoint off and no textfile the block would silently do
		// nothing.
		b.fail(rw.DefRange, `watch needs the telemetry endpoint (which listen = "" turns off) or a textfile`)
	}
	return w
}
