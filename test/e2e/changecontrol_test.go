//go:build integration

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// site is one server of an example (nginx or Apache) provisioned by
// certkeeper from a real Vault set up by setup-pki.sh, and the config the
// daemon runs with.
type site struct {
	t       *testing.T
	s       *stack
	w       *webServer
	cfg     string
	metrics string // the daemon's telemetry address
	roots   *x509.CertPool
}

// newSite renders w's example certkeeper.hcl with subs on top of the
// usual substitutions and extra appended, provisions it with `once` and
// starts the server. CRLs are refreshed every 2s.
func newSite(t *testing.T, s *stack, w *webServer, subs [][2]string, extra string) *site {
	t.Helper()
	st := &site{t: t, s: s, w: w, cfg: filepath.Join(s.dir, "certkeeper.hcl"), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	all := append([][2]string{
		{"https://vault.example.internal:8200", s.vault.Addr},
		{"/etc/certkeeper/role-id", s.roleIDFile},
		{"/etc/certkeeper/secret-id", s.secretIDFile},
		{w.exampleAddr, w.addr()},
		{`crl_refresh = "1m"`, `crl_refresh = "2s"`},
	}, subs...)
	all = append(all, w.subs...)
	if !slices.ContainsFunc(subs, func(s [2]string) bool { return strings.HasPrefix(s[0], "state_dir") }) {
		all = append(all, [2]string{"/var/lib/certkeeper", filepath.Join(s.dir, "state")})
	}
	text := render(t, w.example+"/certkeeper.hcl", all) + fmt.Sprintf("\ntelemetry {\n  listen = %q\n}\n", st.metrics) + extra
	writeFile(t, st.cfg, text)
	if out, errOut, code := ck(t, "once", "-config", st.cfg); code != 0 {
		t.Fatalf("once exited %d:\n%s\n%s", code, out, errOut)
	}
	st.roots = x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(w.tlsDir, "caller.ca.pem"))
	if err != nil || !st.roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("caller CA file: %v", err)
	}
	w.start(t)
	return st
}

// caller is the caller certificate on disk now.
func (st *site) caller() tls.Certificate {
	st.t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(st.w.tlsDir, "caller.fullchain.pem"), filepath.Join(st.w.tlsDir, "caller.key"))
	if err != nil {
		st.t.Fatal(err)
	}
	return c
}

func (st *site) accepted(cert *tls.Certificate) bool {
	resp, body, err := request(st.w, st.roots, cert)
	return err == nil && resp.StatusCode == http.StatusOK && strings.HasPrefix(body, "hello")
}

func (st *site) refused(cert *tls.Certificate) bool {
	resp, body, err := request(st.w, st.roots, cert)
	ok, _ := st.w.rejected(resp, body, err)
	return ok
}

