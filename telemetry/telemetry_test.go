package telemetry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/telemetry/filewatch"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/vault"
)

// fakeAgent is the agent's read side, as a test sets it.
type fakeAgent struct {
	mu       sync.Mutex
	statuses []agent.Status
	chains   map[string][]*x509.Certificate
}

var _ Certificates = (*fakeAgent)(nil)

func (f *fakeAgent) Statuses() []agent.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.statuses)
}

func (f *fakeAgent) CAChain(name string) []*x509.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.chains[name]
}

type fakeToken struct{ exp time.Time }

func (f fakeToken) TokenExpiration() time.Time { return f.exp }

type fakeAuth struct {
	mu sync.Mutex
	st []vault.AuthMethodStatus
}

func (f *fakeAuth) AuthStatus() []vault.AuthMethodStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.st)
}

type fakeFiles []filewatch.File

func (f fakeFiles) Files() []filewatch.File { return f }

func caCert(t *testing.T, cn string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func newTestMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// Expiry series are read from the agent at scrape time, with the values of
// the certificate held, labelled by configured name; a certificate that
// leaves the config leaves the scrape with all its series.
func TestStateFollowsTheAgent(t *testing.T) {
	m, reg := newTestMetrics(t)
	now := time.Unix(1_800_000_000, 0)
	inter := caCert(t, "Example Intermediate", now.Add(90*24*time.Hour))
	root := caCert(t, "Example Root", now.Add(3650*24*time.Hour))
	web := agent.Status{Name: "web", CommonName: "web.example.internal", Serial: "0a:0b", Issuer: "Example Intermediate",
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(71 * time.Hour), RenewAt: now.Add(40 * time.Hour),
		State: agent.StateValid, LastResult: "issued", LastSuccess: now.Add(-time.Hour)}
	api := agent.Status{Name: "api", CommonName: "api.example.internal", State: agent.StateMissing, LastResult: "failed", Failures: 3}
	db := agent.Status{Name: "db", CommonName: "db.example.internal", Serial: "0c", NotAfter: now.Add(time.Hour), RevokedAt: now.Add(-time.Minute), State: agent.StateRevoked}
	fa := &fakeAgent{statuses: []agent.Status{api, web, db}, chains: map[string][]*x509.Certificate{"web": {inter, root}}}
	tokenExp := now.Add(20 * time.Minute)
	files := fakeFiles{
		{Path: "/etc/ssl/a.pem", Certificates: []filewatch.Certificate{{Subject: "CN=a", NotAfter: now.Add(time.Hour)}, {Subject: "CN=b", NotAfter: now.Add(2 * time.Hour)}}},
		{Path: "/etc/ssl/bad.pem", Err: "no PEM data", ReadErrors: 2},
	}
	if err := m.ExposeState(Sources{Certificates: fa, Token: fakeToken{tokenExp}, Files: files}); err != nil {
		t.Fatal(err)
	}
	m.ObservePass(web, &agent.Result{Name: "web", Action: agent.Issued}, nil)
	m.ObservePass(web, &agent.Result{Name: "web", Action: agent.Kept}, nil)
	m.ObservePass(api, nil, errors.New("vault answered 503"))

	s := cktest.Gather(t, reg)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"certkeeper_certificate_not_after_timestamp_seconds", []string{"name", "web"}, float64(web.NotAfter.Unix())},
		{"certkeeper_certificate_not_before_timestamp_seconds", []string{"name", "web"}, float64(web.NotBefore.Unix())},
		{"certkeeper_certificate_renewal_timestamp_seconds", []string{"name", "web"}, float64(web.RenewAt.Unix())},
		{"certkeeper_certificate_last_success_timestamp_seconds", []string{"name", "web"}, float64(web.LastSuccess.Unix())},
		{"certkeeper_certificate_info", []string{"name", "web", "common_name", "web.example.internal", "serial", "0a:0b", "issuer", "Example Intermediate"}, 1},
		{"certkeeper_certificate_consecutive_failures", []string{"name", "web"}, 0},
		{"certkeeper_certificate_consecutive_failures", []string{"name", "api"}, 3},
		{"certkeeper_certificate_revoked", []string{"name", "db"}, 1},
		{"certkeeper_certificate_revoked", []string{"name", "web"}, 0},
		{"certkeeper_certificate_revoked", []string{"name", "api"}, 0},
		{"certkeeper_certificate_renewals_total", []string{"name", "web", "result", "success"}, 1},
		{"certkeeper_certificate_renewals_total", []string{"name", "web", "result", "failure"}, 0},
		{"certkeeper_certificate_renewals_total", []string{"name", "api", "result", "failure"}, 1},
		{"certkeeper_certificate_renewals_total", []string{"name", "api", "result", "success"}, 0},
		{"certkeeper_ca_not_after_timestamp_seconds", []string{"name", "web", "subject", "CN=Example Intermediate"}, float64(inter.NotAfter.Unix())},
		{"certkeeper_ca_not_after_timestamp_seconds", []string{"name", "web", "subject", "CN=Example Root"}, float64(root.NotAfter.Unix())},
		{"certkeeper_vault_token_expiry_timestamp_seconds", nil, float64(tokenExp.Unix())},
		{"certkeeper_file_certificate_not_after_timestamp_seconds", []string{"path", "/etc/ssl/a.pem", "subject", "CN=a"}, float64(now.Add(time.Hour).Unix())},
		{"certkeeper_file_certificate_not_after_timestamp_seconds", []string{"path", "/etc/ssl/a.pem", "subject", "CN=b"}, float64(now.Add(2 * time.Hour).Unix())},
		{"certkeeper_file_read_errors_total", []string{"path", "/etc/ssl/a.pem"}, 0},
		{"certkeeper_file_read_errors_total", []string{"path", "/etc/ssl/bad.pem"}, 2},
	}
	for _, c := range checks {
		if got := cktest.MustFind(t, s, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// A certificate with nothing held has no expiry series, rather than a
	// zero that reads as "expired in 1970".
	if _, ok := cktest.Find(s, "certkeeper_certificate_not_after_timestamp_seconds", "name", "api"); ok {
		t.Error("api has no certificate but exports a not_after")
	}
	// The serial is only in certkeeper_certificate_info.
	for _, x := range s {
		if _, ok := x.Labels["serial"]; ok && x.Name != "certkeeper_certificate_info" {
			t.Errorf("%s carries the serial", x.Name)
		}
	}

	// Renewed: new serial and expiry, same series.
	fa.mu.Lock()
	fa.statuses[1].Serial, fa.statuses[1].NotAfter = "0c:0d", now.Add(143*time.Hour)
	fa.mu.Unlock()
	s = cktest.Gather(t, reg)
	if got := cktest.MustFind(t, s, "certkeeper_certificate_not_after_timestamp_seconds", "name", "web"); got != float64(now.Add(143*time.Hour).Unix()) {
		t.Errorf("after renewal not_after = %v", got)
	}
	if _, ok := cktest.Find(s, "certkeeper_certificate_info", "name", "web", "common_name", "web.example.internal", "serial", "0a:0b", "issuer", "Example Intermediate"); ok {
		t.Error("the old serial's info series is still exported")
	}

	// web leaves the config.
	fa.mu.Lock()
	fa.statuses = fa.statuses[:1]
	fa.mu.Unlock()
	for _, x := range cktest.Gather(t, reg) {
		if x.Labels["name"] == "web" {
			t.Errorf("web left the config but %s%v is still exported", x.Name, x.Labels)
		}
	}
}

// Before the first login there is no token expiry series at all.
func TestNoTokenNoSeries(t *testing.T) {
	m, reg := newTestMetrics(t)
	if err := m.ExposeState(Sources{Token: fakeToken{}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := cktest.Find(cktest.Gather(t, reg), "certkeeper_vault_token_expiry_timestamp_seconds"); ok {
		t.Error("a zero token expiry was exported")
	}
}

// Two CAs with one subject (cross-signed) would make a scrape fail; the
// earlier expiry is kept.
func TestCrossSignedCAsDoNotBreakTheScrape(t *testing.T) {
	m, reg := newTestMetrics(t)
	now := time.Now().Truncate(time.Second)
	older := caCert(t, "Cross", now.Add(10*24*time.Hour))
	newer := caCert(t, "Cross", now.Add(900*24*time.Hour))
	fa := &fakeAgent{statuses: []agent.Status{{Name: "web"}}, chains: map[string][]*x509.Certificate{"web": {newer, older}}}
	if err := m.ExposeState(Sources{Certificates: fa}); err != nil {
		t.Fatal(err)
	}
	got := cktest.MustFind(t, cktest.Gather(t, reg), "certkeeper_ca_not_after_timestamp_seconds", "name", "web", "subject", "CN=Cross")
	if got != float64(older.NotAfter.Unix()) {
		t.Errorf("cross-signed CA expiry %v, want the earlier one", got)
	}
}

func TestVaultRequests(t *testing.T) {
	m, reg := newTestMetrics(t)
	m.ObserveVaultRequest("login", 200, 20*time.Millisecond)
	m.ObserveVaultRequest("sign", 200, 40*time.Millisecond)
	m.ObserveVaultRequest("sign", 200, 60*time.Millisecond)
	m.ObserveVaultRequest("sign", 503, time.Second)
	m.ObserveVaultRequest("sign", 0, 30*time.Second)
	s := cktest.Gather(t, reg)
	for _, c := range []struct {
		op, code string
		want     float64
	}{{"login", "200", 1}, {"sign", "200", 2}, {"sign", "503", 1}, {"sign", "unreachable", 1}} {
		if got := cktest.MustFind(t, s, "certkeeper_vault_requests_total", "operation", c.op, "code", c.code); got != c.want {
			t.Errorf("requests{%s,%s} = %v, want %v", c.op, c.code, got, c.want)
		}
	}
	if got := cktest.MustFind(t, s, "certkeeper_vault_request_duration_seconds", "operation", "sign"); got != 4 {
		t.Errorf("sign duration count = %v, want 4", got)
	}
}

// Logins are counted by method, both results of every configured method
// existing from the start at zero (so increase() sees the first failure);
// the method in use is 1 by its position in the chain, the others 0; a
// method that leaves the config leaves the scrape.
func TestLoginsByMethod(t *testing.T) {
	m, reg := newTestMetrics(t)
	fa := &fakeAuth{st: []vault.AuthMethodStatus{
		{Method: "cert", Mount: "cert"},
		{Method: "aws", Mount: "aws"},
		{Method: "jwt", Mount: "jwt-gcp"},
		{Method: "jwt", Mount: "jwt-azure"},
	}}
	if err := m.ExposeState(Sources{Auth: fa}); err != nil {
		t.Fatal(err)
	}
	s := cktest.Gather(t, reg)
	for _, method := range []string{"cert", "aws", "jwt"} {
		for _, r := range []string{"success", "failure"} {
			if got := cktest.MustFind(t, s, "certkeeper_vault_logins_total", "method", method, "result", r); got != 0 {
				t.Errorf("logins{%s,%s} before any login = %v, want 0", method, r, got)
			}
		}
	}
	m.ObserveLogin("cert", false)
	m.ObserveLogin("aws", true)
	m.ObserveLogin("cert", false)
	m.ObserveLogin("cert", true)
	m.ObserveLogin("jwt", true)
	fa.mu.Lock()
	fa.st[0].InUse = true
	fa.mu.Unlock()
	s = cktest.Gather(t, reg)
	for _, c := range []struct {
		method, result string
		want           float64
	}{{"cert", "failure", 2}, {"cert", "success", 1}, {"aws", "success", 1}, {"aws", "failure", 0}, {"jwt", "success", 1}} {
		if got := cktest.MustFind(t, s, "certkeeper_vault_logins_total", "method", c.method, "result", c.result); got != c.want {
			t.Errorf("logins{%s,%s} = %v, want %v", c.method, c.result, got, c.want)
		}
	}
	for _, c := range []struct {
		method, mount, pos string
		want               float64
	}{{"cert", "cert", "1", 1}, {"aws", "aws", "2", 0}, {"jwt", "jwt-gcp", "3", 0}, {"jwt", "jwt-azure", "4", 0}} {
		if got := cktest.MustFind(t, s, "certkeeper_vault_auth_method_in_use", "method", c.method, "mount", c.mount, "position", c.pos); got != c.want {
			t.Errorf("in_use{%s,%s,%s} = %v, want %v", c.method, c.mount, c.pos, got, c.want)
		}
	}
	fa.mu.Lock()
	fa.st = fa.st[:1]
	fa.mu.Unlock()
	for _, x := range cktest.Gather(t, reg) {
		if x.Labels["method"] == "aws" || x.Labels["method"] == "jwt" {
			t.Errorf("an auth method left the config but %s%v is still exported", x.Name, x.Labels)
		}
	}
}

// The recording methods for service reloads and CRLs, which the reload
// code calls.
func TestServiceAndTrustBundleRecorders(t *testing.T) {
	m, reg := newTestMetrics(t)
	m.ServiceConfigured("nginx")
	s := cktest.Gather(t, reg)
	for _, r := range []string{"success", "failure"} {
		if got := cktest.MustFind(t, s, "certkeeper_service_reloads_total", "service", "nginx", "result", r); got != 0 {
			t.Errorf("configured service starts with %s=%v, want 0", r, got)
		}
	}
	m.ServiceReloaded("nginx", ResultSuccess)
	m.ServiceReloaded("nginx", ResultFailure)
	m.ServiceReloaded("nginx", ResultSuccess)
	m.ServedMatches("nginx", true)
	m.ServedMatches("apache", false)
	next := time.Unix(1_900_000_000, 0)
	m.CRLNextUpdate("clients", "CN=Example Root", next)
	m.CRLNextUpdate("clients", "CN=Example Intermediate", next.Add(time.Hour))
	s = cktest.Gather(t, reg)
	if got := cktest.MustFind(t, s, "certkeeper_service_reloads_total", "service", "nginx", "result", "success"); got != 2 {
		t.Errorf("successful reloads = %v, want 2", got)
	}
	if got := cktest.MustFind(t, s, "certkeeper_service_reloads_total", "service", "nginx", "result", "failure"); got != 1 {
		t.Errorf("failed reloads = %v, want 1", got)
	}
	if got := cktest.MustFind(t, s, "certkeeper_service_served_matches", "service", "nginx"); got != 1 {
		t.Errorf("nginx served_matches = %v", got)
	}
	if got := cktest.MustFind(t, s, "certkeeper_service_served_matches", "service", "apache"); got != 0 {
		t.Errorf("apache served_matches = %v", got)
	}
	if got := cktest.MustFind(t, s, "certkeeper_trust_bundle_crl_next_update_timestamp_seconds", "name", "clients", "issuer", "CN=Example Root"); got != float64(next.Unix()) {
		t.Errorf("crl next update = %v", got)
	}

	m.ForgetService("nginx")
	m.ForgetTrustBundle("clients")
	for _, x := range cktest.Gather(t, reg) {
		if x.Labels["service"] == "nginx" || x.Labels["name"] == "clients" {
			t.Errorf("forgotten series still exported: %s%v", x.Name, x.Labels)
		}
	}
}

// Names are the contract: prefixed, with unit and _total suffixes.
func TestMetricNamesFollowConventions(t *testing.T) {
	for _, d := range catalog {
		if !strings.HasPrefix(d.name, "certkeeper_") {
			t.Errorf("%s lacks the certkeeper_ prefix", d.name)
		}
		if (d.kind == "counter") != strings.HasSuffix(d.name, "_total") {
			t.Errorf("%s: counters, and only counters, end in _total", d.name)
		}
		if strings.Contains(d.name, "timestamp") && !strings.HasSuffix(d.name, "_timestamp_seconds") {
			t.Errorf("%s: timestamps end in _timestamp_seconds", d.name)
		}
		// A CA's serial names the CA itself, and changes only when the CA
		// is replaced (years apart): those series do not churn. A leaf's
		// serial changes at every renewal: only the info metric has it.
		if slices.Contains(d.labels, "serial") && d.name != "certkeeper_certificate_info" && !strings.HasPrefix(d.name, "certkeeper_trust_bundle_ca") {
			t.Errorf("%s is labelled by serial", d.name)
		}
	}
}
