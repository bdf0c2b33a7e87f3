package telemetry

import (
	"crypto/x509"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/telemetry/filewatch"
	"github.com/certkeeper/certkeeper/vault"
)

// Certificates is the agent's current state; *agent.Agent is the real one.
type Certificates interface {
	// Statuses lists every configured certificate, and only those.
	Statuses() []agent.Status
	CAChain(name string) []*x509.Certificate
}

// Token tells when the Vault token expires; *vault.Client is the real one.
type Token interface {
	TokenExpiration() time.Time
}

// Auth is the chain of Vault auth methods; *vault.Client is the real one.
type Auth interface {
	AuthStatus() []vault.AuthMethodStatus
}

// Files are watched files; *filewatch.Watcher is the real one.
type Files interface {
	Files() []filewatch.File
}

// Sources are what is read at every scrape. Any may be nil.
type Sources struct {
	Certificates Certificates
	Token        Token
	Auth         Auth
	Files        Files
}

// ExposeState registers a collector that reads src at every scrape. Expiry
// is never cached: a scrape shows what is held now, and a certificate that
// left the config has no series at all.
func (m *Metrics) ExposeState(src Sources) error {
	return m.reg.Register(&stateCollector{m: m, src: src})
}

type stateCollector struct {
	m   *Metrics
	src Sources
}

var stateDefs = []def{
	certNotAfter, certNotBefore, certRenewal, certInfo, certRenewals, certLastSuccess, certFailures, certRevoked,
	caNotAfter, vaultTokenExpiry, vaultLogins, vaultAuthInUse, fileNotAfter, fileReadErrors,
	certOutlives, certPinned,
}

var stateDescs = func() map[string]*prometheus.Desc {
	m := map[string]*prometheus.Desc{}
	for _, d := range stateDefs {
		m[d.name] = d.desc()
	}
	return m
}()

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range stateDefs {
		ch <- stateDescs[d.name]
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(d def, kind prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(stateDescs[d.name], kind, v, labels...)
	}
	gauge := func(d def, t time.Time, labels ...string) {
		if !t.IsZero() {
			emit(d, prometheus.GaugeValue, unixSeconds(t), labels...)
		}
	}
	if src := c.src.Certificates; src != nil {
		for _, st := range src.Statuses() {
			gauge(certNotAfter, st.NotAfter, st.Name)
			gauge(certNotBefore, st.NotBefore, st.Name)
			gauge(certRenewal, st.RenewAt, st.Name)
			gauge(certLastSuccess, st.LastSuccess, st.Name)
			if st.Serial != "" {
				emit(certInfo, prometheus.GaugeValue, 1, st.Name, st.CommonName, st.Serial, st.Issuer)
				emit(certOutlives, prometheus.GaugeValue, boolValue(st.OutlivesIssuer), st.Name)
				emit(certPinned, prometheus.GaugeValue, boolValue(st.CARotation != nil && st.CARotation.Pinned), st.Name)
			}
			emit(certFailures, prometheus.GaugeValue, float64(st.Failures), st.Name)
			revoked := 0.0
			if st.State == agent.StateRevoked {
				revoked = 1
			}
			emit(certRevoked, prometheus.GaugeValue, revoked, st.Name)
			// Both results exist from the start, at zero, so increase()
			// sees the first failure.
			rc := c.m.renewalCounts(st.Name)
			emit(certRenewals, prometheus.CounterValue, rc.success, st.Name, ResultSuccess)
			emit(certRenewals, prometheus.CounterValue, rc.failure, st.Name, ResultFailure)
			for subject, t := range bySubject(src.CAChain(st.Name)) {
				gauge(caNotAfter, t, st.Name, subject)
			}
		}
	}
	if src := c.src.Token; src != nil {
		gauge(vaultTokenExpiry, src.TokenExpiration())
	}
	if src := c.src.Auth; src != nil {
		seen := map[string]bool{}
		for i, st := range src.AuthStatus() {
			inUse := 0.0
			if st.InUse {
				inUse = 1
			}
			emit(vaultAuthInUse, prometheus.GaugeValue, inUse, st.Method, st.Mount, strconv.Itoa(i+1))
			if seen[st.Method] {
				continue
			}
			seen[st.Method] = true
			lc := c.m.loginCounts(st.Method)
			emit(vaultLogins, prometheus.CounterValue, lc.success, st.Method, ResultSuccess)
			emit(vaultLogins, prometheus.CounterValue, lc.failure, st.Method, ResultFailure)
		}
	}
	if src := c.src.Files; src != nil {
		for _, f := range src.Files() {
			emit(fileReadErrors, prometheus.CounterValue, float64(f.ReadErrors), f.Path)
			subjects := map[string]time.Time{}
			for _, cert := range f.Certificates {
				keepEarliest(subjects, cert.Subject, cert.NotAfter)
			}
			for subject, t := range subjects {
				gauge(fileNotAfter, t, f.Path, subject)
			}
		}
	}
}

// bySubject maps each CA's subject to its expiry. Two CAs with one subject
// (a cross-signed intermediate) would be one series twice, which a scrape
// refuses: the one that expires first is the one to alert on.
func bySubject(cas []*x509.Certificate) map[string]time.Time {
	out := map[string]time.Time{}
	for _, ca := range cas {
		keepEarliest(out, ca.Subject.String(), ca.NotAfter)
	}
	return out
}

func keepEarliest(m map[string]time.Time, key string, t time.Time) {
	if prev, ok := m[key]; !ok || t.Before(prev) {
		m[key] = t
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