// scrape returns the daemon's metrics.
func (st *site) scrape() []cktest.Sample {
	st.t.Helper()
	resp, err := http.Get("http://" + st.metrics + "/metrics")
	if err != nil {
		st.t.Fatalf("scraping: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return cktest.ParseMetrics(st.t, string(body))
}

// revokeNow revokes serial in the client mount and makes sure the CRL
// lists it at once, whatever the mount's auto_rebuild says.
func revokeNow(t *testing.T, s *stack, serial string) {
	t.Helper()
	s.vault.Revoke(t, vaulttest.ScriptClientMount, serial)
	if crl, err := s.vault.Client.Logical().Read(vaulttest.ScriptClientMount + "/config/crl"); err == nil && crl != nil && crl.Data["auto_rebuild"] == true {
		if _, err := s.vault.Client.Logical().Read(vaulttest.ScriptClientMount + "/crl/rotate"); err != nil {
			t.Fatalf("rotating the CRL: %v", err)
		}
	}
}

func leafSerial(c tls.Certificate) string {
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	return pki.Serial(leaf)
}

// churn is how long, and how often, the CRL changes in the budget test.
const (
	churnFor   = 2 * time.Minute
	churnEvery = 10 * time.Second
	budget     = time.Minute
)

func TestNginxReloadBudget(t *testing.T) {
	need(t, "nginx", "nginx")
	t.Parallel()
	s := newStack(t)
	runBudget(t, s, newNginx(t, s))
}

func TestApacheReloadBudget(t *testing.T) {
	need(t, "apache2", "apache2")
	t.Parallel()
	s := newStack(t)
	runBudget(t, s, newApache(t, s))
}

// runBudget measures what a CRL that changes every 10 seconds for two
// minutes costs the server in reloads, without a reload budget and with
// min_reload_interval = "1m", and how long a client revoked in the middle
// of it still gets in.
func runBudget(t *testing.T, s *stack, w *webServer) {
	st := newSite(t, s, w, nil, "")
	phases := []struct {
		name     string
		interval time.Duration
	}{{"without a budget", 0}, {"with min_reload_interval 1m", budget}}
	var report []string
	for _, ph := range phases {
		cfg := render(t, w.example+"/certkeeper.hcl", nil) // only to prove the example still has the line
		if !strings.Contains(cfg, `timeout  = "30s"`) {
			t.Fatal(`examples no longer have timeout  = "30s" in the service block, where the test adds min_reload_interval`)
		}
		text, _ := os.ReadFile(st.cfg)
		conf := regexp.MustCompile(`(?m)^  min_reload_interval = .*\n`).ReplaceAllString(string(text), "")
		if ph.interval > 0 {
			conf = strings.Replace(conf, `timeout  = "30s"`, `timeout  = "30s"`+"\n  min_reload_interval = \""+ph.interval.String()+"\"", 1)
		}
		writeFile(t, st.cfg, conf)

		d := startDaemon(t, st.cfg)
		d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 60*time.Second)
		time.Sleep(config.DefaultSettle + 3*time.Second) // a startup reconcile settles first
		victim := vaultClient(t, s, "victim.example.internal")
		cktest.WaitFor(t, "the victim to be accepted", 30*time.Second, func() bool { return st.accepted(&victim) })
		serverReloads, ckReloads := w.reloads(t), d.Count(`msg="service reloaded"`)

		start := time.Now()
		var refusedAfter, revokedAt time.Duration
		var wg sync.WaitGroup
		for i := 0; time.Since(start) < churnFor; i++ {
			if i == 1 {
				// Just after the first reload of the churn, which with the
				// budget opens a hold of a whole interval: close to the
				// worst case. Revoke a client that is in, and time how
				// long it still gets in.
				revokeNow(t, s, leafSerial(victim))
				revoked := time.Now()
				revokedAt = revoked.Sub(start)
				wg.Go(func() {
					for time.Since(revoked) < 3*budget {
						if st.refused(&victim) {
							refusedAfter = time.Since(revoked)
							return
						}
						time.Sleep(250 * time.Millisecond)
					}
				})
			} else {
				throwaway := vaultClient(t, s, fmt.Sprintf("churn-%d.example.internal", i))
				revokeNow(t, s, leafSerial(throwaway))
			}
			time.Sleep(time.Until(start.Add(time.Duration(i+1) * churnEvery)))
		}
		// What the churn left waiting is loaded within one interval.
		cktest.WaitFor(t, "the backlog to drain", ph.interval+30*time.Second, func() bool {
			v, ok := cktest.Find(st.scrape(), "certkeeper_service_reload_backlog", "service", w.service)
			return ok && v == 0
		})
		time.Sleep(config.DefaultSettle + 3*time.Second)
		wg.Wait()
		gotServer, gotCK := w.reloads(t)-serverReloads, d.Count(`msg="service reloaded"`)-ckReloads
		bound := 2*time.Second + ph.interval + config.DefaultSettle // crl_refresh + budget + settle
		line := fmt.Sprintf("MEASURE %s %s: a CRL changing every %s for %s: %d reloads (%s's log; certkeeper logged %d); a client revoked %s into it refused after %s (bound: crl_refresh 2s + budget %s + settle %s = %s)",
			w.service, ph.name, churnEvery, churnFor, gotServer, w.service, gotCK, revokedAt.Round(100*time.Millisecond), refusedAfter.Round(100*time.Millisecond), ph.interval, config.DefaultSettle, bound)
		t.Log(line)
		report = append(report, line)
		if refusedAfter == 0 {
			t.Errorf("%s: the revoked client was never refused", ph.name)
		} else if refusedAfter > bound+5*time.Second {
			t.Errorf("%s: the revoked client got in for %s, more than %s (+5s for the polling and Vault)", ph.name, refusedAfter, bound)
		}
		if ph.interval > 0 {
			if gotServer > 3 {
				t.Errorf("%s: %d reloads, want at most 3", ph.name, gotServer)
			}
			if d.Count(`msg="routine changes wait for the reload budget"`) == 0 {
				t.Errorf("%s: no hold was logged", ph.name)
			}
			if v, _ := cktest.Find(st.scrape(), "certkeeper_service_reloads_by_reason_total", "service", w.service, "reason", "trust_refresh", "urgent", "false"); v < 1 {
				t.Errorf("%s: reloads by reason do not count the CRL refreshes: %v", ph.name, v)
			}
		} else if gotServer < int(churnFor/churnEvery)*2/3 {
			t.Errorf("%s: only %d reloads for %d CRL changes: the comparison shows nothing", ph.name, gotServer, churnFor/churnEvery)
		}
		if code := d.Stop(); code != 0 {
			t.Errorf("certkeeper exited %d", code)
		}
	}
	t.Logf("reload budget, %s:\n%s", w.service, strings.Join(report, "\n"))
}

func TestNginxCARotation(t *testing.T) {
	need(t, "nginx", "nginx")
	t.Parallel()
	s := newStack(t)
	runCARotation(t, s, newNginx(t, s))
}

func TestApacheCARotation(t *testing.T) {
	need(t, "apache2", "apache2")
	t.Parallel()
	s := newStack(t)
	runCARotation(t, s, newApache(t, s))
}

// soak is the test's ca_soak: long enough to renew during it, short
// enough to wait for.
const soak = 45 * time.Second

// runCARotation rotates both intermediates of setup-pki.sh (the servers'
// and the clients') in the middle of a run, with clients from the old and
// the new CA making requests all along, and logs when each step happened
// on the host.
func runCARotation(t *testing.T, s *stack, w *webServer) {
	stateDir := filepath.Join(s.dir, "state")
	// A plain hook service beside the server, told of every change of the
	// server's certificates, the clients' bundle and the caller: it keeps
	// each document and the variables it was given.
	hookDir := filepath.Join(s.dir, "hook-runs")
	if err := os.MkdirAll(hookDir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := newSite(t, s, w, [][2]string{
		{`state_dir = "/var/lib/certkeeper"`, fmt.Sprintf("state_dir = %q\nca_soak = %q\nissuer_check = \"2s\"", stateDir, soak.String())},
		{`notify         = ["` + w.service + `"]`, `notify         = ["` + w.service + `", "hooks"]`},
		{`notify      = ["` + w.service + `"]`, `notify      = ["` + w.service + `", "hooks"]`},
		{`ca_file        = "/etc/ssl/certkeeper/caller.ca.pem"`, `ca_file        = "/etc/ssl/certkeeper/caller.ca.pem"` + "\n  notify         = [\"hooks\"]"},
	}, fmt.Sprintf("\nservice \"hooks\" {\n  reload = [\"/bin/sh\", \"-c\", %q, %q]\n}\n", hookScript, hookDir))
	d := startDaemon(t, st.cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 60*time.Second)
	oldServerCA, oldClientCA := issuerCN(t, w, "web.crt"), issuerCN(t, w, "caller.crt")

	tl := &timeline{start: time.Now()}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	loops := &loopSet{}
	oldCaller := st.caller()
	loops.run(ctx, st, "old-CA client", oldCaller)

	// Mid-run: a new intermediate in each mount, made the default at once
	// (the harder case: the soak starts only when hosts see it).
	newServer := rotateIntermediate(t, s, vaulttest.ScriptServerMount, "example.internal server CA 2")
	newClient := rotateIntermediate(t, s, vaulttest.ScriptClientMount, "example.internal client CA 2")
	tl.mark("Vault: new default issuer in pki_servers and pki_clients (intermediate/set-signed, root/replace)")

	// Trust first: the bundle takes the new client CA in and the server
	// is reloaded for it, urgently.
	cktest.WaitFor(t, "the trust bundle to hold the new client CA", 30*time.Second, func() bool {
		return bundleHolds(t, filepath.Join(w.tlsDir, "clients-ca.pem"), newClient)
	})
	d.WaitLog(`msg="service reloaded" service=`+w.service+` .*reason=ca_added urgent=true`, 1, 30*time.Second)
	newCAClient := vaultClient(t, s, "new-ca-client.example.internal")
	if got := leafIssuer(newCAClient); got != newClient.Subject.CommonName {
		t.Fatalf("a client signed now comes from %q, want the new default", got)
	}
	// certkeeper's verify saw the server cert, which did not change; the
	// server's old workers still answer new connections for a moment
	// after the signal. The new CA is loaded once 20 requests in a row
	// get in; from then on every one must.
	ok := 0
	cktest.WaitFor(t, "the reload for the new CA to take", 30*time.Second, func() bool {
		if st.accepted(&newCAClient) {
			ok++
		} else {
			ok = 0
		}
		return ok >= 20
	})
	tl.mark("a client from the new CA gets in (20 requests in a row)")
	loops.run(ctx, st, "new-CA client", newCAClient)

	// During the soak a forced renewal stays with the old issuers.
	ec := served(t, w, st.roots, oldCaller, false)
	if out, errOut, code := ck(t, "rotate", "-config", st.cfg, "web", "caller"); code != 0 {
		t.Fatalf("rotate exited %d:\n%s\n%s", code, out, errOut)
	}
	waitServes(t, w, st.roots, oldCaller, false, filepath.Join(w.tlsDir, "web.crt"), ec)
	tl.mark("forced renewal during the soak served")
	if got := issuerCN(t, w, "web.crt"); got != oldServerCA {
		t.Errorf("a renewal during the soak moved the server certificate to %q, want it from %q", got, oldServerCA)
	}
	cktest.WaitFor(t, "the caller's forced renewal", 30*time.Second, func() bool { return leafSerial(st.caller()) != leafSerial(oldCaller) })
	if got := issuerCN(t, w, "caller.crt"); got != oldClientCA {
		t.Errorf("a renewal during the soak moved the caller to %q, want it from %q", got, oldClientCA)
	}
	if out, _, _ := ck(t, "status", "-config", st.cfg); !strings.Contains(out, "renewals stay with the old issuer until the soak ends") {
		t.Errorf("status during the soak does not say so:\n%s", out)
	}
	if v, _ := cktest.Find(st.scrape(), "certkeeper_certificate_issuer_pinned", "name", "web"); v != 1 {
		t.Errorf("certkeeper_certificate_issuer_pinned{name=web} = %v during the soak, want 1", v)
	}
	if v, ok := cktest.Find(st.scrape(), "certkeeper_trust_bundle_ca", "name", "clients", "subject", newClient.Subject.CommonName, "serial", pki.Serial(newClient)); !ok || v != 1 {
		t.Errorf("certkeeper_trust_bundle_ca does not show the new client CA in the bundle")
	}

	// After the soak, the leaves move, spread, without a request failing.
	cktest.WaitFor(t, "the server certificate to move to the new issuer", soak+90*time.Second, func() bool {
		return issuerCN(t, w, "web.crt") == newServer.Subject.CommonName && issuerCN(t, w, "web-rsa.crt") == newServer.Subject.CommonName
	})
	cktest.WaitFor(t, "nginx/Apache to serve it", 30*time.Second, func() bool {
		serial, err := servedSerial(w, st.roots, newCAClient, false)
		return err == nil && serial == pki.Serial(cktest.ReadLeaf(t, filepath.Join(w.tlsDir, "web.crt")))
	})
	tl.mark("server leaves from the new issuer, served")
	cktest.WaitFor(t, "the caller to move to the new issuer", soak+90*time.Second, func() bool {
		return issuerCN(t, w, "caller.crt") == newClient.Subject.CommonName
	})
	moved := st.caller()
	loops.run(ctx, st, "caller after its move", moved)
	time.Sleep(3 * time.Second)
	cancel()
	loops.wait()

	// When each host-side step happened, from certkeeper's log.
	logs := d.Logs.String()
	for _, ev := range []struct{ what, re string }{
		{"certkeeper saw the new default issuer of pki_servers", `msg="the mount has a new default issuer" mount=pki_servers`},
		{"certkeeper saw the new default issuer of pki_clients", `msg="the mount has a new default issuer" mount=pki_clients`},
		{"trust bundle written with the new client CA", `msg="trust bundle written" bundle=clients .*reason=ca_added`},
		{w.service + " reloaded for the new CA (urgent)", `msg="service reloaded" service=` + w.service + ` .*reason=ca_added`},
		{"renewal pinned to the old issuer", `msg="renewing from the issuer the certificate came from`},
		{"web moved to the new issuer", `msg="certificate issued and written" cert=web .*reason="moving to the mount's new default issuer`},
		{"web-rsa moved to the new issuer", `msg="certificate issued and written" cert=web-rsa .*reason="moving to the mount's new default issuer`},
		{"caller moved to the new issuer", `msg="certificate issued and written" cert=caller .*reason="moving to the mount's new default issuer`},
		{w.service + " reloaded for the moves", `msg="service reloaded" service=` + w.service + ` .*reason=ca_rotation`},
	} {
		if at, ok := firstLogTime(logs, ev.re); ok {
			tl.at(at, ev.what)
		} else {
			t.Errorf("the log has no line for: %s (%s)", ev.what, ev.re)
		}
	}
	seenServers, _ := firstLogTime(logs, `msg="the mount has a new default issuer" mount=pki_servers`)
	if movedAt, ok := firstLogTime(logs, `msg="certificate issued and written" cert=web .*moving to the mount's new default issuer`); ok && movedAt.Before(seenServers.Add(soak)) {
		t.Errorf("web moved at %s, before the soak ended (%s after %s)", movedAt, soak, seenServers)
	}
	trusted, _ := firstLogTime(logs, `msg="trust bundle written" bundle=clients .*reason=ca_added`)
	if movedAt, ok := firstLogTime(logs, `msg="certificate issued and written" cert=caller .*moving to the mount's new default issuer`); ok && movedAt.Before(trusted.Add(soak)) {
		t.Errorf("caller moved at %s, before the soak ended (%s after the bundle took the CA at %s)", movedAt, soak, trusted)
	}
	checkHookRuns(t, tl, hookDir, hookExpect{
		bundleCA: newClient, serverCA: newServer.Subject.CommonName, clientCA: newClient.Subject.CommonName,
		web: pki.Serial(cktest.ReadLeaf(t, filepath.Join(w.tlsDir, "web.crt"))), caller: leafSerial(moved),
	})
	t.Logf("MEASURE %s CA rotation timeline (ca_soak %s, issuer_check 2s, crl_refresh 2s):\n%s", w.service, soak, tl)
	t.Logf("MEASURE %s CA rotation: %s", w.service, loops.summary())
	if f := loops.failures(); f > 0 {
		t.Errorf("%d requests failed during the rotation: %v", f, loops.errors())
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("certkeeper exited %d", code)
	}
}

// hookScript is the hook service's reload command (run by sh -c, the
// directory as $0): it keeps the document of each run and the variables
// it was given, named by the time it ran.
const hookScript = `n=$(date +%s%N); cp "$CERTKEEPER_CHANGES" "$0/$n.json"; ` +
	`printf '%s\n' "$CERTKEEPER_SERVICE" "$CERTKEEPER_REASONS" "$CERTKEEPER_URGENT" "$CERTKEEPER_CERTIFICATES" "$CERTKEEPER_TRUST_BUNDLES" "$RENEWED_DOMAINS" >"$0/$n.env"`

// hookExpect is what the hook must have been told during a CA rotation.
type hookExpect struct {
	bundleCA           *x509.Certificate // the CA the clients' bundle took in
	serverCA, clientCA string            // the new issuers' names
	web, caller        string            // the serials they moved to
}

// checkHookRuns reads what the hook service was told in each run and
// checks that it heard of every step of the rotation as it happened: the
// new CA in the bundle (urgent), the forced renewal during the soak, and
// each leaf's move to its new issuer, with serials, names and files, and
// never a key. Each run goes on the timeline.
func checkHookRuns(t *testing.T, tl *timeline, dir string, want hookExpect) {
	t.Helper()
	runs, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(runs) == 0 {
		t.Fatal("the hook service never ran")
	}
	found := map[string]bool{}
	for _, path := range runs {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		env, _ := os.ReadFile(strings.TrimSuffix(path, ".json") + ".env")
		if strings.Contains(string(data)+string(env), "PRIVATE KEY") {
			t.Errorf("%s: a hook was given key material", path)
		}
		var doc notice.Document
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, data)
		}
		vars := strings.Split(string(env), "\n")
		if doc.Version != notice.DocumentVersion || doc.Service != "hooks" || len(vars) < 6 || vars[0] != "hooks" {
			t.Errorf("%s: document version %d service %q, variables %q", path, doc.Version, doc.Service, vars)
			continue
		}
		ns, _ := strconv.ParseInt(strings.TrimSuffix(filepath.Base(path), ".json"), 10, 64)
		var told []string
		for _, n := range doc.Changes {
			told = append(told, fmt.Sprintf("%s %s (%s)", n.Kind, n.Name, n.Reason))
			if !strings.Contains(" "+vars[1]+" ", " "+string(n.Reason)+" ") {
				t.Errorf("%s: CERTKEEPER_REASONS=%q lacks %s", path, vars[1], n.Reason)
			}
			switch {
			case n.Kind == notice.TrustBundle && n.Name == "clients" &&
				slices.ContainsFunc(n.Added, func(ca notice.CA) bool { return ca.Serial == pki.Serial(want.bundleCA) }):
				if n.Reason != notice.CAAdded || !n.Urgent || vars[2] != "1" || len(n.Added) != 1 {
					t.Errorf("%s: the bundle took the new CA in as %s, urgent %v (CERTKEEPER_URGENT=%s), added %v; want ca_added, urgent, that CA alone", path, n.Reason, n.Urgent, vars[2], n.Added)
				}
				found["ca_added"] = true
			case n.Kind == notice.Certificate && n.Reason == notice.Rotation && n.Name == "web":
				found["rotation"] = true
			case n.Kind == notice.Certificate && n.Reason == notice.CAMove && (n.Name == "web" || n.Name == "caller"):
				issuer, serial := want.serverCA, want.web
				if n.Name == "caller" {
					issuer, serial = want.clientCA, want.caller
				}
				if n.Issuer != issuer || n.Serial != serial || n.PreviousSerial == "" || n.Urgent || n.Outputs["cert_file"] == "" || len(n.Names) == 0 {
					t.Errorf("%s: %s's move: issuer %q serial %s (previous %q), urgent %v, outputs %v, names %v; want from %q, serial %s",
						path, n.Name, n.Issuer, n.Serial, n.PreviousSerial, n.Urgent, n.Outputs, n.Names, issuer, serial)
				}
				if !strings.Contains(" "+vars[5]+" ", " "+n.Names[0]+" ") {
					t.Errorf("%s: RENEWED_DOMAINS=%q lacks %s", path, vars[5], n.Names[0])
				}
				found["ca_rotation "+n.Name] = true
			}
		}
		if at := time.Unix(0, ns); at.After(tl.start) { // not the runs of the first once
			tl.at(at, "hook ran, told: "+strings.Join(told, ", "))
		}
	}
	for _, step := range []string{"ca_added", "rotation", "ca_rotation web", "ca_rotation caller"} {
		if !found[step] {
			t.Errorf("the hook was never told of %s", step)
		}
	}
}

