// Package telemetry is what certkeeper tells the outside world about
// itself: Prometheus metrics, health and readiness, and a bounded JSON
// status for remote readers (`certkeeper status` asks the daemon over the
// control socket instead). It only reads the agent's state and records
// events it is told about; it never changes a certificate or a file.
//
// Metric names are a contract with operators' alerts and dashboards
// (examples/prometheus, examples/grafana): they are all defined in this
// file, and per-certificate series are labelled by the configured name,
// never by serial, so a renewal does not start a new series.
package telemetry

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/certkeeper/certkeeper/agent"
	bundles "github.com/certkeeper/certkeeper/trust" // "trust" is tls.go's type
	"github.com/certkeeper/certkeeper/vault"
)

// def is one metric: its name, what it means, and its labels.
type def struct {
	name   string
	help   string
	kind   string // gauge, counter or histogram
	labels []string
}

func (d def) desc() *prometheus.Desc { return prometheus.NewDesc(d.name, d.help, d.labels, nil) }

// The metrics certkeeper exports. Timestamps are Unix seconds, so an alert
// is `certkeeper_certificate_not_after_timestamp_seconds - time() < ...`.
var (
	certNotAfter = def{"certkeeper_certificate_not_after_timestamp_seconds",
		"When the certificate certkeeper holds for this configured name expires (its NotAfter).", "gauge", []string{"name"}}
	certNotBefore = def{"certkeeper_certificate_not_before_timestamp_seconds",
		"When the certificate held for this configured name became valid (its NotBefore).", "gauge", []string{"name"}}
	certRenewal = def{"certkeeper_certificate_renewal_timestamp_seconds",
		"When certkeeper plans to renew the certificate held for this configured name.", "gauge", []string{"name"}}
	certInfo = def{"certkeeper_certificate_info",
		"Always 1; the labels describe the certificate held (the serial appears here and nowhere else).", "gauge",
		[]string{"name", "common_name", "serial", "issuer"}}
	certRenewals = def{"certkeeper_certificate_renewals_total",
		`Attempts to get a new certificate for this configured name since certkeeper started, by result ("success" or "failure").`, "counter",
		[]string{"name", "result"}}
	certLastSuccess = def{"certkeeper_certificate_last_success_timestamp_seconds",
		"When a pass for this configured name last ended with a valid certificate in place (kept, restored or newly issued).", "gauge", []string{"name"}}
	certFailures = def{"certkeeper_certificate_consecutive_failures",
		"Failed passes for this configured name since the last one that succeeded.", "gauge", []string{"name"}}
	certRevoked = def{"certkeeper_certificate_revoked",
		"1 while the certificate on disk for this configured name is revoked in Vault (its issuer's CRL lists it) and not yet replaced; 0 otherwise.", "gauge", []string{"name"}}
	caNotAfter = def{"certkeeper_ca_not_after_timestamp_seconds",
		"When each CA in the chain of the certificate held for this configured name expires.", "gauge", []string{"name", "subject"}}
	crlNextUpdate = def{"certkeeper_trust_bundle_crl_next_update_timestamp_seconds",
		"The NextUpdate of each CRL in a trust bundle: past it, servers checking CRLs may reject every client.", "gauge",
		[]string{"name", "issuer"}}
	serviceReloads = def{"certkeeper_service_reloads_total",
		`Reloads of a service after its certificates changed, by result ("success", or "failure").`, "counter",
		[]string{"service", "result"}}
	servedMatches = def{"certkeeper_service_served_matches",
		"1 when the certificate the service serves is the one certkeeper wrote, 0 when it differs.", "gauge", []string{"service"}}
	vaultRequests = def{"certkeeper_vault_requests_total",
		`HTTP requests to Vault, by operation and status code ("unreachable" when no answer came).`, "counter",
		[]string{"operation", "code"}}
	vaultDuration = def{"certkeeper_vault_request_duration_seconds",
		"How long HTTP requests to Vault took, by operation.", "histogram", []string{"operation"}}
	vaultTokenExpiry = def{"certkeeper_vault_token_expiry_timestamp_seconds",
		"When the Vault token certkeeper uses expires, as last renewed; absent before the first login.", "gauge", nil}
	vaultLogins = def{"certkeeper_vault_logins_total",
		`Logins to Vault since certkeeper started, by auth method (the auth block's method: cert, aws, jwt, approle, token) and result ("success" or "failure").`, "counter",
		[]string{"method", "result"}}
	vaultAuthInUse = def{"certkeeper_vault_auth_method_in_use",
		`1 for the auth block whose token certkeeper holds, 0 for the others; position is the block's place in the chain, "1" being the preferred one.`, "gauge",
		[]string{"method", "mount", "position"}}
	fileNotAfter = def{"certkeeper_file_certificate_not_after_timestamp_seconds",
		"When each certificate in a watched file (one certkeeper does not manage) expires.", "gauge", []string{"path", "subject"}}
	fileReadErrors = def{"certkeeper_file_read_errors_total",
		"Times a watched file changed into something that could not be read as PEM certificates.", "counter", []string{"path"}}

	// Change control (reload budget, CA rotation).
	serviceReloadReasons = def{"certkeeper_service_reloads_by_reason_total",
		`Reloads that ran (the server was signalled or its reload command succeeded), by the reason of the change that led to them (renewal, rotation, revocation, expired, config, issued, restore, ca_rotation, ca_added, ca_removed, trust_refresh; "none" for a reload no change led to) and whether it was urgent ("true": it went past the reload budget).`, "counter",
		[]string{"service", "reason", "urgent"}}
	serviceBacklog = def{"certkeeper_service_reload_backlog",
		"Changes waiting for the service's next reload: held by its reload budget (min_reload_interval), settling, or rolled back and waiting for a retry.", "gauge",
		[]string{"service"}}
	bundleCA = def{"certkeeper_trust_bundle_ca",
		"Always 1: the trust bundle of this configured name on this host holds the CA with this subject and serial.", "gauge",
		[]string{"name", "subject", "serial"}}
	certOutlives = def{"certkeeper_certificate_outlives_issuer",
		"1 when the certificate held for this configured name expires after the CA that signed it (clients cannot verify it past the CA's expiry), else 0.", "gauge", []string{"name"}}
	certPinned = def{"certkeeper_certificate_issuer_pinned",
		"1 while renewals of this configured name stay with the issuer it came from because its mount's new default issuer has not been in this host's trust bundles for ca_soak, else 0.", "gauge", []string{"name"}}
	bundleCASince = def{"certkeeper_trust_bundle_ca_trusted_since_timestamp_seconds",
		"When the CA with this serial entered the trust bundle of this configured name on this host; leaves move to a new default issuer ca_soak after this.", "gauge",
		[]string{"name", "serial"}}
	telemetryListenFailures = def{"certkeeper_telemetry_listen_failures_total",
		"Failed attempts to bind the telemetry endpoint's address since certkeeper started: any increase means scrapes and probes may have reached another process.", "counter", nil}
)

