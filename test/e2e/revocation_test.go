//go:build integration

package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/faultproxy"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

func TestNginxCanary(t *testing.T) {
	need(t, "nginx", "nginx")
	s := newStack(t)
	runCanary(t, s, newNginx(t, s))
}

func TestApacheCanary(t *testing.T) {
	need(t, "apache2", "apache2")
	s := newStack(t)
	runCanary(t, s, newApache(t, s))
}

func TestNginxRevokeSuperseded(t *testing.T) {
	need(t, "nginx", "nginx")
	s := newStack(t)
	runSuperseded(t, s, newNginx(t, s))
}

func TestApacheRevokeSuperseded(t *testing.T) {
	need(t, "apache2", "apache2")
	s := newStack(t)
	runSuperseded(t, s, newApache(t, s))
}

// exampleConfig renders the server's example certkeeper.hcl for this
// stack, with extra substitutions applied first, talking to Vault at
// vaultAddr.
func exampleConfig(t *testing.T, s *stack, w *webServer, vaultAddr string, extra ...[2]string) string {
	t.Helper()
	subs := append(append(extra,
		[2]string{"/var/lib/certkeeper", filepath.Join(s.dir, "state")},
		[2]string{"https://vault.example.internal:8200", vaultAddr},
		[2]string{"/etc/certkeeper/role-id", s.roleIDFile},
		[2]string{"/etc/certkeeper/secret-id", s.secretIDFile},
		[2]string{w.exampleAddr, w.addr()},
	), w.subs...)
	cfg := filepath.Join(s.dir, "certkeeper.hcl")
	writeFile(t, cfg, render(t, w.example+"/certkeeper.hcl", subs))
	return cfg
}

// startExample provisions with once, starts the server and the daemon.
func startExample(t *testing.T, w *webServer, cfg string) *cktest.Daemon {
	t.Helper()
	if out, errOut, code := ck(t, "once", "-config", cfg); code != 0 {
		t.Fatalf("once exited %d:\n%s\n%s", code, out, errOut)
	}
	w.start(t)
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 60*time.Second)
	return d
}

func callerPair(t *testing.T, w *webServer) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caller, err := tls.LoadX509KeyPair(filepath.Join(w.tlsDir, "caller.fullchain.pem"), filepath.Join(w.tlsDir, "caller.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(w.tlsDir, "caller.ca.pem"))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("caller CA file: %v", err)
	}
	return caller, roots
}

func mustAccept(t *testing.T, w *webServer, roots *x509.CertPool, who string, cert *tls.Certificate) {
	t.Helper()
	resp, body, err := request(w, roots, cert)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "hello") {
		t.Fatalf("%s: want 200 hello, got %v %q %v", who, status(resp), body, err)
	}
}

