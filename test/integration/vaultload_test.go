//go:build integration

package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/test/faultproxy"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// measureEnv turns TestVaultLoadPerHost on; it takes minutes.
const measureEnv = "CERTKEEPER_MEASURE_LOAD"

// TestVaultLoadPerHost measures what one host costs the Vault that
// examples/vault/setup-pki.sh sets up, with the shipped host config
// (examples/nginx/certkeeper.hcl, defaults: crl_refresh and
// revocation_check 1m) in steady state, and how much of that load one
// Vault serves, with an audit device on as in production:
//
//	CERTKEEPER_MEASURE_LOAD=5m go test -tags integration -run TestVaultLoadPerHost -v ./test/integration
//
// Part one runs `certkeeper run` through a counting proxy for the given
// window after its first pass (no certificate is due: only trust bundle
// and revocation polling remain) and reports requests and bytes per
// host, and for 10,000 hosts. Part two replays that steady-state mix
// against Vault from 8 clients for 10 seconds and reports the rate it
// sustained and the CPU it used.
func TestVaultLoadPerHost(t *testing.T) {
	window, err := time.ParseDuration(os.Getenv(measureEnv))
	if err != nil {
		t.Skipf("a measurement, not a check: set %s to the steady-state window (e.g. 5m) to run it", measureEnv)
	}
	v := vaulttest.New(t, vaulttest.Options{})
	dir := t.TempDir()
	roleID, secretID := v.SetupScript(t, filepath.Join(dir, "pki"))
	rf, sf := vaulttest.WriteCreds(t, dir, roleID, secretID)
	if err := v.Client.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": filepath.Join(dir, "audit.log")}}); err != nil {
		t.Fatalf("enabling the file audit device: %v", err)
	}
	proxy, err := faultproxy.New(v.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	data, err := os.ReadFile(filepath.Join(moduleRoot(t), "examples", "nginx", "certkeeper.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, sub := range [][2]string{
		{"/var/lib/certkeeper", filepath.Join(dir, "state")},
		{"https://vault.example.internal:8200", proxy.Addr},
		{"/etc/certkeeper/role-id", rf},
		{"/etc/certkeeper/secret-id", sf},
		{"/etc/ssl/certkeeper", filepath.Join(dir, "tls")},
		{"/run/nginx.pid", filepath.Join(dir, "nginx.pid")}, // no nginx: nothing to reload
	} {
		if !strings.Contains(text, sub[0]) {
			t.Fatalf("examples/nginx/certkeeper.hcl no longer contains %q", sub[0])
		}
		text = strings.ReplaceAll(text, sub[0], sub[1])
	}
	cfg := filepath.Join(dir, "certkeeper.hcl")
	os.WriteFile(cfg, []byte(text+"\ntelemetry {\n  listen = \"\"\n}\n"), 0o600)
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 60*time.Second)
	// Past the first round of every poll (the first CRL fetches are whole).
	time.Sleep(70 * time.Second)
	from := time.Now()
	time.Sleep(window)
	to := time.Now()
	d.Stop()

	type tally struct {
		n, in, out int64
		codes      map[int]int
	}
	byOp := map[string]*tally{}
	var total tally
	var mix []faultproxy.Record
	for _, r := range proxy.Records() {
		if r.At.Before(from) || !r.At.Before(to) {
			continue
		}
		op := operationOf(r.Path)
		tl := byOp[op]
		if tl == nil {
			tl = &tally{codes: map[int]int{}}
			byOp[op] = tl
		}
		tl.n++
		tl.in += r.In
		tl.out += r.Out
		tl.codes[r.Status]++
		total.n++
		total.in += r.In
		total.out += r.Out
		mix = append(mix, r)
	}
	minutes := to.Sub(from).Minutes()
	var ops []string
	for op := range byOp {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		tl := byOp[op]
		t.Logf("MEASURE per host, %s: %.2f requests/min (status %v), %.0f bytes/min in, %.0f bytes/min out", op, float64(tl.n)/minutes, tl.codes, float64(tl.in)/minutes, float64(tl.out)/minutes)
	}
	perSec := float64(total.n) / to.Sub(from).Seconds()
	bytesPerSec := float64(total.in+total.out) / to.Sub(from).Seconds()
	t.Logf("MEASURE per host, all: %.2f requests/min, %.0f bytes/min (in+out) over %s", perSec*60, bytesPerSec*60, to.Sub(from).Round(time.Second))
	t.Logf("MEASURE 10,000 hosts: %.0f requests/s, %.0f KB/s (in+out)", perSec*10000, bytesPerSec*10000/1000)
	if total.n == 0 {
		t.Fatal("no request in the window")
	}

	// Part two: the same mix, as fast as Vault answers.
	var replay []*http.Request
	for _, r := range mix {
		req, _ := http.NewRequest(r.Method, v.Addr+r.Path, nil)
		if strings.HasSuffix(r.Path, "/issuers") {
			// The api client sends a LIST as GET ?list=true; the proxy
			// records the path alone.
			req.Method, req.URL.RawQuery = http.MethodGet, "list=true"
		}
		if strings.HasSuffix(r.Path, "/crl/pem") {
			// As certkeeper asks: changed since a minute before its last
			// answer.
			req.Header.Set("If-Modified-Since", time.Now().Add(-time.Minute).UTC().Format(http.TimeFormat))
		}
		replay = append(replay, req)
	}
	cpu0 := cpuSeconds(t, v.PID())
	var done, not200 atomic.Int64
	var statusMu sync.Mutex
	statuses := map[int]int{}
	stop := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for i := g; time.Now().Before(stop); i++ {
				resp, err := c.Do(replay[i%len(replay)].Clone(t.Context()))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified {
					not200.Add(1)
				}
				statusMu.Lock()
				statuses[resp.StatusCode]++
				statusMu.Unlock()
				done.Add(1)
			}
		})
	}
	wg.Wait()
	cpu := cpuSeconds(t, v.PID()) - cpu0
	rate := float64(done.Load()) / 10
	t.Logf("MEASURE this Vault (audit on, 2 shared cores) served the steady-state mix at %.0f requests/s using %.2f CPU-seconds per second (answers by status: %v)", rate, cpu/10, statuses)
	if not200.Load() > 0 {
		t.Errorf("%d replayed requests were answered neither 200 nor 304", not200.Load())
	}
	t.Logf("MEASURE 10,000 hosts need %.0f%% of that rate", 100*perSec*10000/rate)
}

// operationOf names a Vault path for the report.
func operationOf(path string) string {
	p := strings.TrimPrefix(path, "/v1/")
	mount, rest, _ := strings.Cut(p, "/")
	switch {
	case strings.HasSuffix(rest, "/crl/pem"):
		return mount + " crl"
	case rest == "issuers":
		return mount + " issuers (list)"
	case strings.HasSuffix(rest, "/json"):
		return mount + " issuer (json)"
	}
	return p
}

// cpuSeconds is the user+system CPU time of pid so far.
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): utime is
	// the 14th field, stime the 15th.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}
