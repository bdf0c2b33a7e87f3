//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/telemetry"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// metricsDaemon starts `certkeeper run` on cfg and waits until its
// endpoint listens on addr and every named certificate was issued.
func metricsDaemon(t *testing.T, cfg, addr string, certs ...string) *daemon {
	t.Helper()
	d := startDaemon(t, cfg)
	d.WaitLog(`telemetry endpoint listening" addr=`+regexp.QuoteMeta(addr), 1, 30*time.Second)
	for _, name := range certs {
		d.WaitLog(`certificate issued and written.*cert=`+name+` `, 1, 60*time.Second)
	}
	return d
}

// TestMetricsMatchCertificatesOnDisk: every expiry metric equals what the
// certificate files on disk say, Vault requests and the token are counted,
// watched files are exported and re-read when replaced, a broken watched
// file is counted and harmless, and `status` shows the running agent's view.
func TestMetricsMatchCertificatesOnDisk(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	addr := freeAddr(t)
	watched := filepath.Join(e.dir, "watched")
	if err := os.MkdirAll(watched, 0o755); err != nil {
		t.Fatal(err)
	}
	legacyNotAfter := time.Now().Add(40 * 24 * time.Hour).Truncate(time.Second)
	legacy := filepath.Join(watched, "legacy.pem")
	if err := os.WriteFile(legacy, selfSigned(t, "legacy.example.internal", legacyNotAfter), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := e.writeConfigWith(telemetryBlock(addr)+`watch { paths = ["watched/*.pem"] }`,
		e.cert("web", vaulttest.RoleEC), e.cert("api", vaulttest.RoleRSA, `key_type = "rsa"`))
	d := metricsDaemon(t, cfg, addr, "web", "api")
	loginAt := time.Now()
	s := scrape(t, addr)

	for _, name := range []string{"web", "api"} {
		leaf := cktest.ReadLeaf(t, filepath.Join(e.dir, name+".crt"))
		checks := []struct {
			metric string
			want   float64
		}{
			{"certkeeper_certificate_not_after_timestamp_seconds", unix(leaf.NotAfter)},
			{"certkeeper_certificate_not_before_timestamp_seconds", unix(leaf.NotBefore)},
			{"certkeeper_certificate_consecutive_failures", 0},
		}
		for _, c := range checks {
			if got := cktest.MustFind(t, s, c.metric, "name", name); got != c.want {
				t.Errorf("%s{name=%q} = %v, want %v (from %s.crt)", c.metric, name, got, c.want, name)
			}
		}
		info := cktest.MustFind(t, s, "certkeeper_certificate_info", "name", name, "common_name", name+".example.internal",
			"serial", serialOf(leaf), "issuer", leaf.Issuer.CommonName)
		if info != 1 {
			t.Errorf("%s info = %v", name, info)
		}
		renew := cktest.MustFind(t, s, "certkeeper_certificate_renewal_timestamp_seconds", "name", name)
		life := leaf.NotAfter.Sub(leaf.NotBefore).Seconds()
		if lo, hi := unix(leaf.NotBefore)+0.5*life, unix(leaf.NotBefore)+0.67*life; renew < lo || renew > hi {
			t.Errorf("%s renewal point %v is outside 56-66%% of its life [%v, %v]", name, renew, lo, hi)
		}
		if got := cktest.MustFind(t, s, "certkeeper_certificate_renewals_total", "name", name, "result", "success"); got != 1 {
			t.Errorf("%s successful renewals = %v, want 1", name, got)
		}
		if got := cktest.MustFind(t, s, "certkeeper_certificate_renewals_total", "name", name, "result", "failure"); got != 0 {
			t.Errorf("%s failed renewals = %v, want 0", name, got)
		}
		if got := cktest.MustFind(t, s, "certkeeper_certificate_last_success_timestamp_seconds", "name", name); got < unix(leaf.NotBefore) || got > unix(time.Now())+1 {
			t.Errorf("%s last success %v is not around its issuance", name, got)
		}
		// Each CA in the chain the agent wrote, by subject.
		cas := readCerts(t, filepath.Join(e.dir, name+".ca.pem"))
		if len(cas) != 2 {
			t.Fatalf("%s.ca.pem holds %d certificates", name, len(cas))
		}
		for _, ca := range cas {
			if got := cktest.MustFind(t, s, "certkeeper_ca_not_after_timestamp_seconds", "name", name, "subject", ca.Subject.String()); got != unix(ca.NotAfter) {
				t.Errorf("CA %s of %s: %v, want %v", ca.Subject, name, got, unix(ca.NotAfter))
			}
		}
	}
	// One login, two signs, all answered 200; latency observed for each.
	for _, c := range []struct {
		op   string
		want float64
	}{{"login", 1}, {"sign", 2}} {
		if got := cktest.MustFind(t, s, "certkeeper_vault_requests_total", "operation", c.op, "code", "200"); got != c.want {
			t.Errorf("vault %s requests = %v, want %v", c.op, got, c.want)
		}
		if got := cktest.MustFind(t, s, "certkeeper_vault_request_duration_seconds", "operation", c.op); got != c.want {
			t.Errorf("vault %s latency samples = %v, want %v", c.op, got, c.want)
		}
	}
	// The AppRole's tokens live 1h.
	tokenExp := cktest.MustFind(t, s, "certkeeper_vault_token_expiry_timestamp_seconds")
	if want := unix(loginAt.Add(time.Hour)); tokenExp < want-120 || tokenExp > want+60 {
		t.Errorf("token expiry %v, want about %v (login + 1h)", tokenExp, want)
	}
	if got := cktest.MustFind(t, s, "certkeeper_file_certificate_not_after_timestamp_seconds", "path", legacy, "subject", "CN=legacy.example.internal"); got != unix(legacyNotAfter) {
		t.Errorf("watched file expiry %v, want %v", got, unix(legacyNotAfter))
	}
	if got := cktest.MustFind(t, s, "certkeeper_file_read_errors_total", "path", legacy); got != 0 {
		t.Errorf("read errors for a good file: %v", got)
	}
	if code, body := httpGet(t, "http://"+addr+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s", code, body)
	}

	t.Run("watched files", func(t *testing.T) {
		broken := filepath.Join(watched, "broken.pem")
		replaceFile(t, broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		renewed := legacyNotAfter.Add(365 * 24 * time.Hour)
		replaceFile(t, legacy, string(selfSigned(t, "legacy.example.internal", renewed)))
		waitFor(t, "the broken file to be counted and the replaced one re-read", 30*time.Second, func() bool {
			s := scrape(t, addr)
			errs, _ := cktest.Find(s, "certkeeper_file_read_errors_total", "path", broken)
			na, _ := cktest.Find(s, "certkeeper_file_certificate_not_after_timestamp_seconds", "path", legacy, "subject", "CN=legacy.example.internal")
			return errs == 1 && na == unix(renewed)
		})
		d.WaitLog(`watched file cannot be read as PEM certificates.*broken\.pem`, 1, 5*time.Second)
		if code, _ := httpGet(t, "http://"+addr+"/healthz"); code != 200 {
			t.Error("a broken watched file hurt the agent")
		}
	})

	t.Run("status from the running agent", func(t *testing.T) {
		out, errOut := runStatus(t, cfg)
		if !strings.Contains(out, "(from the running agent on "+filepath.Join(e.dir, "state", "control.sock")+")") {
			t.Errorf("status did not read the running agent:\n%s\n%s", out, errOut)
		}
		for _, name := range []string{"web", "api"} {
			if !regexp.MustCompile(`(?m)^` + name + ` +` + name + `\.example\.internal +valid +\S+ +\S+ +issued `).MatchString(out) {
				t.Errorf("no line for %s with state valid and last result issued:\n%s", name, out)
			}
		}
		var status struct {
			Certificates []agent.Status `json:"certificates"`
		}
		jsonOut, _ := runStatus(t, cfg, "-json")
		if err := json.Unmarshal([]byte(jsonOut), &status); err != nil || len(status.Certificates) != 2 {
			t.Fatalf("status -json: %v\n%s", err, jsonOut)
		}
		for _, st := range status.Certificates {
			leaf := cktest.ReadLeaf(t, filepath.Join(e.dir, st.Name+".crt"))
			if !st.NotAfter.Equal(leaf.NotAfter) || st.Serial != serialOf(leaf) || st.LastResult != "issued" {
				t.Errorf("status -json for %s: %+v, want the certificate on disk, issued", st.Name, st)
			}
		}
	})

	d.Stop()
	t.Run("status from disk when the agent is gone", func(t *testing.T) {
		out, _ := runStatus(t, cfg)
		if !strings.Contains(out, "(read from disk (no running agent answered on "+filepath.Join(e.dir, "state", "control.sock")+"))") {
			t.Errorf("status without an agent:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^web +web\.example\.internal +valid `).MatchString(out) {
			t.Errorf("status from disk lacks web:\n%s", out)
		}
	})
}

func runStatus(t *testing.T, cfg string, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(certkeeperBin, append([]string{"status", "-config", cfg}, args...)...)
	cmd.Env = cleanEnv()
	var out, errb cktest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return out.String(), errb.String()
}

// TestSeriesLeaveWithTheirCertificate: a certificate removed from the
// config has no series at all after the agent restarts with that config;
// the one kept continues with the same values (nothing was re-issued).
func TestSeriesLeaveWithTheirCertificate(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	addr := freeAddr(t)
	cfg := e.writeConfigWith(telemetryBlock(addr), e.cert("web", vaulttest.RoleEC), e.cert("api", vaulttest.RoleEC))
	d := metricsDaemon(t, cfg, addr, "web", "api")
	before := scrape(t, addr)
	if _, ok := cktest.Find(before, "certkeeper_certificate_not_after_timestamp_seconds", "name", "api"); !ok {
		t.Fatal("api has no expiry series to begin with")
	}
	webNotAfter := cktest.MustFind(t, before, "certkeeper_certificate_not_after_timestamp_seconds", "name", "web")
	d.Stop()

	cfg = e.writeConfigWith(telemetryBlock(addr), e.cert("web", vaulttest.RoleEC))
	d = startDaemon(t, cfg)
	d.WaitLog(`telemetry endpoint listening`, 1, 30*time.Second)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 30*time.Second)
	after := scrape(t, addr)
	for _, s := range after {
		if s.Labels["name"] == "api" {
			t.Errorf("api left the config but %s%v is still exported", s.Name, s.Labels)
		}
	}
	if got := cktest.MustFind(t, after, "certkeeper_certificate_not_after_timestamp_seconds", "name", "web"); got != webNotAfter {
		t.Errorf("web's expiry changed across the restart: %v, was %v", got, webNotAfter)
	}
	// Restarted with a good certificate on disk: nothing asked of Vault.
	if _, ok := cktest.Find(after, "certkeeper_vault_requests_total", "operation", "sign", "code", "200"); ok {
		t.Error("the restart signed a certificate")
	}
	d.Stop()
}

// TestReadyzFollowsRenewals: with Vault down, /readyz stays ready while the
// certificate is before its renewal point, turns unready (and says why)
// once it is past it and renewals fail, and ready again when Vault is back
// and the certificate renewed. /healthz stays 200 throughout, and the
// failure shows in the metrics with the old certificate's expiry.
func TestReadyzFollowsRenewals(t *testing.T) {
	e := newEnv(t, vaulttest.Options{Persistent: true})
	addr := freeAddr(t)
	// 150s of life (Vault backdates 30s); renewal due 22-30s after issue.
	cfg := e.writeConfigWith(telemetryBlock(addr), e.cert("web", vaulttest.RoleEC, `ttl = "2m"`, `renew_fraction = 0.4`, `renew_jitter = 0.05`))
	d := metricsDaemon(t, cfg, addr, "web")
	first := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt"))
	if code, body := httpGet(t, "http://"+addr+"/readyz"); code != 200 {
		t.Fatalf("/readyz after issue = %d %s", code, body)
	}
	if err := e.vault.Stop(); err != nil {
		t.Fatal(err)
	}
	var body string
	waitFor(t, "/readyz to turn unready", 90*time.Second, func() bool {
		var code int
		code, body = httpGet(t, "http://"+addr+"/readyz")
		if code == 200 {
			return false
		}
		if code != 503 {
			t.Fatalf("/readyz = %d %s", code, body)
		}
		return true
	})
	if !strings.Contains(body, "web: past its renewal point") || !strings.Contains(body, "connection refused") {
		t.Errorf("/readyz does not say why:\n%s", body)
	}
	renewAt := readStatus(t, addr, "web").RenewAt
	if time.Now().Before(renewAt) {
		t.Errorf("unready at %v, before the renewal point %v", time.Now(), renewAt)
	}
	if code, _ := httpGet(t, "http://"+addr+"/healthz"); code != 200 {
		t.Error("/healthz failed while only renewals fail")
	}
	s := scrape(t, addr)
	if got := cktest.MustFind(t, s, "certkeeper_certificate_consecutive_failures", "name", "web"); got < 1 {
		t.Errorf("consecutive failures = %v", got)
	}
	if got := cktest.MustFind(t, s, "certkeeper_certificate_renewals_total", "name", "web", "result", "failure"); got < 1 {
		t.Errorf("failed renewals = %v", got)
	}
	if got := cktest.MustFind(t, s, "certkeeper_vault_requests_total", "operation", "sign", "code", "unreachable"); got < 1 {
		t.Errorf("unreachable sign requests = %v", got)
	}
	if got := cktest.MustFind(t, s, "certkeeper_certificate_not_after_timestamp_seconds", "name", "web"); got != unix(first.NotAfter) {
		t.Errorf("expiry while failing = %v, want the certificate still on disk (%v)", got, unix(first.NotAfter))
	}

	if err := e.vault.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz to be ready again after Vault came back", 100*time.Second, func() bool {
		code, _ := httpGet(t, "http://"+addr+"/readyz")
		return code == 200
	})
	second := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt"))
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("ready again without a new certificate")
	}
	if got := cktest.MustFind(t, scrape(t, addr), "certkeeper_certificate_not_after_timestamp_seconds", "name", "web"); got != unix(second.NotAfter) {
		t.Errorf("expiry after renewal = %v, want %v", got, unix(second.NotAfter))
	}
	d.Stop()
}

