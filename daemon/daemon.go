// Package daemon is certkeeper's composition root. New builds every part
// from one config, explicitly and in one place: the Vault client, the
// agent (the certificate lifecycle), the services it reloads, the trust
// bundles, telemetry (metrics, the endpoint, the watch of unmanaged
// files), the control socket and live config reload. Run runs them as one
// task group, stopped in the reverse of the order they started; Once and
// Rotate are the one-shot commands.
//
// The package owns no behaviour of its own beyond wiring, the order of
// start and stop, and what READY=1 means (awaitReady).
package daemon

import (
	"context"
	"crypto/x509"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/telemetry"
	"github.com/certkeeper/certkeeper/telemetry/filewatch"
	"github.com/certkeeper/certkeeper/templates"
	"github.com/certkeeper/certkeeper/trust"
	"github.com/certkeeper/certkeeper/vault"
)

// LoadConfig reads and validates a config file, checking its templates
// with the templates package. Every command and every live reload loads
// through here.
func LoadConfig(path string) (*config.Config, error) {
	return config.Load(path, configChecks)
}

// ValidateConfig is LoadConfig for `certkeeper validate`, which also
// refuses credential and CA files of the vault block that do not exist.
func ValidateConfig(path string) (*config.Config, error) {
	o := configChecks
	o.Credentials = true
	return config.Load(path, o)
}

// ParseConfig is LoadConfig for a config in memory (one the convert
// command wrote); path is where it would be.
func ParseConfig(path string, src []byte) (*config.Config, error) {
	return config.Parse(path, src, configChecks)
}

var configChecks = config.Options{Templates: templates.Checker{}, WebConfig: telemetry.WebConfigChecker{}}

// Options tune a Daemon beyond its config.
type Options struct {
	Log     *slog.Logger
	Version string
	// Telemetry builds the metrics, the telemetry endpoint and the watch
	// of unmanaged files (for `run`; the one-shot commands have no use
	// for them).
	Telemetry bool
	// Pprof, when set, serves Go profiles on this loopback address (run).
	Pprof string
}

// Daemon is every part of a running certkeeper, built but not started.
type Daemon struct {
	cfg  *config.Config
	log  *slog.Logger
	opts Options

	agent    *agent.Agent
	services *services.Manager
	trust    *trust.Keeper

	// metrics and registry are nil unless Options.Telemetry; watch is nil
	// unless telemetry is on and the watch block names paths.
	metrics  *telemetry.Metrics
	registry *prometheus.Registry
	watch    *filewatch.Watcher
	// listener is the telemetry endpoint's bind state; nil unless it is
	// on.
	listener *telemetry.Listener

	// vaultMu guards vault, the client in force: a live reload that
	// changes the vault block replaces it.
	vaultMu sync.Mutex
	vault   *vault.Client
}

// New builds every part from cfg. It touches neither disk nor Vault.
func New(cfg *config.Config, o Options) (*Daemon, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	d := &Daemon{cfg: cfg, log: o.Log, opts: o}
	if o.Telemetry {
		d.registry = telemetry.NewRegistry()
		m, err := telemetry.New(d.registry)
		if err != nil {
			return nil, err
		}
		d.metrics = m
		for _, s := range cfg.Services {
			m.ServiceConfigured(s.Name)
		}
	}
	vc, err := d.newVault(cfg.Vault)
	if err != nil {
		return nil, err
	}
	d.vault = vc

	so := services.Options{Config: cfg, Log: d.log, Files: sinks.Sets{},
		// The keeper and the agent are built below. The keeper holds a
		// bundle whose files servers refused until the services' backoff
		// has passed; the agent revokes a certificate it replaced once the
		// change is delivered (revoke_superseded).
		BundleRefused: func(bundle string, retryAt time.Time, reason error) { d.trust.Refused(bundle, retryAt, reason) },
		Delivered:     func(change *sinks.Change) { d.agent.Delivered(change) },
	}
	to := trust.Options{Config: cfg, Source: vc, Log: d.log, Revocations: heldRevocations{d}}
	ao := agent.Options{Config: cfg, Issuer: vc, Log: d.log}
	// A nil *Metrics in an interface would not be nil: set observers only
	// when there are metrics.
	if d.metrics != nil {
		so.Observer = serviceMetrics{d.metrics}
		to.Observer = d.metrics
		ao.Observer = d.metrics
	}
	d.services = services.New(so)
	to.Notifier = d.services
	ao.Notifier = d.services
	d.trust = trust.New(to)
	// CA rotation: leaves move to a new issuer once this host's trust
	// bundles have held it for ca_soak.
	ao.Trust = d.trust
	d.agent = agent.New(ao)

	if d.metrics != nil && (cfg.Telemetry.Listen != "" || cfg.Telemetry.Textfile != "") {
		if cfg.Telemetry.Listen != "" {
			d.listener = telemetry.NewListener(cfg.Telemetry.Listen, d.metrics)
		}
		// Token and auth state are read from the client in force, which a
		// reload of the vault block replaces.
		src := telemetry.Sources{Certificates: d.agent, Token: currentVault{d}, Auth: currentVault{d}}
		if len(cfg.Watch.Paths) > 0 {
			d.watch = filewatch.New(filewatch.Options{Paths: cfg.Watch.Paths, Rescan: cfg.Watch.Rescan, Log: d.log.With("component", "watch")})
			src.Files = d.watch
		}
		if err := d.metrics.ExposeState(src); err != nil {
			vc.Close()
			return nil, err
		}
	}
	return d, nil
}

