package config

import (
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Service is a server that reads certkeeper's files (nginx, Apache) and
// must be told when they change.
type Service struct {
	Name string
	// Check, when set, must exit 0 before any reload; a failure rolls the
	// batch's files back.
	Check []string
	// Reload is a command that makes the server load the new files.
	Reload []string
	// PIDFile names the server's pid file, read at the time of each reload.
	// With Signal it is how the server is reloaded; with Reload it only
	// says whether the server runs (a server that is not running reads the
	// new files when it starts, so there is nothing to reload).
	PIDFile string
	Signal  syscall.Signal
	// SignalName is the signal as the config spelled it, for messages.
	SignalName string
	// Timeout bounds each check and reload command.
	Timeout time.Duration
	// Settle is how long a service waits after the last change before it
	// is reloaded, so changes made together lead to one reload.
	Settle time.Duration
	Verify *Verify

	// MinReloadInterval is the reload budget: routine changes wait until
	// this long after the service's last reload; urgent ones do not.
	// Zero: no budget.
	MinReloadInterval time.Duration
}

// Verify is how certkeeper confirms, after a reload, that the server
// serves the certificate on disk.
type Verify struct {
	Address    string // host:port
	ServerName string // SNI; empty sends none
	// Timeout is how long to keep trying before the service counts as
	// "written but not served".
	Timeout time.Duration
	// ClientCertificate names a certificate block whose key pair
	// connects as a client after a trust bundle change, to prove that
	// valid clients still get in (the canary); empty: no canary.
	ClientCertificate string
}

// TrustBundle is the CA certificates and CRLs a server verifies client
// certificates against, kept fresh from one or more PKI mounts.
type TrustBundle struct {
	Name   string
	Mounts []string
	// CAFile receives every usable issuer of the mounts.
	CAFile string
	// CRLFile, when set, receives a PEM CRL for every CA in CAFile.
	CRLFile string
	Notify  []string
	// CRLRefresh is how often the issuers and CRLs are fetched again.
	CRLRefresh time.Duration
	UID, GID   int
	Mode       fs.FileMode
}

// Defaults for services and trust bundles.
const (
	DefaultServiceTimeout = 30 * time.Second
	DefaultSettle         = 2 * time.Second
	DefaultVerifyTimeout  = 10 * time.Second
	DefaultCRLRefresh     = time.Minute
	DefaultBundleMode     = fs.FileMode(0o644)
)

// Service returns the service with that name, if configured.
func (c *Config) Service(name string) (Service, bool) {
	for _, s := range c.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

type rawService struct {
	Name     string     `hcl:"name,label"`
	Check    []string   `hcl:"check,optional"`
	Reload   []string   `hcl:"reload,optional"`
	PIDFile  string     `hcl:"pid_file,optional"`
	Signal   string     `hcl:"signal,optional"`
	Timeout  string     `hcl:"timeout,optional"`
	Settle   string     `hcl:"settle,optional"`
	Verify   *rawVerify `hcl:"verify,block"`
	Body     hcl.Body   `hcl:",body"`
	DefRange hcl.Range  `hcl:",def_range"`

	// MinReloadInterval is the reload budget (services/budget.go).
	MinReloadInterval string `hcl:"min_reload_interval,optional"`
}

type rawVerify struct {
	Address           string    `hcl:"address"`
	ServerName        *string   `hcl:"server_name,optional"`
	Timeout           string    `hcl:"timeout,optional"`
	ClientCertificate string    `hcl:"client_certificate,optional"`
	Body              hcl.Body  `hcl:",body"`
	DefRange          hcl.Range `hcl:",def_range"`
}

type rawTrustBundle struct {
	Name       string    `hcl:"name,label"`
	Mount      string    `hcl:"mount,optional"`
	Mounts     []string  `hcl:"mounts,optional"`
	CAFile     string    `hcl:"ca_file"`
	CRLFile    string    `hcl:"crl_file,optional"`
	Notify     []string  `hcl:"notify,optional"`
	CRLRefresh string    `hcl:"crl_refresh,optional"`
	Owner      string    `hcl:"owner,optional"`
	Group      string    `hcl:"group,optional"`
	Mode       string    `hcl:"mode,optional"`
	Body       hcl.Body  `hcl:",body"`
	DefRange   hcl.Range `hcl:",def_range"`
}

// signals are the ones a server may reasonably be reloaded with.
var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "TERM": syscall.SIGTERM,
	"WINCH": syscall.SIGWINCH, "ALRM": syscall.SIGALRM,
}

// serving builds services and trust bundles and checks every notify list
// against them. writers maps each output path to what writes it, so a
// bundle cannot overwrite a certificate's file.
func (b *builder) serving(raw *rawFile, cfg *Config, writers map[string]string) {
	seen := map[string]hcl.Range{}
	for i := range raw.Services {
		rs := &raw.Services[i]
		if first, dup := seen[rs.Name]; dup {
			b.fail(rs.DefRange, "service %q is defined twice (first at line %d)", rs.Name, first.Start.Line)
			continue
		}
		seen[rs.Name] = rs.DefRange
		cfg.Services = append(cfg.Services, b.service(rs))
	}
	known := func() string {
		var names []string
		for _, s := range cfg.Services {
			names = append(names, s.Name)
		}
		if len(names) == 0 {
			return "no service block is defined"
		}
		return "defined: " + strings.Join(names, ", ")
	}
	notify := func(body hcl.Body, def hcl.Range, list []string) []string {
		var out []string
		for _, n := range list {
			if _, ok := cfg.Service(n); !ok {
				b.fail(valueRange(body, "notify", def), "notify: there is no service %q (%s)", n, known())
				continue
			}
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out
	}

	// Certificates were built before services existed; their notify lists
	// are resolved here. A duplicate block was already reported.
	built := make(map[string][]int, len(cfg.Certificates)) // name -> indexes in cfg.Certificates
	for j := range cfg.Certificates {
		built[cfg.Certificates[j].Name] = append(built[cfg.Certificates[j].Name], j)
	}
	done := map[string]bool{}
	for i := range raw.Certificates {
		rc := &raw.Certificates[i]
		if done[rc.Name] {
			continue
		}
		done[rc.Name] = true
		for _, j := range built[rc.Name] {
			cfg.Certificates[j].Notify = notify(rc.Body, rc.DefRange, rc.Notify)
		}
	}

	seenTB := map[string]hcl.Range{}
	for i := range raw.TrustBundles {
		rt := &raw.TrustBundles[i]
		if first, dup := seenTB[rt.Name]; dup {
			b.fail(rt.DefRange, "trust_bundle %q is defined twice (first at line %d)", rt.Name, first.Start.Line)
			continue
		}
		seenTB[rt.Name] = rt.DefRange
		tb := b.trustBundle(rt)
		tb.Notify = notify(rt.Body, rt.DefRange, rt.Notify)
		for i, p := range []string{tb.CAFile, tb.CRLFile} {
			if p == "" || (i == 1 && p == tb.CAFile) {
				continue
			}
			if other, taken := writers[p]; taken {
				if !strings.HasPrefix(other, "trust_bundle ") {
					other = fmt.Sprintf("certificate %q", other)
				}
				b.fail(rt.DefRange, "trust_bundle %q writes %s, which %s also writes", rt.Name, p, other)
				continue
			}
			writers[p] = fmt.Sprintf("trust_bundle %q", rt.Name)
		}
		cfg.TrustBundles = append(cfg.TrustBundles, tb)
	}

	// verify compares the served leaf with the certificates that notify
	// the service; without one there is nothing to compare with.
	for i, s := range cfg.Services {
		if s.Verify == nil {
			continue
		}
		rv := raw.Services[i].Verify
		if len(cfg.CertificatesNotifying(s.Name)) == 0 {
			b.fail(rv.DefRange, "service %q has a verify block, but no certificate notifies it, so there is no certificate it should serve", s.Name)
		}
		if name := s.Verify.ClientCertificate; name != "" {
			at := valueRange(rv.Body, "client_certificate", rv.DefRange)
			if _, ok := cfg.Certificate(name); !ok {
				b.fail(at, "client_certificate: there is no certificate %q", name)
			} else if !slices.ContainsFunc(cfg.TrustBundles, func(tb TrustBundle) bool { return slices.Contains(tb.Notify, s.Name) }) {
				b.fail(at, "client_certificate proves that clients still get in after a trust bundle changes, but no trust_bundle notifies service %q", s.Name)
			}
		}
	}
}

// CertificatesNotifying returns the certificates whose notify list names
// the service.
func (c *Config) CertificatesNotifying(service string) []Certificate {
	var out []Certificate
	for _, cert := range c.Certificates {
		if slices.Contains(cert.Notify, service) {
			out = append(out, cert)
		}
	}
	return out
}

func (b *builder) service(rs *rawService) Service {
	at := func(name string) hcl.Range { return valueRange(rs.Body, name, rs.DefRange) }
	s := Service{
		Name:    rs.Name,
		Check:   rs.Check,
		Reload:  rs.Reload,
		PIDFile: b.path(rs.PIDFile),
		Timeout: DefaultServiceTimeout,
		Settle:  DefaultSettle,
	}
	if rs.Name == "" || strings.ContainsAny(rs.Name, "/\\\x00") {
		b.fail(rs.DefRange, "service name %q must be non-empty and must not contain slashes", rs.Name)
	}
	for name, argv := range map[string][]string{"check": rs.Check, "reload": rs.Reload} {
		if argv != nil && (len(argv) == 0 || strings.TrimSpace(argv[0]) == "") {
			b.fail(at(name), "%s must be a command and its arguments, such as [\"nginx\", \"-t\"]", name)
		}
	}
	switch {
	case rs.Reload != nil && rs.Signal != "":
		b.fail(at("signal"), "set reload (a command) or signal (sent to the pid in pid_file), not both")
	case rs.Reload == nil && rs.PIDFile == "":
		b.fail(rs.DefRange, "service %q needs reload (a command) or pid_file (whose process is sent signal, HUP by default)", rs.Name)
	case rs.Signal != "" && rs.PIDFile == "":
		b.fail(at("signal"), "signal needs pid_file, to know which process to send it to")
	}
	if rs.Reload == nil {
		s.SignalName = "HUP"
		if rs.Signal != "" {
			s.SignalName = strings.TrimPrefix(strings.ToUpper(rs.Signal), "SIG")
		}
		sig, ok := signals[s.SignalName]
		if !ok {
			b.fail(at("signal"), "signal %q is not one certkeeper sends (use HUP, USR1, USR2, WINCH, QUIT, INT, TERM or ALRM)", rs.Signal)
		}
		s.Signal = sig
	}
	if rs.Timeout != "" {
		s.Timeout = b.duration(rs.Body, "timeout", rs.Timeout, rs.DefRange)
	}
	if rs.Settle != "" {
		s.Settle = b.duration(rs.Body, "settle", rs.Settle, rs.DefRange)
	}
	if rs.MinReloadInterval != "" {
		s.MinReloadInterval = b.duration(rs.Body, "min_reload_interval", rs.MinReloadInterval, rs.DefRange)
	}
	if rv := rs.Verify; rv != nil {
		v := &Verify{Address: rv.Address, Timeout: DefaultVerifyTimeout, ClientCertificate: rv.ClientCertificate}
		host, port, err := net.SplitHostPort(rv.Address)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 || host == "" {
			b.fail(valueRange(rv.Body, "address", rv.DefRange), "verify address %q must be host:port, such as \"127.0.0.1:443\"", rv.Address)
		}
		switch {
		case rv.ServerName != nil:
			v.ServerName = *rv.ServerName
		case net.ParseIP(host) == nil:
			v.ServerName = host
		}
		if rv.Timeout != "" {
			v.Timeout = b.duration(rv.Body, "timeout", rv.Timeout, rv.DefRange)
		}
		s.Verify = v
	}
	return s
}

func (b *builder) trustBundle(rt *rawTrustBundle) TrustBundle {
	at := func(name string) hcl.Range { return valueRange(rt.Body, name, rt.DefRange) }
	tb := TrustBundle{
		Name:       rt.Name,
		CAFile:     b.path(rt.CAFile),
		CRLFile:    b.path(rt.CRLFile),
		CRLRefresh: DefaultCRLRefresh,
		UID:        -1,
		GID:        -1,
		Mode:       DefaultBundleMode,
	}
	if rt.Name == "" || strings.ContainsAny(rt.Name, "/\\\x00") {
		b.fail(rt.DefRange, "trust_bundle name %q must be non-empty and must not contain slashes", rt.Name)
	}
	if strings.HasPrefix(rt.Name, ".") {
		b.fail(rt.DefRange, "trust_bundle name %q must not begin with a dot: in state_dir, names beginning with a dot are certkeeper's temp files", rt.Name)
	}
	switch {
	case rt.Mount != "" && rt.Mounts != nil:
		b.fail(at("mounts"), "set mount or mounts, not both")
	case rt.Mount != "":
		tb.Mounts = []string{strings.Trim(rt.Mount, "/")}
	case len(rt.Mounts) > 0:
		for _, m := range rt.Mounts {
			m = strings.Trim(m, "/")
			if m == "" {
				b.fail(at("mounts"), "mounts must not hold an empty name")
				continue
			}
			if slices.Contains(tb.Mounts, m) {
				b.fail(at("mounts"), "mounts names %q twice", m)
				continue
			}
			tb.Mounts = append(tb.Mounts, m)
		}
	default:
		b.fail(rt.DefRange, "trust_bundle %q needs mount (a PKI mount) or mounts (a list, such as [\"pki_int\", \"pki\"])", rt.Name)
	}
	if tb.CAFile == "" {
		b.fail(at("ca_file"), "ca_file must not be empty")
	}
	if tb.CRLFile != "" && tb.CRLFile == tb.CAFile {
		b.fail(at("crl_file"), "crl_file and ca_file must be different files")
	}
	if rt.CRLRefresh != "" {
		tb.CRLRefresh = b.duration(rt.Body, "crl_refresh", rt.CRLRefresh, rt.DefRange)
	}
	if rt.Owner != "" {
		tb.UID = b.lookupUser(at("owner"), rt.Owner)
	}
	if rt.Group != "" {
		tb.GID = b.lookupGroup(at("group"), rt.Group)
	}
	if rt.Mode != "" {
		tb.Mode = b.mode(at("mode"), "mode", rt.Mode)
	}
	return tb
}