// rotateIntermediate makes a new intermediate for mount, signed by the
// root of setup-pki.sh, imports it and makes it the mount's default, as
// an operator would, and returns its certificate.
func rotateIntermediate(t *testing.T, s *stack, mount, cn string) *x509.Certificate {
	t.Helper()
	l := s.vault.Client.Logical()
	gen, err := l.Write(mount+"/intermediate/generate/internal", map[string]any{"common_name": cn, "key_type": "ec", "key_bits": 256})
	if err != nil {
		t.Fatalf("generating %s: %v", cn, err)
	}
	signed, err := l.Write(vaulttest.ScriptRootMount+"/root/sign-intermediate", map[string]any{
		"csr": gen.Data["csr"], "format": "pem", "ttl": "8760h", "use_csr_values": true,
	})
	if err != nil {
		t.Fatalf("signing %s: %v", cn, err)
	}
	rootPEM, err := l.Read(vaulttest.ScriptRootMount + "/issuer/default")
	if err != nil {
		t.Fatal(err)
	}
	bundle := signed.Data["certificate"].(string) + "\n" + rootPEM.Data["certificate"].(string)
	imported, err := l.Write(mount+"/intermediate/set-signed", map[string]any{"certificate": bundle})
	if err != nil {
		t.Fatalf("importing %s: %v", cn, err)
	}
	var id string
	for issuer, key := range imported.Data["mapping"].(map[string]any) {
		if key != "" {
			id = issuer
		}
	}
	if _, err := l.Write(mount+"/root/replace", map[string]any{"default": id}); err != nil {
		t.Fatalf("making %s the default of %s: %v", cn, mount, err)
	}
	block, _ := pem.Decode([]byte(signed.Data["certificate"].(string)))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func issuerCN(t *testing.T, w *webServer, file string) string {
	t.Helper()
	return cktest.ReadLeaf(t, filepath.Join(w.tlsDir, file)).Issuer.CommonName
}

func leafIssuer(c tls.Certificate) string {
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	return leaf.Issuer.CommonName
}

func bundleHolds(t *testing.T, path string, ca *x509.Certificate) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	certs, err := pki.ParseCertificates(data)
	return err == nil && slices.ContainsFunc(certs, ca.Equal)
}