// runCanary: Vault (through a proxy standing in for a broken one) serves
// a CRL for the client CA, with a new revocation, that is signed right,
// current and parses, so
// certkeeper's checks and the server's config test pass it, but whose
// Issuing Distribution Point says it covers CA certificates only: the
// server then has no CRL for client certificates and refuses every one
// ("different CRL scope"). The canary (verify's client_certificate, the
// caller) is refused, the trust files are rolled back, the server is
// reloaded onto them and keeps admitting valid clients, and status says
// clients_refused until Vault serves the good CRL again.
func runCanary(t *testing.T, s *stack, w *webServer) {
	proxy, err := faultproxy.New(s.vault.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	cfg := exampleConfig(t, s, w, proxy.Addr)
	d := startExample(t, w, cfg)
	caller, roots := callerPair(t, w)
	mustAccept(t, w, roots, "the caller", &caller)
	crlFile := filepath.Join(w.tlsDir, "clients.crl.pem")
	good, err := os.ReadFile(crlFile)
	if err != nil {
		t.Fatal(err)
	}

	sec, err := s.vault.Client.Logical().WriteWithContext(t.Context(), vaulttest.ScriptClientMount+"/issuer/default/sign-revocation-list", map[string]any{
		"crl_number": 1000000, "next_update": "72h", "format": "pem",
		// A new revocation, so the CRL is news certkeeper passes on.
		"revoked_certs": []map[string]any{{"serial_number": "0a:0b:0c:0d", "revocation_time": time.Now().Unix()}},
		// IssuingDistributionPoint { onlyContainsCACerts TRUE }, critical
		"extensions": []map[string]any{{"id": "2.5.29.28", "critical": true, "value": "MAOCAf8="}},
	})
	if err != nil {
		t.Fatalf("signing the out-of-scope CRL: %v", err)
	}
	bad := []byte(sec.Data["crl"].(string) + "\n")
	proxy.SetHook(func(ex *faultproxy.Exchange, forward func() error) error {
		if ex.Method == http.MethodGet && strings.HasPrefix(ex.Path, "/v1/"+vaulttest.ScriptClientMount+"/issuer/") && strings.HasSuffix(ex.Path, "/crl/pem") {
			ex.Status, ex.RespHeader, ex.RespBody = http.StatusOK, http.Header{"Content-Type": {"application/pkix-crl"}}, bad
			return nil
		}
		return forward()
	})
	start := time.Now()
	d.WaitLog(`msg="a valid client is refused with the new trust files; rolled them back and reloading onto the previous ones" service=`+w.service, 1, 3*time.Minute)
	t.Logf("MEASURE %s: refused canary rolled back %s after Vault began serving the bad CRL (crl_refresh 1m)", w.service, time.Since(start).Round(100*time.Millisecond))
	// The reload onto the previous files is under way when that is
	// logged; the next answers are the previous files'.
	cktest.WaitFor(t, "the rolled-back CRL to be admitting clients", 30*time.Second, func() bool {
		resp, body, err := request(w, roots, &caller)
		return err == nil && resp.StatusCode == http.StatusOK && strings.HasPrefix(body, "hello")
	})
	if got, _ := os.ReadFile(crlFile); !bytes.Equal(got, good) {
		t.Errorf("the CRL file was not rolled back")
	}
	other := vaultClient(t, s, "other.example.internal")
	mustAccept(t, w, roots, "the caller after the rollback", &caller)
	mustAccept(t, w, roots, "another valid client after the rollback", &other)
	out, _, code := ck(t, "status", "-config", cfg)
	if code != 1 || !regexp.MustCompile(`(?m)^`+w.service+`\s+clients_refused\s`).MatchString(out) {
		t.Errorf("status (exit %d) does not say clients_refused:\n%s", code, out)
	}

	// Vault serves the good CRL again: the retry finds it on disk, and the
	// service is ok again.
	proxy.SetHook(nil)
	cktest.WaitFor(t, "status ok again", 3*time.Minute, func() bool {
		out, _, code := ck(t, "status", "-config", cfg)
		return code == 0 && regexp.MustCompile(`(?m)^`+w.service+`\s+ok\s`).MatchString(out)
	})
	mustAccept(t, w, roots, "the caller at the end", &caller)
	if code := d.Stop(); code != 0 {
		t.Errorf("certkeeper exited %d after SIGTERM", code)
	}
}

// runSuperseded: with revoke_superseded on the EC server certificate and
// the policy `certkeeper policy` prints, a rotation puts the replaced
// serial on Vault's CRL once the server serves the new one and the grace
// period passed; while the new certificate fails the server's check
// (rolled back) or its verify (the server keeps the old one), the old
// serial stays off the CRL, and it goes on once that is fixed.
func runSuperseded(t *testing.T, s *stack, w *webServer) {
	const grace = 2 * time.Second
	notify := `  notify         = ["` + w.service + `"]`
	cfg := exampleConfig(t, s, w, s.vault.Addr, [2]string{
		"  fullchain_file = \"/etc/ssl/certkeeper/web.fullchain.pem\"\n" + notify,
		"  fullchain_file = \"/etc/ssl/certkeeper/web.fullchain.pem\"\n" + notify + "\n  revoke_superseded = true\n  revoke_grace      = \"" + grace.String() + "\"",
	})
	policy, errOut, code := ck(t, "policy", "-config", cfg)
	if code != 0 || !strings.Contains(policy, `path "`+vaulttest.ScriptServerMount+`/revoke-with-key"`) || strings.Contains(policy, `/revoke"`) {
		t.Fatalf("policy (exit %d):\n%s\n%s", code, policy, errOut)
	}
	if err := s.vault.Client.Sys().PutPolicyWithContext(t.Context(), "certkeeper-web-host", policy); err != nil {
		t.Fatal(err)
	}
	d := startExample(t, w, cfg)
	caller, roots := callerPair(t, w)
	webFile := filepath.Join(w.tlsDir, "web.crt")
	rotate := func() {
		t.Helper()
		if out, errOut, code := ck(t, "rotate", "-config", cfg, "web"); code != 0 {
			t.Fatalf("rotate exited %d:\n%s\n%s", code, out, errOut)
		}
	}
	revokedLog := func(c *x509.Certificate) string {
		return `msg="revoked the replaced certificate in vault" cert=web serial=` + regexp.QuoteMeta(pki.Serial(c))
	}

	// A rotation that succeeds.
	first := cktest.ReadLeaf(t, webFile)
	rotate()
	start := time.Now()
	waitServes(t, w, roots, caller, false, webFile, pki.Serial(first))
	d.WaitLog(revokedLog(first), 1, 60*time.Second)
	t.Logf("MEASURE %s: replaced certificate revoked %s after the rotation was asked (grace %s)", w.service, time.Since(start).Round(100*time.Millisecond), grace)
	second := cktest.ReadLeaf(t, webFile)
	if crl := s.vault.CRL(t, vaulttest.ScriptServerMount); !vaulttest.Lists(crl, first) || vaulttest.Lists(crl, second) {
		t.Fatalf("after a rotation: replaced serial on the CRL %v (want true), served one %v (want false)", vaulttest.Lists(crl, first), vaulttest.Lists(crl, second))
	}

	// The new certificate fails the server's check: rolled back, and the
	// one still served is not revoked.
	w.breakConfig(t)
	fails := d.Count(`msg="check failed`)
	rotate()
	d.WaitLog(`msg="check failed`, fails+1, 60*time.Second)
	time.Sleep(3 * grace)
	if vaulttest.Lists(s.vault.CRL(t, vaulttest.ScriptServerMount), second) || d.Count(revokedLog(second)) != 0 {
		t.Fatal("the certificate in service was revoked although its successor failed the check")
	}
	if got := served(t, w, roots, caller, false); got != pki.Serial(second) {
		t.Fatalf("serves %s, want %s", got, pki.Serial(second))
	}
	w.writeConf(t, "")
	waitServes(t, w, roots, caller, false, webFile, pki.Serial(second))
	d.WaitLog(revokedLog(second), 1, 60*time.Second)
	third := cktest.ReadLeaf(t, webFile)
	if crl := s.vault.CRL(t, vaulttest.ScriptServerMount); !vaulttest.Lists(crl, second) || vaulttest.Lists(crl, third) {
		t.Fatalf("after the fix: replaced serial on the CRL %v, served one %v", vaulttest.Lists(crl, second), vaulttest.Lists(crl, third))
	}

	// The server is reloaded but keeps serving the old certificate (the
	// signal goes to a process that ignores it): verify fails, and the
	// old certificate, still served, is not revoked.
	decoy := exec.Command("sh", "-c", `trap "" HUP USR1; exec sleep 600`)
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { decoy.Process.Signal(syscall.SIGKILL); decoy.Wait() })
	time.Sleep(200 * time.Millisecond) // the trap is set before exec
	realPID := strconv.Itoa(w.cmd.Process.Pid)
	writeFile(t, w.pidFile, strconv.Itoa(decoy.Process.Pid)+"\n")
	notServed := d.Count(`written but not served`)
	rotate()
	d.WaitLog(`written but not served`, notServed+1, 90*time.Second)
	time.Sleep(3 * grace)
	if vaulttest.Lists(s.vault.CRL(t, vaulttest.ScriptServerMount), third) || d.Count(revokedLog(third)) != 0 {
		t.Fatal("the certificate in service was revoked although the server never served its successor")
	}
	if got := served(t, w, roots, caller, false); got != pki.Serial(third) {
		t.Fatalf("serves %s, want %s (the decoy got the signal)", got, pki.Serial(third))
	}
	writeFile(t, w.pidFile, realPID+"\n")
	waitServes(t, w, roots, caller, false, webFile, pki.Serial(third))
	d.WaitLog(revokedLog(third), 1, 90*time.Second)
	fourth := cktest.ReadLeaf(t, webFile)
	if crl := s.vault.CRL(t, vaulttest.ScriptServerMount); !vaulttest.Lists(crl, third) || vaulttest.Lists(crl, fourth) {
		t.Fatalf("once served: replaced serial on the CRL %v, served one %v", vaulttest.Lists(crl, third), vaulttest.Lists(crl, fourth))
	}
	if records, _ := filepath.Glob(filepath.Join(s.dir, "state", "superseded", "*.json")); len(records) != 0 {
		t.Errorf("records left after every revocation: %v", records)
	}
	mustAccept(t, w, roots, "the caller at the end", &caller)
	if code := d.Stop(); code != 0 {
		t.Errorf("certkeeper exited %d after SIGTERM", code)
	}
}
