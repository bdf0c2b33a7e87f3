//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// clientPair is a client certificate and key on disk, as Prometheus reads
// them.
type clientPair struct {
	cert, key string
	serial    string
}

// vaultClient issues a client certificate for cn from the test Vault.
func vaultClient(t *testing.T, e *env, cn string) clientPair {
	t.Helper()
	sec, err := e.vault.Client.Logical().Write("pki_int/issue/"+vaulttest.RoleEC, map[string]any{"common_name": cn, "ttl": "1h"})
	if err != nil {
		t.Fatalf("issuing %s: %v", cn, err)
	}
	dir := filepath.Join(e.dir, "clients")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := clientPair{cert: filepath.Join(dir, cn+".crt"), key: filepath.Join(dir, cn+".key"), serial: sec.Data["serial_number"].(string)}
	writeTestFile(t, p.cert, sec.Data["certificate"].(string)+"\n"+sec.Data["issuing_ca"].(string)+"\n")
	writeTestFile(t, p.key, sec.Data["private_key"].(string)+"\n")
	return p
}

// foreignClient is a client certificate from a CA that has nothing to do
// with the test Vault.
func foreignClient(t *testing.T, dir, cn string) clientPair {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "someone else's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	p := clientPair{cert: filepath.Join(dir, "foreign.crt"), key: filepath.Join(dir, "foreign.key")}
	writeTestFile(t, p.cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeTestFile(t, p.key, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	return p
}

func writeTestFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial connects as client and returns the serial of the
// certificate the endpoint presents.
func servedSerial(t *testing.T, addr, rootFile string, client clientPair) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(client.cert, client.key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	rootPEM, _ := os.ReadFile(rootFile)
	roots.AppendCertsFromPEM(rootPEM)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("handshake with the endpoint: %v", err)
	}
	defer conn.Close()
	return serialOf(conn.ConnectionState().PeerCertificates[0])
}

// promTarget is a target as Prometheus' /api/v1/targets shows it.
type promTarget struct {
	Labels    map[string]string `json:"labels"`
	ScrapeURL string            `json:"scrapeUrl"`
	LastError string            `json:"lastError"`
	Health    string            `json:"health"`
}

func (p *promServer) targets() []promTarget {
	p.t.Helper()
	_, body := httpGet(p.t, "http://"+p.addr+"/api/v1/targets?state=active")
	var resp struct {
		Data struct {
			ActiveTargets []promTarget `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		p.t.Fatalf("targets: %v\n%s", err, body)
	}
	return resp.Data.ActiveTargets
}

// TestPrometheusScrapesOverMTLS: the real Prometheus scrapes the endpoint
// over HTTPS with a client certificate the real Vault issued, while the
// endpoint serves a certificate certkeeper itself keeps and verifies
// clients against a trust bundle it keeps (basic auth on top, from an
// exporter-toolkit web configuration). Scrapes without a client
// certificate, with a foreign one, with one of another name or without
// the password are refused. A rotation of the endpoint's own certificate
// changes the served serial with no restart while every scrape succeeds;
// revoking Prometheus's certificate in Vault locks it out at the bundle's
// next refresh.
func TestPrometheusScrapesOverMTLS(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	addr := freeAddr(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(e.dir, "web.yml")
	writeTestFile(t, webConfig, "basic_auth_users:\n  prometheus: "+string(hash)+"\n")
	cfg := e.writeConfigWith(fmt.Sprintf(`
trust_bundle "scrapers" {
  mounts      = ["pki_int", "pki"]
  ca_file     = "%[1]s/scrapers-ca.pem"
  crl_file    = "%[1]s/scrapers-crl.pem"
  crl_refresh = "2s"
}

telemetry {
  listen                  = %[2]q
  tls_certificate         = "metrics"
  tls_client_trust_bundle = "scrapers"
  tls_client_names        = ["prometheus.example.internal"]
  web_config_file         = %[3]q
}
`, e.dir, addr, webConfig), e.cert("metrics", vaulttest.RoleEC), e.cert("web", vaulttest.RoleEC))
	d := metricsDaemon(t, cfg, addr, "metrics", "web")
	waitFor(t, "the trust bundle", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(e.dir, "scrapers-crl.pem"))
		return err == nil
	})

	rootFile := filepath.Join(e.dir, "vault-root.pem")
	writeTestFile(t, rootFile, e.pki.RootPEM)
	prom := vaultClient(t, e, "prometheus.example.internal")
	other := vaultClient(t, e, "backup.example.internal")
	foreign := foreignClient(t, e.dir, "prometheus.example.internal")
	job := func(name string, client *clientPair, password bool) string {
		s := fmt.Sprintf("  - job_name: %s\n    scheme: https\n    tls_config:\n      ca_file: %s\n", name, rootFile)
		if client != nil {
			s += fmt.Sprintf("      cert_file: %s\n      key_file: %s\n", client.cert, client.key)
		}
		if password {
			s += "    basic_auth:\n      username: prometheus\n      password: scrape-secret\n"
		}
		return s + fmt.Sprintf("    static_configs:\n      - targets: [%q]\n", addr)
	}
	p := startPrometheusWith(t, job("certkeeper", &prom, true)+job("no-client-cert", nil, true)+
		job("foreign-client-cert", &foreign, true)+job("other-client-name", &other, true)+job("no-password", &prom, false))

	p.waitValue(`up{job="certkeeper"}`, 1, 60*time.Second)
	for _, refused := range []string{"no-client-cert", "foreign-client-cert", "other-client-name", "no-password"} {
		p.waitValue(`up{job="`+refused+`"}`, 0, 30*time.Second)
	}
	_, raw := httpGet(t, "http://"+p.addr+"/api/v1/targets?state=active&scrapePool=certkeeper")
	t.Logf("GET /api/v1/targets?scrapePool=certkeeper:\n%s", raw)
	for _, tg := range p.targets() {
		t.Logf("prometheus target %-20s %s health=%s lastError=%q", tg.Labels["job"], tg.ScrapeURL, tg.Health, tg.LastError)
		if tg.Labels["job"] != "certkeeper" && tg.LastError == "" {
			t.Errorf("job %s: refused, but Prometheus reports no error", tg.Labels["job"])
		}
	}
	metricsCert := cktest.ReadLeaf(t, filepath.Join(e.dir, "metrics.crt"))
	p.waitValue(`certkeeper_certificate_not_after_timestamp_seconds{job="certkeeper",name="metrics"}`, unix(metricsCert.NotAfter), 30*time.Second)

	// A rotation of the endpoint's own certificate, while Prometheus
	// scrapes every second.
	before := servedSerial(t, addr, rootFile, prom)
	if before != serialOf(metricsCert) {
		t.Fatalf("the endpoint serves %s, not the certificate on disk (%s)", before, serialOf(metricsCert))
	}
	rotateStart := time.Now()
	if out, errOut, code := cktest.Run(t, certkeeperBin, cleanEnv(), "rotate", "-config", cfg, "metrics"); code != 0 {
		t.Fatalf("rotate exited %d:\n%s\n%s", code, out, errOut)
	}
	d.WaitLog(`certificate issued and written.*cert=metrics `, 2, 60*time.Second)
	after := servedSerial(t, addr, rootFile, prom)
	rotated := cktest.ReadLeaf(t, filepath.Join(e.dir, "metrics.crt"))
	if after == before || after != serialOf(rotated) {
		t.Fatalf("served serial %s after rotation; before %s, on disk now %s", after, before, serialOf(rotated))
	}
	select {
	case <-d.Done():
		t.Fatal("certkeeper exited during the rotation")
	default:
	}
	// Prometheus sees the new serial through its mTLS scrape, and no
	// scrape since before the rotation failed.
	p.waitValue(`count(certkeeper_certificate_info{job="certkeeper",name="metrics",serial=`+strconv.Quote(after)+`})`, 1, 30*time.Second)
	window := func() string { return strconv.Itoa(int(time.Since(rotateStart).Seconds())+3) + "s" }
	waitFor(t, "scrapes on both sides of the rotation", 30*time.Second, func() bool {
		r := p.query(`count_over_time(up{job="certkeeper"}[` + window() + `])`)
		return len(r) == 1 && r[0].float(t) >= 6
	})
	p.waitValue(`min_over_time(up{job="certkeeper"}[`+window()+`])`, 1, 5*time.Second)
	t.Logf("served serial %s before the rotation, %s after; up{job=\"certkeeper\"} = 1 in every scrape of the last %s", before, after, window())

	// Prometheus's own certificate is revoked in Vault: at the bundle's
	// next refresh (2s) its scrapes are refused, on the connection it
	// keeps open too.
	e.vault.Revoke(t, "pki_int", prom.serial)
	p.waitValue(`up{job="certkeeper"}`, 0, 60*time.Second)
	for _, tg := range p.targets() {
		if tg.Labels["job"] == "certkeeper" {
			t.Logf("after revoking Prometheus's certificate: health=%s lastError=%q", tg.Health, tg.LastError)
			if !strings.Contains(tg.LastError, "tls") && !strings.Contains(tg.LastError, "403") {
				t.Errorf("lastError %q does not say the handshake failed", tg.LastError)
			}
		}
	}
	d.Stop()
}