// logTime matches the time of a log line.
var logTime = regexp.MustCompile(`(?m)^time=(\S+) .*`)

// firstLogTime is when the first log line matching re was written.
func firstLogTime(logs, re string) (time.Time, bool) {
	lineRe := regexp.MustCompile(re)
	for _, line := range strings.Split(logs, "\n") {
		if !lineRe.MatchString(line) {
			continue
		}
		if m := logTime.FindStringSubmatch(line); m != nil {
			if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
				return at, true
			}
		}
	}
	return time.Time{}, false
}

// timeline keeps the steps of a run, as offsets from its start.
type timeline struct {
	start  time.Time
	events []timelineEvent
}

type timelineEvent struct {
	at   time.Time
	what string
}

func (tl *timeline) mark(what string) { tl.at(time.Now(), what) }
func (tl *timeline) at(at time.Time, what string) {
	tl.events = append(tl.events, timelineEvent{at, what})
}

func (tl *timeline) String() string {
	slices.SortStableFunc(tl.events, func(a, b timelineEvent) int { return a.at.Compare(b.at) })
	var b strings.Builder
	for _, e := range tl.events {
		fmt.Fprintf(&b, "  +%6.1fs  %s\n", e.at.Sub(tl.start).Seconds(), e.what)
	}
	return b.String()
}