func readStatus(t *testing.T, addr, name string) agent.Status {
	t.Helper()
	_, body := httpGet(t, "http://"+addr+"/v1/status?offset=0")
	var page struct {
		Certificates []agent.Status `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatalf("/v1/status: %v", err)
	}
	for _, st := range page.Certificates {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("/v1/status has no %s: %s", name, body)
	return agent.Status{}
}

// needsServices are metrics only service reloads and trust bundles
// produce; nothing in this test configures them, so they cannot be in the
// scrape (the text format has no way to describe a metric without a
// sample). telemetry's unit tests check their recorders.
var needsServices = []string{
	"certkeeper_service_reloads_total",
	"certkeeper_service_served_matches",
	"certkeeper_trust_bundle_crl_next_update_timestamp_seconds",
}

// TestDashboardQueriesLiveMetrics: every metric the Grafana dashboard
// queries is in a live scrape of a running certkeeper.
func TestDashboardQueriesLiveMetrics(t *testing.T) {
	dash, err := os.ReadFile("../../examples/grafana/certkeeper.json")
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string]any
	if err := json.Unmarshal(dash, &parsed); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	var exprs []string
	collectExprs(parsed, &exprs)
	var queried []string
	for _, expr := range exprs {
		for _, m := range regexp.MustCompile(`\bcertkeeper_[a-z0-9_]+`).FindAllString(expr, -1) {
			if !slices.Contains(queried, m) {
				queried = append(queried, m)
			}
		}
	}
	if len(queried) < 10 {
		t.Fatalf("found only %d metrics in the dashboard's queries: %v", len(queried), queried)
	}

	e := newEnv(t, vaulttest.Options{})
	addr := freeAddr(t)
	watched := filepath.Join(e.dir, "watched.pem")
	if err := os.WriteFile(watched, selfSigned(t, "watched", time.Now().Add(24*time.Hour)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := e.writeConfigWith(telemetryBlock(addr)+`watch { paths = ["watched.pem"] }`, e.cert("web", vaulttest.RoleEC))
	d := metricsDaemon(t, cfg, addr, "web")
	_, body := httpGet(t, "http://"+addr+"/metrics")
	d.Stop()
	present := map[string]bool{}
	for _, s := range cktest.ParseMetrics(t, body) {
		present[s.Name] = true
	}
	for _, m := range queried {
		// histogram_quantile over _bucket: the scrape has the family.
		base := strings.TrimSuffix(m, "_bucket")
		switch {
		case present[base] || present[m]:
		case slices.Contains(needsServices, m):
			if !slices.Contains(telemetry.MetricNames(), m) {
				t.Errorf("the dashboard queries %s, which certkeeper does not define", m)
			}
		default:
			t.Errorf("the dashboard queries %s, which is not in a live scrape", m)
		}
	}
}

func collectExprs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && (k == "expr" || k == "definition") {
				*out = append(*out, s)
			}
			collectExprs(val, out)
		}
	case []any:
		for _, val := range x {
			collectExprs(val, out)
		}
	}
}

// TestNoSecretsInTelemetryOrLogs: a full lifecycle (login, sign and issue
// modes, renewals, a re-login after the token is revoked, a watched
// directory holding a private key) and then everything certkeeper shows:
// the logs, /metrics in both formats, /v1/status, /readyz and `status`.
// None may hold a token, the secret_id or private key material.
func TestNoSecretsInTelemetryOrLogs(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	addr := freeAddr(t)
	watched := filepath.Join(e.dir, "watched")
	if err := os.MkdirAll(watched, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := e.writeConfigWith(telemetryBlock(addr)+`watch { paths = ["watched"] }`,
		e.cert("web", vaulttest.RoleEC, `ttl = "1m"`),
		e.cert("iss", vaulttest.RoleEC, `issue_mode = "issue"`, `ttl = "1m"`))
	d := metricsDaemon(t, cfg, addr, "web", "iss")
	// A copy of a key where certkeeper watches: it must be skipped unread
	// into any output.
	keyPEM, err := os.ReadFile(filepath.Join(e.dir, "iss.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watched, "server.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watched, "server.crt"), []byte(fileSum(t, filepath.Join(e.dir, "iss.crt"))), 0o644); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`logged in to vault" accessor=(\S+)`).FindStringSubmatch(d.Logs.String())
	if m == nil {
		t.Fatal("no login line with an accessor")
	}
	if _, err := e.vault.Client.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": m[1]}); err != nil {
		t.Fatal(err)
	}
	d.WaitLog(`certificate issued and written.*cert=web `, 2, 90*time.Second)
	d.WaitLog(`logged in to vault`, 2, 90*time.Second)

	var shown strings.Builder
	for _, path := range []string{"/metrics", "/v1/status", "/readyz", "/healthz"} {
		_, body := httpGet(t, "http://"+addr+path)
		shown.WriteString(body)
	}
	_, om := httpGet(t, "http://"+addr+"/metrics", "Accept", "application/openmetrics-text; version=1.0.0")
	shown.WriteString(om)
	out, errOut := runStatus(t, cfg)
	shown.WriteString(out + errOut)
	out, errOut = runStatus(t, cfg, "-json")
	shown.WriteString(out + errOut)
	if !strings.Contains(shown.String(), `certkeeper_file_certificate_not_after_timestamp_seconds{path="`+filepath.Join(watched, "server.crt")) {
		t.Error("the watched certificate is not exported, so the test proves less than it claims")
	}
	d.Stop()
	shown.WriteString(d.Logs.String())
	all := shown.String()

	secretID, _ := os.ReadFile(e.secretIDFile)
	if s := strings.TrimSpace(string(secretID)); s == "" || strings.Contains(all, s) {
		t.Error("the secret_id is shown (or could not be read)")
	}
	if strings.Contains(all, "PRIVATE KEY") {
		t.Error("private key PEM is shown")
	}
	for _, name := range []string{"web", "iss"} {
		key, _ := os.ReadFile(filepath.Join(e.dir, name+".key"))
		for _, line := range strings.Split(string(key), "\n") {
			if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(all, line) {
				t.Errorf("a line of %s's private key is shown", name)
			}
		}
	}
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(all, line) {
			t.Error("a line of the watched key file is shown")
		}
	}
	if tok := regexp.MustCompile(`hv[sbr]\.[A-Za-z0-9_-]{20,}`).FindString(all); tok != "" {
		t.Errorf("a Vault token is shown: %.8s...", tok)
	}
}