// catalog is every metric above, for documentation and tests.
var catalog = []def{
	certNotAfter, certNotBefore, certRenewal, certInfo, certRenewals, certLastSuccess, certFailures, certRevoked,
	caNotAfter, crlNextUpdate, serviceReloads, servedMatches,
	vaultRequests, vaultDuration, vaultTokenExpiry, vaultLogins, vaultAuthInUse, fileNotAfter, fileReadErrors,
	serviceReloadReasons, serviceBacklog, bundleCA, bundleCASince, certOutlives, certPinned,
	telemetryListenFailures,
}

// MetricNames lists every metric certkeeper defines (not the Go and process
// ones), for checks that alerts, dashboards and docs use real names.
func MetricNames() []string {
	out := make([]string, len(catalog))
	for i, d := range catalog {
		out[i] = d.name
	}
	return out
}

// Renewal results.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// vaultBuckets reach past the default 30s request timeout.
var vaultBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewRegistry is a registry of certkeeper's own, with the Go runtime and
// process collectors, so nothing leaks in from the global default.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Metrics records the events certkeeper is told about: Vault requests,
// renewal passes, service reloads, CRLs fetched. It is safe for concurrent
// use. State that can be read at scrape time (expiry of what is held) is
// exported by ExposeState instead, so it is never stale.
type Metrics struct {
	reg prometheus.Registerer

	vaultRequests *prometheus.CounterVec
	vaultDuration *prometheus.HistogramVec
	reloads       *prometheus.CounterVec
	served        *prometheus.GaugeVec
	crlNext       *prometheus.GaugeVec
	// listenFailures is the endpoint's own (Listener). A gauge of whether
	// it listens would be 1 in every scrape of it.
	listenFailures prometheus.Counter

	reasons  *prometheus.CounterVec
	backlog  *prometheus.GaugeVec
	cas      *prometheus.GaugeVec
	casSince *prometheus.GaugeVec

	mu sync.Mutex
	// renewals are kept here rather than in a CounterVec so that a
	// certificate dropped from the config drops out of the scrape with
	// its other series (see stateCollector). Values, not pointers: one
	// entry per certificate for the life of the process.
	renewals map[string]renewalCount
	// logins by auth method, exported by the state collector for the
	// methods configured, so both results of each exist from the start.
	logins map[string]*renewalCount

	// onChange, when set, hears that a pass, reload or CRL changed what
	// the metrics say (the textfile writes then).
	onChange atomic.Pointer[func()]
}