// loopSet runs request loops, each with its client certificate, on new
// connections, until ctx ends.
type loopSet struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	stats []*namedLoop
}

type namedLoop struct {
	name string
	st   *loopStats
}

func (l *loopSet) run(ctx context.Context, site *site, name string, cert tls.Certificate) {
	nl := &namedLoop{name: name, st: &loopStats{firstSeen: map[string]time.Time{}}}
	l.mu.Lock()
	l.stats = append(l.stats, nl)
	l.mu.Unlock()
	l.wg.Go(func() { nl.st.loop(ctx, site.w, site.roots, cert) })
}

func (l *loopSet) wait() { l.wg.Wait() }

func (l *loopSet) summary() string {
	var parts []string
	for _, nl := range l.stats {
		nl.st.mu.Lock()
		parts = append(parts, fmt.Sprintf("%s: %d requests, %d failed", nl.name, nl.st.requests, nl.st.failures))
		nl.st.mu.Unlock()
	}
	return strings.Join(parts, "; ")
}

func (l *loopSet) failures() int {
	n := 0
	for _, nl := range l.stats {
		nl.st.mu.Lock()
		n += nl.st.failures
		nl.st.mu.Unlock()
	}
	return n
}

func (l *loopSet) errors() []string {
	var out []string
	for _, nl := range l.stats {
		nl.st.mu.Lock()
		for _, e := range nl.st.errs {
			out = append(out, nl.name+": "+e)
		}
		nl.st.mu.Unlock()
	}
	return out
}
