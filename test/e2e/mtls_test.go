//go:build integration

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// zeroDowntimeRotations is how many forced rotations the request loop
// must ride through without a single failed request.
const zeroDowntimeRotations = 20

func TestNginxMTLS(t *testing.T) {
	need(t, "nginx", "nginx")
	s := newStack(t)
	runMTLS(t, s, newNginx(t, s))
}

func TestApacheMTLS(t *testing.T) {
	need(t, "apache2", "apache2")
	s := newStack(t)
	runMTLS(t, s, newApache(t, s))
}

// runMTLS is the whole story for one server, on the example files: issue,
// serve, verify clients, rotate (once per batch, with no failed request),
// survive a broken server config, and revoke a client.
func runMTLS(t *testing.T, s *stack, w *webServer) {
	// The caller's files sit beside the server's, as in the example.
	callerDir := w.tlsDir
	cfg := filepath.Join(s.dir, "certkeeper.hcl")
	subs := append([][2]string{
		{"/var/lib/certkeeper", filepath.Join(s.dir, "state")},
		{"https://vault.example.internal:8200", s.vault.Addr},
		{"/etc/certkeeper/role-id", s.roleIDFile},
		{"/etc/certkeeper/secret-id", s.secretIDFile},
		{w.exampleAddr, w.addr()},
		// crl_refresh stays the example's, the default: the revocation
		// tests below measure the shipped path.
	}, w.subs...)
	// A telemetry port of its own: the examples use the default
	// 127.0.0.1:9847, which the other server's daemon (the tests run in
	// parallel) or any other process may hold, and status exits 1 while
	// the daemon cannot bind it.
	telemetry := fmt.Sprintf("\ntelemetry {\n  listen = \"127.0.0.1:%d\"\n}\n", freePort(t))
	writeFile(t, cfg, render(t, w.example+"/certkeeper.hcl", subs)+telemetry)
	tlsFile := func(name string) string { return filepath.Join(w.tlsDir, name) }

	// Provisioning, as config management would run it before the server
	// starts: everything is issued, nothing to reload yet.
	out, errOut, code := ck(t, "once", "-config", cfg)
	if code != 0 {
		t.Fatalf("once exited %d:\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"web: issued", "web-rsa: issued", "caller: issued", "trust_bundle clients: written cas=2 crls=2", "service " + w.service + ": not running"} {
		if !strings.Contains(out, want) {
			t.Errorf("once output lacks %q:\n%s", want, out)
		}
	}
	w.start(t)
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 60*time.Second)

	caller, err := tls.LoadX509KeyPair(filepath.Join(callerDir, "caller.fullchain.pem"), filepath.Join(callerDir, "caller.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(callerDir, "caller.ca.pem"))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("caller CA file: %v", err)
	}
	get := func(cert *tls.Certificate) (*http.Response, string, error) {
		return request(w, roots, cert)
	}
	accepted := func(t *testing.T, who string, cert *tls.Certificate) {
		t.Helper()
		resp, body, err := get(cert)
		if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "hello") {
			t.Fatalf("%s: want 200 hello, got %v %q %v", who, status(resp), body, err)
		}
	}
	refused := func(t *testing.T, who string, cert *tls.Certificate) {
		t.Helper()
		resp, body, err := get(cert)
		ok, why := w.rejected(resp, body, err)
		if !ok {
			t.Fatalf("%s: want the request refused for its certificate, got %v %q %v", who, status(resp), body, err)
		}
		t.Logf("%s refused: %s", who, why)
	}

	if !t.Run("verifies clients", func(t *testing.T) {
		accepted(t, "the caller's certificate", &caller)
		refused(t, "no client certificate", nil)
		stranger := otherCA(t)
		refused(t, "a certificate from another CA", &stranger)
	}) {
		return
	}

	if !t.Run("forced rotation reloads once per batch", func(t *testing.T) {
		reloads, lines := w.reloads(t), d.Count(`msg="service reloaded"`)
		ec, rsa := served(t, w, roots, caller, false), served(t, w, roots, caller, true)
		out, errOut, code := ck(t, "rotate", "-config", cfg)
		if code != 0 || strings.Count(out, "rotation scheduled by the running daemon") != 3 {
			t.Fatalf("rotate (all) exited %d:\n%s\n%s", code, out, errOut)
		}
		waitServes(t, w, roots, caller, false, tlsFile("web.crt"), ec)
		waitServes(t, w, roots, caller, true, tlsFile("web-rsa.crt"), rsa)
		// Longer than the settle window: a second reload would show now.
		time.Sleep(config.DefaultSettle + time.Second)
		if got := w.reloads(t) - reloads; got != 1 {
			t.Errorf("%s logged %d reloads for one rotation of both server certificates, want 1", w.service, got)
		}
		if got := d.Count(`msg="service reloaded"`) - lines; got != 1 {
			t.Errorf("certkeeper logged %d reloads, want 1", got)
		}
		if d.Count(`msg="service reloaded" service=`+w.service+` sources="\[certificate web certificate web-rsa\]" changes=2`)+
			d.Count(`msg="service reloaded" service=`+w.service+` sources="\[certificate web-rsa certificate web\]" changes=2`) != 1 {
			t.Errorf("no reload logged for the batch of both certificates")
		}
		accepted(t, "the caller after the rotation", &caller)
	}) {
		return
	}

	if !t.Run("zero downtime", func(t *testing.T) {
		reloads, lines := w.reloads(t), d.Count(`msg="service reloaded"`)
		ctx, cancel := context.WithCancel(t.Context())
		st := &loopStats{firstSeen: map[string]time.Time{}}
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { st.loop(ctx, w, roots, caller) })
		}
		start := time.Now()
		for i := 1; i <= zeroDowntimeRotations; i++ {
			ec, rsa := served(t, w, roots, caller, false), served(t, w, roots, caller, true)
			done := d.Count(`msg="service reloaded"`)
			if out, errOut, code := ck(t, "rotate", "-config", cfg, "web", "web-rsa"); code != 0 {
				cancel()
				t.Fatalf("rotation %d: rotate exited %d:\n%s\n%s", i, code, out, errOut)
			}
			// A rotation is over when both new certificates are served and
			// certkeeper has verified it.
			waitServes(t, w, roots, caller, false, tlsFile("web.crt"), ec)
			waitServes(t, w, roots, caller, true, tlsFile("web-rsa.crt"), rsa)
			d.WaitLog(`msg="service reloaded"`, done+1, 60*time.Second)
		}
		time.Sleep(500 * time.Millisecond) // requests across the last reload
		cancel()
		wg.Wait()
		elapsed := time.Since(start)
		st.mu.Lock()
		defer st.mu.Unlock()
		t.Logf("MEASURE %s: %d mTLS requests (each a new connection and handshake) during %d forced rotations in %s; %d failed",
			w.service, st.requests, zeroDowntimeRotations, elapsed.Round(time.Second), st.failures)
		if st.failures > 0 {
			t.Errorf("%d of %d requests failed during rotations; first errors: %v", st.failures, st.requests, st.errs)
		}
		if st.requests < zeroDowntimeRotations*10 {
			t.Errorf("only %d requests: the loop did not really run through the rotations", st.requests)
		}
		if got := w.reloads(t) - reloads; got != zeroDowntimeRotations {
			t.Errorf("%s logged %d reloads for %d rotations of two certificates each, want %d", w.service, got, zeroDowntimeRotations, zeroDowntimeRotations)
		}
		if got := d.Count(`msg="service reloaded"`) - lines; got != zeroDowntimeRotations {
			t.Errorf("certkeeper logged %d reloads, want %d", got, zeroDowntimeRotations)
		}
		reportLatency(t, w.service, d.Logs.String(), st.firstSeen, start)
	}) {
		return
	}

	if !t.Run("broken server config rolls back", func(t *testing.T) {
		w.breakConfig(t)
		fails, reloads := d.Count(`msg="check failed`), w.reloads(t)
		old := cktest.ReadLeaf(t, tlsFile("web.crt"))
		if got := served(t, w, roots, caller, false); got != pki.Serial(old) {
			t.Fatalf("serves %s before the test, files hold %s", got, pki.Serial(old))
		}
		if out, errOut, code := ck(t, "rotate", "-config", cfg, "web"); code != 0 {
			t.Fatalf("rotate exited %d:\n%s\n%s", code, out, errOut)
		}
		d.WaitLog(`msg="check failed`, fails+1, 60*time.Second)
		if got := cktest.ReadLeaf(t, tlsFile("web.crt")); !got.Equal(old) {
			t.Errorf("after the failed check web.crt holds serial %s, want the previous %s (rolled back)", pki.Serial(got), pki.Serial(old))
		}
		if got := served(t, w, roots, caller, false); got != pki.Serial(old) {
			t.Errorf("serves %s after the failed check, want the old %s", got, pki.Serial(old))
		}
		if !w.running() {
			t.Fatalf("%s stopped: the broken config reached it", w.service)
		}
		if got := w.reloads(t); got != reloads {
			t.Errorf("%s was reloaded %d times with a broken config", w.service, got-reloads)
		}
		accepted(t, "the caller while the config is broken", &caller)
		out, _, code := ck(t, "status", "-config", cfg)
		if code != 1 || !regexp.MustCompile(`(?m)^`+w.service+`\s+check_failed\s.*check failed`).MatchString(out) {
			t.Errorf("status (exit %d) does not report the failed check:\n%s", code, out)
		}

		// Fixed: the retry writes the same new files again (no new
		// certificate from Vault), checks, reloads.
		issued := d.Count(`msg="certificate issued and written" cert=web `)
		w.writeConf(t, "")
		waitServes(t, w, roots, caller, false, tlsFile("web.crt"), pki.Serial(old))
		if got := d.Count(`msg="certificate issued and written" cert=web `); got != issued {
			t.Errorf("the retry issued %d new certificates; it must reuse the rolled-back one", got-issued)
		}
		// The server answers with the new certificate a moment before
		// certkeeper's verify has seen both of its certificates.
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _, code := ck(t, "status", "-config", cfg)
			if code == 0 && regexp.MustCompile(`(?m)^`+w.service+`\s+ok\s`).MatchString(out) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("status after the fix (exit %d):\n%s", code, out)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}) {
		return
	}

	if !t.Run("revoked server certificate replaced", func(t *testing.T) {
		// Vault revokes the EC server certificate nginx serves: certkeeper
		// sees it in pki_servers' CRL (revocation_check, 1 minute by
		// default) and replaces it, spread within a minute, like a renewal.
		old := cktest.ReadLeaf(t, tlsFile("web.crt"))
		s.vault.Revoke(t, vaulttest.ScriptServerMount, pki.Serial(old))
		revoked := time.Now()
		d.WaitLog(`msg="the certificate on disk was revoked in vault; replacing it" cert=web serial=`+regexp.QuoteMeta(pki.Serial(old)), 1, 3*time.Minute)
		noticed := time.Since(revoked)
		cktest.WaitFor(t, "web.crt to be replaced", 3*time.Minute, func() bool { return !cktest.ReadLeaf(t, tlsFile("web.crt")).Equal(old) })
		onDisk := time.Since(revoked)
		waitServes(t, w, roots, caller, false, tlsFile("web.crt"), pki.Serial(old))
		t.Logf("MEASURE %s: revoked server certificate: noticed %s, replaced on disk %s, served %s after the revocation in Vault (defaults: revocation_check 1m, spread up to 1m, settle %s)",
			w.service, noticed.Round(100*time.Millisecond), onDisk.Round(100*time.Millisecond), time.Since(revoked).Round(100*time.Millisecond), config.DefaultSettle)
		accepted(t, "the caller with the new server certificate", &caller)
	}) {
		return
	}

	t.Run("revoked client refused after the CRL refresh, and replaced", func(t *testing.T) {
		other := vaultClient(t, s, "other.example.internal")
		accepted(t, "another client of the same CA", &other)
		reloads := d.Count(`msg="service reloaded" service=` + w.service + ` sources="\[trust_bundle clients\]"`)
		// The caller's current certificate, as the caller reads it (it
		// was rotated since the test loaded the first one).
		caller, err := tls.LoadX509KeyPair(filepath.Join(callerDir, "caller.fullchain.pem"), filepath.Join(callerDir, "caller.key"))
		if err != nil {
			t.Fatal(err)
		}
		accepted(t, "the caller's current certificate", &caller)
		leaf, _ := x509.ParseCertificate(caller.Certificate[0])
		s.vault.Revoke(t, vaulttest.ScriptClientMount, pki.Serial(leaf))
		revoked := time.Now()
		// With the shipped setup (auto_rebuild off) the revocation is in
		// Vault's CRL at once; nothing here rebuilds it by hand.
		cktest.WaitFor(t, "the caller to be refused", 3*time.Minute, func() bool {
			resp, body, err := get(&caller)
			ok, _ := w.rejected(resp, body, err)
			return ok
		})
		t.Logf("MEASURE %s: revoked client refused %s after the revocation in Vault (defaults: crl_refresh 1m, settle %s)", w.service, time.Since(revoked).Round(100*time.Millisecond), config.DefaultSettle)
		refused(t, "the revoked caller", &caller)
		accepted(t, "the other client", &other)
		if d.Count(`msg="service reloaded" service=`+w.service+` sources="\[trust_bundle clients\]"`) <= reloads {
			t.Error("no reload logged for the new CRL")
		}
		// The canary is the revoked caller itself: the server refusing it
		// is right, and the CRL stays.
		if d.Count(`msg="a valid client is refused with the new trust files`) != 0 {
			t.Error("the canary rolled back the CRL that revokes it")
		}

		// The caller's certificate on this host is replaced without an
		// operator, and the new one gets in.
		cktest.WaitFor(t, "caller.crt to be replaced", 3*time.Minute, func() bool {
			return !cktest.ReadLeaf(t, filepath.Join(callerDir, "caller.crt")).Equal(leaf)
		})
		t.Logf("MEASURE %s: revoked client certificate on the host replaced on disk %s after the revocation in Vault", w.service, time.Since(revoked).Round(100*time.Millisecond))
		fresh, err := tls.LoadX509KeyPair(filepath.Join(callerDir, "caller.fullchain.pem"), filepath.Join(callerDir, "caller.key"))
		if err != nil {
			t.Fatal(err)
		}
		accepted(t, "the caller's replacement", &fresh)
	})

	if code := d.Stop(); code != 0 {
		t.Errorf("certkeeper exited %d after SIGTERM", code)
	}
}