// OnChange registers f to be called, without blocking, after every event
// that changes a certificate's, service's or trust bundle's metrics, a
// login, and a failed bind of the telemetry endpoint.
func (m *Metrics) OnChange(f func()) { m.onChange.Store(&f) }

func (m *Metrics) changed() {
	if f := m.onChange.Load(); f != nil {
		(*f)()
	}
}

type renewalCount struct{ success, failure float64 }

var (
	_ agent.Observer      = (*Metrics)(nil)
	_ vault.Observer      = (*Metrics)(nil)
	_ vault.LoginObserver = (*Metrics)(nil)
	_ bundles.Observer    = (*Metrics)(nil)
)

// New registers certkeeper's event metrics on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reg: reg,
		vaultRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: vaultRequests.name, Help: vaultRequests.help}, vaultRequests.labels),
		vaultDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: vaultDuration.name, Help: vaultDuration.help, Buckets: vaultBuckets}, vaultDuration.labels),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: serviceReloads.name, Help: serviceReloads.help}, serviceReloads.labels),
		served: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: servedMatches.name, Help: servedMatches.help}, servedMatches.labels),
		crlNext: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: crlNextUpdate.name, Help: crlNextUpdate.help}, crlNextUpdate.labels),
		listenFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: telemetryListenFailures.name, Help: telemetryListenFailures.help}),
		renewals: map[string]renewalCount{},
		logins:   map[string]*renewalCount{},

		reasons:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: serviceReloadReasons.name, Help: serviceReloadReasons.help}, serviceReloadReasons.labels),
		backlog:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: serviceBacklog.name, Help: serviceBacklog.help}, serviceBacklog.labels),
		cas:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: bundleCA.name, Help: bundleCA.help}, bundleCA.labels),
		casSince: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: bundleCASince.name, Help: bundleCASince.help}, bundleCASince.labels),
	}
	for _, c := range []prometheus.Collector{m.vaultRequests, m.vaultDuration, m.reloads, m.served, m.crlNext, m.listenFailures, m.reasons, m.backlog, m.cas, m.casSince} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveVaultRequest implements vault.Observer. code 0 means Vault did not
// answer (refused, timed out, TLS failure).
func (m *Metrics) ObserveVaultRequest(operation string, code int, d time.Duration) {
	c := "unreachable"
	if code != 0 {
		c = strconv.Itoa(code)
	}
	m.vaultRequests.WithLabelValues(operation, c).Inc()
	m.vaultDuration.WithLabelValues(operation).Observe(d.Seconds())
}

// ObserveLogin implements vault.LoginObserver: one login attempt with an
// auth method.
func (m *Metrics) ObserveLogin(method string, ok bool) {
	defer m.changed()
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.logins[method]
	if c == nil {
		c = &renewalCount{}
		m.logins[method] = c
	}
	if ok {
		c.success++
	} else {
		c.failure++
	}
}

func (m *Metrics) loginCounts(method string) renewalCount {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.logins[method]; c != nil {
		return *c
	}
	return renewalCount{}
}

