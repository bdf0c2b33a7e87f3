//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/telemetry"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// nodeExporterBin is Debian's node_exporter (package
// prometheus-node-exporter).
const nodeExporterBin = "/usr/bin/prometheus-node-exporter"

// startNodeExporter runs node_exporter with only its textfile collector,
// reading dir, and returns its address.
func startNodeExporter(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat(nodeExporterBin); err != nil {
		t.Skip("node_exporter is not installed (Debian package prometheus-node-exporter; .ci/run installs it)")
	}
	addr := freeAddr(t)
	logs := &cktest.SyncBuffer{}
	cmd := exec.Command(nodeExporterBin,
		"--collector.disable-defaults", "--collector.textfile",
		"--collector.textfile.directory="+dir,
		"--web.listen-address="+addr)
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
			t.Logf("node_exporter logs:\n%s", logs.String())
		}
	})
	waitFor(t, "node_exporter to answer", 30*time.Second, func() bool {
		code, _, err := tryGet("http://" + addr + "/metrics")
		return err == nil && code == 200
	})
	return addr
}

// seriesKey is a series without the labels the scrape adds.
func seriesKey(r promResult) string {
	var parts []string
	for k, v := range r.Metric {
		if k != "job" && k != "instance" {
			parts = append(parts, k+"="+v)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// TestTextfileThroughNodeExporter: certkeeper writes its metrics for
// node_exporter's textfile collector; the real node_exporter reads the
// file without error and the real Prometheus, scraping node_exporter,
// holds the very series (names, labels, values) it gets by scraping
// certkeeper directly, apart from job and instance, so the example
// alerts select the same series either way (CertkeeperDown aside, which
// is about the direct scrape; CertkeeperTextfileStale is its
// counterpart). The file holds no Go, process or Vault request series.
// It is rewritten at its interval; once certkeeper stops, node_exporter
// keeps exporting the last values and only the file's mtime tells.
func TestTextfileThroughNodeExporter(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	addr := freeAddr(t)
	textDir := filepath.Join(e.dir, "node-exporter")
	if err := os.MkdirAll(textDir, 0o755); err != nil {
		t.Fatal(err)
	}
	textfile := filepath.Join(textDir, "certkeeper.prom")
	cfg := e.writeConfigWith(fmt.Sprintf(`
trust_bundle "clients" {
  mounts   = ["pki_int", "pki"]
  ca_file  = "%[1]s/clients-ca.pem"
  crl_file = "%[1]s/clients-crl.pem"
}

service "noop" {
  reload = ["true"]
  settle = "100ms"
}

telemetry {
  listen            = %[2]q
  textfile          = %[3]q
  textfile_interval = "2s"
}
`, e.dir, addr, textfile),
		e.cert("web", vaulttest.RoleEC, `notify = ["noop"]`),
		e.cert("api", vaulttest.RoleEC),
		// A role that does not exist: renewals keep failing, so the
		// failure series have something to say.
		e.cert("broken", "no-such-role"))
	d := metricsDaemon(t, cfg, addr, "web", "api")
	d.WaitLog(`renewal failed.*cert=broken`, 1, 60*time.Second)
	node := startNodeExporter(t, textDir)
	p := startPrometheusWith(t, fmt.Sprintf(`  - job_name: certkeeper
    static_configs:
      - targets: [%q]
  - job_name: node
    static_configs:
      - targets: [%q]
`, addr, node))
	p.waitValue(`up{job="node"}`, 1, 60*time.Second)
	p.waitValue(`node_textfile_scrape_error{job="node"}`, 0, 30*time.Second)

	data, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, not := range []string{"go_", "process_", "certkeeper_vault_request"} {
		if strings.Contains(string(data), "\n"+not) || strings.HasPrefix(string(data), not) {
			t.Errorf("the textfile holds %s* series", not)
		}
	}

	// Every series of the file reaches Prometheus through node_exporter
	// exactly as the direct scrape has it. Counters and failures move
	// while broken keeps failing, so wait for a moment both agree.
	var diffs []string
	compare := func() bool {
		diffs = nil
		seen := 0
		for _, name := range telemetry.TextfileMetricNames() {
			direct, viaNode := map[string]float64{}, map[string]float64{}
			for _, r := range p.query(name + `{job="certkeeper"}`) {
				direct[seriesKey(r)] = r.float(t)
			}
			for _, r := range p.query(name + `{job="node"}`) {
				viaNode[seriesKey(r)] = r.float(t)
			}
			seen += len(direct)
			for k, v := range direct {
				if w, ok := viaNode[k]; !ok || w != v {
					diffs = append(diffs, fmt.Sprintf("%s{%s}: direct %v, through node_exporter %v (present %v)", name, k, v, w, ok))
				}
			}
			for k := range viaNode {
				if _, ok := direct[k]; !ok {
					diffs = append(diffs, fmt.Sprintf("%s{%s}: only through node_exporter", name, k))
				}
			}
		}
		return len(diffs) == 0 && seen >= 20
	}
	deadline := time.Now().Add(60 * time.Second)
	for !compare() {
		if time.Now().After(deadline) {
			t.Fatalf("series through node_exporter differ from the direct scrape:\n%s", strings.Join(diffs, "\n"))
		}
		time.Sleep(time.Second)
	}
	for _, want := range []string{
		`certkeeper_certificate_not_after_timestamp_seconds{job="node",name="web"}`,
		`certkeeper_certificate_consecutive_failures{job="node",name="broken"} > 0`,
		`certkeeper_certificate_renewals_total{job="node",name="broken",result="failure"} > 0`,
		`certkeeper_trust_bundle_crl_next_update_timestamp_seconds{job="node",name="clients"}`,
		`certkeeper_service_reloads_total{job="node",service="noop",result="success"} > 0`,
	} {
		if r := p.query(want); len(r) == 0 {
			t.Errorf("no series for %s through node_exporter", want)
		}
	}
	web := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt"))
	p.waitValue(`certkeeper_certificate_not_after_timestamp_seconds{job="node",name="web"}`, unix(web.NotAfter), 10*time.Second)

	// The example alerts load and evaluate cleanly.
	_, body := httpGet(t, "http://"+p.addr+"/api/v1/rules")
	if !strings.Contains(body, `"health":"ok"`) || strings.Contains(body, `"health":"err"`) {
		t.Errorf("rules: %s", body)
	}

	// The file's mtime moves at the interval while certkeeper runs...
	mtime := `node_textfile_mtime_seconds{job="node"}`
	r := p.query(mtime)
	if len(r) != 1 {
		t.Fatalf("%s: %+v", mtime, r)
	}
	t.Logf("node_textfile_mtime_seconds labels: %v", r[0].Metric)
	first := r[0].float(t)
	waitFor(t, "the textfile to be rewritten", 30*time.Second, func() bool {
		r := p.query(mtime)
		return len(r) == 1 && r[0].float(t) > first
	})
	// ...and stops when certkeeper stops, while node_exporter keeps
	// exporting its last values.
	d.Stop()
	stopped := time.Now()
	time.Sleep(3 * time.Second)
	last := p.query(mtime)[0].float(t)
	waitFor(t, "Prometheus to scrape node_exporter after certkeeper stopped", 30*time.Second, func() bool {
		return time.Since(stopped) > 6*time.Second
	})
	if now := p.query(mtime)[0].float(t); now != last {
		t.Errorf("the textfile changed after certkeeper stopped: mtime %v then %v", last, now)
	}
	if r := p.query(`certkeeper_certificate_not_after_timestamp_seconds{job="node",name="web"}`); len(r) != 1 {
		t.Errorf("node_exporter dropped the series when certkeeper stopped: %+v", r)
	}
}

// With listen = "" (a host that opens no port of its own) the textfile is
// still written, with the certificates' series.
func TestTextfileWithoutEndpoint(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	textfile := filepath.Join(e.dir, "certkeeper.prom")
	cfg := e.writeConfigWith(fmt.Sprintf("telemetry {\n  listen   = \"\"\n  textfile = %q\n}\n", textfile), e.cert("web", vaulttest.RoleEC))
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web `, 1, 60*time.Second)
	web := cktest.ReadLeaf(t, filepath.Join(e.dir, "web.crt"))
	waitFor(t, "the textfile with web's expiry", 30*time.Second, func() bool {
		b, err := os.ReadFile(textfile)
		if err != nil {
			return false
		}
		v, ok := cktest.Find(cktest.ParseMetrics(t, string(b)), "certkeeper_certificate_not_after_timestamp_seconds", "name", "web")
		return ok && v == unix(web.NotAfter)
	})
	if d.Count(`telemetry endpoint listening`) != 0 {
		t.Error("an endpoint listens although listen = \"\"")
	}
	d.Stop()
}
