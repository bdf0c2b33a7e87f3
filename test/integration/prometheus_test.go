//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// prometheusBin is Debian's Prometheus server (package prometheus).
const prometheusBin = "/usr/bin/prometheus"

// promServer is a real Prometheus scraping certkeeper.
type promServer struct {
	t    *testing.T
	addr string
}

// startPrometheus runs Prometheus with its own config, storage and port,
// scraping target every second and loading the example alerts.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	return startPrometheusWith(t, fmt.Sprintf(`  - job_name: certkeeper
    static_configs:
      - targets: [%q]
`, target))
}

// startPrometheusWith is startPrometheus with the scrape_configs given
// (YAML list items, indented by two spaces).
func startPrometheusWith(t *testing.T, scrapeConfigs string) *promServer {
	t.Helper()
	bin := prometheusBin
	if _, err := os.Stat(bin); err != nil {
		p, lookErr := exec.LookPath("prometheus")
		if lookErr != nil {
			t.Skip("prometheus is not installed (Debian package prometheus; .ci/run installs it)")
		}
		bin = p
	}
	rules, err := filepath.Abs("../../examples/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
%s`, rules, scrapeConfigs)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	logs := &cktest.SyncBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs.String())
		}
	})
	p := &promServer{t: t, addr: addr}
	waitFor(t, "prometheus to be ready", 60*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("prometheus exited:\n%s", logs.String())
		default:
		}
		code, _, err := tryGet("http://" + addr + "/-/ready")
		return err == nil && code == 200
	})
	return p
}

// promResult is one element of an instant vector.
type promResult struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (r promResult) float(t *testing.T) float64 {
	t.Helper()
	s, _ := r.Value[1].(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("value %v: %v", r.Value, err)
	}
	return f
}

// query runs an instant query through Prometheus' HTTP API.
func (p *promServer) query(q string) []promResult {
	p.t.Helper()
	code, body := httpGet(p.t, "http://"+p.addr+"/api/v1/query?query="+url.QueryEscape(q))
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promResult `json:"result"`
		} `json:"data"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || code != 200 || resp.Status != "success" {
		p.t.Fatalf("query %q: %d %s %v", q, code, body, err)
	}
	return resp.Data.Result
}

// waitValue waits until q returns exactly one series with value want.
func (p *promServer) waitValue(q string, want float64, timeout time.Duration) {
	p.t.Helper()
	var last []promResult
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		last = p.query(q)
		if len(last) == 1 && last[0].float(p.t) == want {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	p.t.Fatalf("Prometheus query %q: got %+v, want one series = %v", q, last, want)
}

// TestRealPrometheus: a real Prometheus scrapes a running certkeeper; its
// HTTP API returns the expiry of the certificates on disk, follows a
// renewal on the same series, and evaluates the example alerts without
// error (none firing for a healthy agent).
func TestRealPrometheus(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	addr := freeAddr(t)
	cfg := e.writeConfigWith(telemetryBlock(addr),
		e.cert("web", vaulttest.RoleEC, `ttl = "1m"`),
		e.cert("api", vaulttest.RoleEC, `ttl = "24h"`))
	d := metricsDaemon(t, cfg, addr, "web", "api")
	prom := startPrometheus(t, addr)

	prom.waitValue(`up{job="certkeeper"}`, 1, 60*time.Second)
	api := cktest.ReadLeaf(t, filepath.Join(e.dir, "api.crt"))
	prom.waitValue(`certkeeper_certificate_not_after_timestamp_seconds{job="certkeeper",name="api"}`, unix(api.NotAfter), 30*time.Second)
	prom.waitValue(`certkeeper_certificate_not_before_timestamp_seconds{name="api"}`, unix(api.NotBefore), 30*time.Second)
	for _, ca := range readCerts(t, filepath.Join(e.dir, "api.ca.pem")) {
		q := fmt.Sprintf(`certkeeper_ca_not_after_timestamp_seconds{name="api",subject=%q}`, ca.Subject.String())
		prom.waitValue(q, unix(ca.NotAfter), 30*time.Second)
	}
	prom.waitValue(`count(certkeeper_certificate_info{name="api",serial=`+strconv.Quote(serialOf(api))+`})`, 1, 30*time.Second)
	if r := prom.query(`sum(certkeeper_vault_request_duration_seconds_count{operation="sign"})`); len(r) != 1 || r[0].float(t) < 2 {
		t.Errorf("Vault sign latency samples in Prometheus: %+v", r)
	}

	// web lives 90s and renews about a minute in: Prometheus must then
	// hold the new certificate's expiry, on the same single series.
	first := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt"))
	prom.waitValue(`certkeeper_certificate_not_after_timestamp_seconds{name="web"}`, unix(first.NotAfter), 30*time.Second)
	d.WaitLog(`certificate issued and written.*cert=web `, 2, 90*time.Second)
	second := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt"))
	prom.waitValue(`certkeeper_certificate_not_after_timestamp_seconds{name="web"}`, unix(second.NotAfter), 30*time.Second)
	prom.waitValue(`count(count_over_time(certkeeper_certificate_not_after_timestamp_seconds{name="web"}[10m]))`, 1, 5*time.Second)
	prom.waitValue(`certkeeper_certificate_renewals_total{name="web",result="success"}`, 2, 30*time.Second)

	// The example rules load and evaluate cleanly against real series.
	_, body := httpGet(t, "http://"+prom.addr+"/api/v1/rules")
	var rules struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name, Health, LastError string
					State                   string `json:"state"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &rules); err != nil {
		t.Fatal(err)
	}
	if len(rules.Data.Groups) != 1 || len(rules.Data.Groups[0].Rules) < 10 {
		t.Fatalf("example alerts not loaded: %s", body)
	}
	for _, r := range rules.Data.Groups[0].Rules {
		if r.Health != "ok" || r.State == "firing" {
			t.Errorf("alert %s: health %q (%s), state %q", r.Name, r.Health, r.LastError, r.State)
		}
	}
	d.Stop()
}

// tryGet is httpGet that reports failure instead of failing the test.
func tryGet(u string) (int, string, error) {
	resp, err := httpClient.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	return resp.StatusCode, "", nil
}