// ObservePass implements agent.Observer: a pass that got a new certificate
// is a successful renewal, a pass that failed is a failed one, and a pass
// that found the held certificate good is neither.
func (m *Metrics) ObservePass(st agent.Status, res *agent.Result, err error) {
	defer m.changed()
	m.mu.Lock()
	defer m.mu.Unlock()
	rc := m.renewals[st.Name]
	switch {
	case err != nil:
		rc.failure++
	case res != nil && res.Action == agent.Issued:
		rc.success++
	default:
		return // a pass that kept the certificate counts nothing
	}
	m.renewals[st.Name] = rc
}

func (m *Metrics) renewalCounts(name string) renewalCount {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.renewals[name]
}

// The methods below are for service reloads and trust bundles, which the
// agent calls as it reloads servers and fetches CRLs.

// ServiceConfigured makes a service's reload counters exist at zero, so
// that increase() in an alert sees its very first failed reload. Call it
// for each configured service at start.
func (m *Metrics) ServiceConfigured(service string) {
	m.reloads.WithLabelValues(service, ResultSuccess)
	m.reloads.WithLabelValues(service, ResultFailure)
	m.backlog.WithLabelValues(service)
}

// ServiceReloaded counts one reload of service (its configured name);
// result is ResultSuccess, or ResultFailure when the config check, the
// reload or its verification failed (the log line says which and why).
func (m *Metrics) ServiceReloaded(service, result string) {
	m.reloads.WithLabelValues(service, result).Inc()
	m.changed()
}

// ServedMatches records whether the certificate service is seen serving
// (by verify) is the one certkeeper wrote.
func (m *Metrics) ServedMatches(service string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.served.WithLabelValues(service).Set(v)
	m.changed()
}

// ForgetService drops a service's series when it leaves the config.
func (m *Metrics) ForgetService(service string) {
	m.reloads.DeletePartialMatch(prometheus.Labels{"service": service})
	m.served.DeleteLabelValues(service)
	m.reasons.DeletePartialMatch(prometheus.Labels{"service": service})
	m.backlog.DeleteLabelValues(service)
	m.changed()
}

// ReloadReason counts one reload that ran, by the reason of the change
// that led to it and whether that was urgent.
func (m *Metrics) ReloadReason(service, reason string, urgent bool) {
	m.reasons.WithLabelValues(service, reason, strconv.FormatBool(urgent)).Inc()
	m.changed()
}

// Backlog records how many changes wait for the service's next reload.
func (m *Metrics) Backlog(service string, changes int) {
	m.backlog.WithLabelValues(service).Set(float64(changes))
	m.changed()
}

// BundleCAs records the CAs a trust bundle holds now, replacing what it
// held before (a CA that left it leaves the scrape).
func (m *Metrics) BundleCAs(bundle string, cas []bundles.CAInfo) {
	m.cas.DeletePartialMatch(prometheus.Labels{"name": bundle})
	m.casSince.DeletePartialMatch(prometheus.Labels{"name": bundle})
	for _, ca := range cas {
		m.cas.WithLabelValues(bundle, ca.Subject, ca.Serial).Set(1)
		if !ca.TrustedSince.IsZero() {
			m.casSince.WithLabelValues(bundle, ca.Serial).Set(unixSeconds(ca.TrustedSince))
		}
	}
	m.changed()
}

// CRLNextUpdate records the NextUpdate of the CRL from issuer (its subject)
// in the trust bundle of that configured name.
func (m *Metrics) CRLNextUpdate(bundle, issuer string, t time.Time) {
	m.crlNext.WithLabelValues(bundle, issuer).Set(unixSeconds(t))
	m.changed()
}

// ForgetTrustBundle drops a bundle's CRL series, when the bundle leaves the
// config or a CA (and its CRL) leaves the bundle and is re-recorded.
func (m *Metrics) ForgetTrustBundle(bundle string) {
	m.crlNext.DeletePartialMatch(prometheus.Labels{"name": bundle})
	m.cas.DeletePartialMatch(prometheus.Labels{"name": bundle})
	m.casSince.DeletePartialMatch(prometheus.Labels{"name": bundle})
	m.changed()
}

func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}