// request makes one mTLS request on a new connection.
func request(w *webServer, roots *x509.CertPool, cert *tls.Certificate) (*http.Response, string, error) {
	conf := &tls.Config{RootCAs: roots, ServerName: "web1.example.internal"}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(w.url())
	if err != nil {
		return nil, "", err
	}
	return resp, readBody(resp), nil
}

func status(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	return resp.Status
}

// served returns the serial of the EC (or RSA) certificate the server
// presents, chosen by offering only the matching TLS 1.2 cipher suites,
// over a fully verified handshake.
func served(t *testing.T, w *webServer, roots *x509.CertPool, cert tls.Certificate, rsa bool) string {
	t.Helper()
	serial, err := servedSerial(w, roots, cert, rsa)
	if err != nil {
		t.Fatalf("handshake with %s: %v", w.service, err)
	}
	return serial
}

func servedSerial(w *webServer, roots *x509.CertPool, cert tls.Certificate, rsa bool) (string, error) {
	suite := tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
	if rsa {
		suite = tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
	}
	conf := &tls.Config{
		RootCAs: roots, ServerName: "web1.example.internal", Certificates: []tls.Certificate{cert},
		MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite},
	}
	c, err := tls.Dial("tcp", w.addr(), conf)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return pki.Serial(c.ConnectionState().PeerCertificates[0]), nil
}