// newVault builds a Vault client for a vault block; used by New and when
// a reload changes the block.
func (d *Daemon) newVault(v config.Vault) (*vault.Client, error) {
	o := vault.Options{Log: d.log, Reissue: d.reissueCertAuth}
	if d.metrics != nil {
		o.Observer = d.metrics
		o.Logins = d.metrics
	}
	return vault.New(v, o)
}

// reissueCertAuth has the agent renew cert auth's certificate now: another
// auth method had to log in because Vault refused it while it is still
// valid, and the agent would otherwise keep it until its renewal point.
func (d *Daemon) reissueCertAuth(name string) {
	if d.agent == nil {
		return
	}
	if _, err := d.agent.Rotate([]string{name}, 0); err != nil {
		d.log.Warn("cannot renew the cert auth certificate", "cert", name, "error", err)
	}
}

// currentVault reads the token and auth state of the Vault client in
// force, for metrics.
type currentVault struct{ d *Daemon }

func (c currentVault) TokenExpiration() time.Time { return c.d.currentVault().TokenExpiration() }
func (c currentVault) AuthStatus() []vault.AuthMethodStatus {
	return c.d.currentVault().AuthStatus()
}

// prepareVault does the auth method's start-up work (unwrapping a wrapped
// secret_id) before anything else, since it cannot wait for the first
// renewal. A failure is logged, not fatal: the files on disk keep being
// served, and every login that needs the secret says why it cannot.
func (d *Daemon) prepareVault() {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Vault.Timeout)
	defer cancel()
	if err := d.currentVault().Prepare(ctx); err != nil {
		d.log.Error("vault auth cannot be prepared; logins will fail until this is fixed", "error", err, "alert", "vault_auth_broken")
	}
}

func (d *Daemon) currentVault() *vault.Client {
	d.vaultMu.Lock()
	defer d.vaultMu.Unlock()
	return d.vault
}

// closeVault stops the token renewal of the client in force.
func (d *Daemon) closeVault() {
	d.vaultMu.Lock()
	defer d.vaultMu.Unlock()
	d.vault.Close()
}

// configPath is the config's absolute path, which the control socket's
// status and the telemetry endpoint name so a reader knows whose answer
// it got.
func (d *Daemon) configPath() string {
	if abs, err := filepath.Abs(d.cfg.Path); err == nil {
		return abs
	}
	return d.cfg.Path
}

// heldRevocations lets the trust keeper watch the CRLs of the issuers of
// the certificates the agent holds, and hand it every CRL it checks.
type heldRevocations struct{ d *Daemon }

func (h heldRevocations) HeldIssuers() []trust.HeldIssuer {
	var out []trust.HeldIssuer
	for _, i := range h.d.agent.HeldIssuers() {
		out = append(out, trust.HeldIssuer{Mount: i.Mount, CA: i.CA, Every: i.Every})
	}
	return out
}

func (h heldRevocations) CheckCRL(ca *x509.Certificate, crl *x509.RevocationList) {
	h.d.agent.CheckCRL(ca, crl)
}

// serviceMetrics turns the services' detailed results into the metric's
// success/failure; a server that is not running was not reloaded, so it
// counts as neither.
type serviceMetrics struct{ m *telemetry.Metrics }

func (s serviceMetrics) ServiceReloaded(service, result string) {
	switch result {
	case services.ResultOK:
		s.m.ServiceReloaded(service, telemetry.ResultSuccess)
	case services.ResultNotRunning:
	default:
		s.m.ServiceReloaded(service, telemetry.ResultFailure)
	}
}

func (s serviceMetrics) ServedMatches(service string, ok bool) { s.m.ServedMatches(service, ok) }
func (s serviceMetrics) ReloadReason(service, reason string, urgent bool) {
	s.m.ReloadReason(service, reason, urgent)
}
func (s serviceMetrics) Backlog(service string, changes int) { s.m.Backlog(service, changes) }