// waitServes waits until the server presents the certificate in file, and
// that certificate is no longer the one with serial prev.
func waitServes(t *testing.T, w *webServer, roots *x509.CertPool, cert tls.Certificate, rsa bool, file, prev string) {
	t.Helper()
	var got, want string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		want = pki.Serial(cktest.ReadLeaf(t, file))
		got, _ = servedSerial(w, roots, cert, rsa)
		if got == want && want != prev {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s serves %s; files hold %s (previous %s)", w.service, got, want, prev)
}

// loopStats is what the request loops saw.
type loopStats struct {
	mu        sync.Mutex
	requests  int
	failures  int
	errs      []string
	firstSeen map[string]time.Time // serial -> when a request first got it
}

// loop makes mTLS requests, each on a new connection, until ctx ends.
func (st *loopStats) loop(ctx context.Context, w *webServer, roots *x509.CertPool, cert tls.Certificate) {
	conf := &tls.Config{RootCAs: roots, ServerName: "web1.example.internal", Certificates: []tls.Certificate{cert}}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}}
	for ctx.Err() == nil {
		resp, err := c.Get(w.url())
		at := time.Now()
		body := readBody(resp)
		st.mu.Lock()
		st.requests++
		switch {
		case err != nil:
			st.failures++
			st.errs = append(st.errs, at.Format("15:04:05.000 ")+err.Error())
		case resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "hello"):
			st.failures++
			st.errs = append(st.errs, at.Format("15:04:05.000 ")+fmt.Sprintf("%s: %q", resp.Status, body))
		default:
			serial := pki.Serial(resp.TLS.PeerCertificates[0])
			if _, seen := st.firstSeen[serial]; !seen {
				st.firstSeen[serial] = at
			}
		}
		if len(st.errs) > 5 {
			st.errs = st.errs[:5]
		}
		st.mu.Unlock()
	}
}

// reportLatency logs how long each rotation since since took from Vault's
// answer (the agent logs "certificate issued and written" right after
// checking and writing it) to the first request that got the new
// certificate.
func reportLatency(t *testing.T, service, logs string, firstSeen map[string]time.Time, since time.Time) {
	issued := map[string]time.Time{}
	re := regexp.MustCompile(`time=(\S+) level=INFO msg="certificate issued and written" cert=web(?:-rsa)? serial=(\S+)`)
	for _, m := range re.FindAllStringSubmatch(logs, -1) {
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err == nil && at.After(since) {
			issued[m[2]] = at
		}
	}
	var lat []time.Duration
	for serial, seen := range firstSeen {
		if at, ok := issued[serial]; ok && seen.After(at) {
			lat = append(lat, seen.Sub(at))
		}
	}
	if len(lat) == 0 {
		t.Errorf("no rotation could be timed: no served serial matched an issued one")
		return
	}
	slices.Sort(lat)
	t.Logf("MEASURE %s: from certificate written (Vault's answer) to served: min %s, median %s, max %s over %d new certificates (settle window %s)",
		service, lat[0].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat), config.DefaultSettle)
}
