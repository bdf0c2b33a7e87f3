package telemetry

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCA is a CA made in memory for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var serials atomic.Int64

func newSerial() *big.Int { return big.NewInt(1000 + serials.Add(1)) }

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newRoot makes a self-signed root.
func newRoot(t *testing.T, cn string) *testCA {
	t.Helper()
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// intermediate makes a CA signed by ca.
func (ca *testCA) intermediate(t *testing.T, cn string) *testCA {
	t.Helper()
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// leaf issues a certificate for cn with the given extended key usage,
// returned as a TLS key pair with its intermediate.
func (ca *testCA) leaf(t *testing.T, cn string, usage x509.ExtKeyUsage, dns ...string) *tls.Certificate {
	t.Helper()
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: cert}
}

// crl is ca's CRL revoking serials, valid until next.
func (ca *testCA) crl(t *testing.T, next time.Time, revoked ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: newSerial(), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: next,
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func pemCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// swapFile replaces path by rename, as sinks does.
func swapFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// heldPairs is a KeyPairs whose pair the test replaces, as a renewal does.
type heldPairs struct {
	mu   sync.Mutex
	pair *tls.Certificate
}

func (h *heldPairs) KeyPair(name string) *tls.Certificate {
	h.mu.Lock()
	defer h.mu.Unlock()
	if name != "metrics" {
		return nil
	}
	return h.pair
}

func (h *heldPairs) set(p *tls.Certificate) {
	h.mu.Lock()
	h.pair = p
	h.mu.Unlock()
}

// tlsEndpoint runs Serve with opts' TLS on a loopback port and returns its
// address.
func tlsEndpoint(t *testing.T, so ServeOptions) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	so.Listen = "127.0.0.1:0"
	so.OnListen = func(a net.Addr) { addrc <- a }
	so.Log = slog.New(slog.DiscardHandler)
	if so.Handler == nil {
		so.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics here\n") })
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, so) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-addrc:
		return a.String()
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("endpoint did not listen")
	}
	return ""
}

// scrapeTLS GETs /metrics as a client with cert (nil: none) trusting
// roots, and returns the body and the serial the server presented.
func scrapeTLS(addr string, roots *x509.CertPool, cert *tls.Certificate, auth ...string) (string, *big.Int, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, DisableKeepAlives: true}
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), nil, &statusError{resp.StatusCode}
	}
	return string(b), resp.TLS.PeerCertificates[0].SerialNumber, nil
}

type statusError struct{ code int }

// refusedAtHandshake says err is a failed connection, not an HTTP answer:
// a client the bundle refuses never gets as far as a request.
func refusedAtHandshake(err error) bool {
	var se *statusError
	return err != nil && !errors.As(err, &se)
}

func (e *statusError) Error() string { return http.StatusText(e.code) }

// TestServerTLS: the endpoint serves the certificate the agent holds now
// and takes a renewal at the next handshake; it lets in only clients whose
// certificate chains to the trust bundle, is not revoked in its CRLs, has
// a current CRL at every level, and (when set) carries an allowed name;
// a bundle replaced on disk takes effect without a restart.
func TestServerTLS(t *testing.T) {
	root := newRoot(t, "test root")
	servers := root.intermediate(t, "servers CA")
	clients := root.intermediate(t, "clients CA")
	foreign := newRoot(t, "someone else's root").intermediate(t, "someone else's CA")
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)

	dir := t.TempDir()
	caFile, crlFile := filepath.Join(dir, "clients-ca.pem"), filepath.Join(dir, "clients-crl.pem")
	later := time.Now().Add(time.Hour)
	prom := clients.leaf(t, "prometheus.example.internal", x509.ExtKeyUsageClientAuth)
	other := clients.leaf(t, "backup.example.internal", x509.ExtKeyUsageClientAuth)
	revoked := clients.leaf(t, "prometheus.example.internal", x509.ExtKeyUsageClientAuth)
	stranger := foreign.leaf(t, "prometheus.example.internal", x509.ExtKeyUsageClientAuth)
	swapFile(t, caFile, pemCerts(clients.cert, root.cert))
	swapFile(t, crlFile, append(clients.crl(t, later, revoked.Leaf.SerialNumber), root.crl(t, later)...))

	held := &heldPairs{}
	first := servers.leaf(t, "metrics.example.internal", x509.ExtKeyUsageServerAuth)
	held.set(first)
	addr := tlsEndpoint(t, ServeOptions{TLS: ServerTLS(TLSOptions{
		KeyPairs: held, Certificate: "metrics",
		ClientCAFile: caFile, ClientCRLFile: crlFile,
		ClientNames: []string{"prometheus.example.internal"},
		Log:         slog.New(slog.DiscardHandler),
	})})

	body, serial, err := scrapeTLS(addr, roots, prom)
	if err != nil || body != "metrics here\n" {
		t.Fatalf("scrape with the right client certificate: %q, %v", body, err)
	}
	if serial.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Errorf("served serial %v, want the held certificate's %v", serial, first.Leaf.SerialNumber)
	}
	for name, cert := range map[string]*tls.Certificate{
		"no client certificate":          nil,
		"a foreign CA's certificate":     stranger,
		"a revoked certificate":          revoked,
		"a name not in tls_client_names": other,
	} {
		if _, _, err := scrapeTLS(addr, roots, cert); !refusedAtHandshake(err) {
			t.Errorf("%s: %v, want the handshake to fail", name, err)
		}
	}

	// A renewal: the next handshake serves the new certificate.
	second := servers.leaf(t, "metrics.example.internal", x509.ExtKeyUsageServerAuth)
	held.set(second)
	if _, serial, err = scrapeTLS(addr, roots, prom); err != nil || serial.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Fatalf("after renewal: served %v (%v), want %v", serial, err, second.Leaf.SerialNumber)
	}

	// The bundle's CRL revokes prometheus's certificate: refused from the
	// next handshake on, without a restart.
	swapFile(t, crlFile, append(clients.crl(t, later, prom.Leaf.SerialNumber), root.crl(t, later)...))
	if _, _, err := scrapeTLS(addr, roots, prom); !refusedAtHandshake(err) {
		t.Errorf("a certificate revoked after start: %v", err)
	}
	// The root's CRL revokes the clients CA itself.
	swapFile(t, crlFile, append(clients.crl(t, later), root.crl(t, later, clients.cert.SerialNumber)...))
	if _, _, err := scrapeTLS(addr, roots, prom); !refusedAtHandshake(err) {
		t.Errorf("a client under a revoked intermediate: %v", err)
	}
	// A CRL past its NextUpdate: nobody, as nginx does.
	swapFile(t, crlFile, append(clients.crl(t, time.Now().Add(-time.Second)), root.crl(t, later)...))
	if _, _, err := scrapeTLS(addr, roots, prom); !refusedAtHandshake(err) {
		t.Errorf("with a stale CRL: %v", err)
	}
	// No CRL from one level of the chain: nobody.
	swapFile(t, crlFile, root.crl(t, later))
	if _, _, err := scrapeTLS(addr, roots, prom); !refusedAtHandshake(err) {
		t.Errorf("without a CRL from the clients CA: %v", err)
	}
	swapFile(t, crlFile, append(clients.crl(t, later), root.crl(t, later)...))
	if _, _, err := scrapeTLS(addr, roots, prom); err != nil {
		t.Errorf("fresh CRLs again: %v", err)
	}
	// The bundle now trusts the foreign CA instead.
	swapFile(t, caFile, pemCerts(foreign.cert))
	swapFile(t, crlFile, foreign.crl(t, later))
	if _, _, err := scrapeTLS(addr, roots, prom); !refusedAtHandshake(err) {
		t.Errorf("a CA dropped from the bundle: %v", err)
	}
}

// Before the agent holds the certificate the handshake fails; once it is
// held the endpoint serves, with no restart. Without a trust bundle no
// client certificate is asked for.
func TestServerTLSWithoutClientBundle(t *testing.T) {
	root := newRoot(t, "test root")
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	held := &heldPairs{}
	addr := tlsEndpoint(t, ServeOptions{TLS: ServerTLS(TLSOptions{KeyPairs: held, Certificate: "metrics"})})
	if _, _, err := scrapeTLS(addr, roots, nil); err == nil {
		t.Fatal("served before any certificate was held")
	}
	held.set(root.leaf(t, "metrics.example.internal", x509.ExtKeyUsageServerAuth))
	if body, _, err := scrapeTLS(addr, roots, nil); err != nil || !strings.Contains(body, "metrics here") {
		t.Fatalf("once held: %q, %v", body, err)
	}
}

// A client that keeps its connection open (Prometheus does) is refused at
// its next request once the bundle revokes its certificate, not only when
// it reconnects.
func TestServerTLSRevokesOpenConnections(t *testing.T) {
	root := newRoot(t, "test root")
	clients := root.intermediate(t, "clients CA")
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	dir := t.TempDir()
	caFile, crlFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "crl.pem")
	later := time.Now().Add(time.Hour)
	prom := clients.leaf(t, "prometheus.example.internal", x509.ExtKeyUsageClientAuth)
	swapFile(t, caFile, pemCerts(clients.cert, root.cert))
	swapFile(t, crlFile, append(clients.crl(t, later), root.crl(t, later)...))
	held := &heldPairs{}
	held.set(root.leaf(t, "metrics.example.internal", x509.ExtKeyUsageServerAuth))
	addr := tlsEndpoint(t, ServeOptions{TLS: ServerTLS(TLSOptions{KeyPairs: held, Certificate: "metrics",
		ClientCAFile: caFile, ClientCRLFile: crlFile, Log: slog.New(slog.DiscardHandler)})})

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{*prom}}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func() (int, bool) {
		reused := false
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := client.Do(req)
		if err != nil {
			return 0, reused
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, reused
	}
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("first scrape: %d", code)
	}
	if code, reused := get(); code != http.StatusOK || !reused {
		t.Fatalf("second scrape: %d, connection reused %v (the test needs a kept connection)", code, reused)
	}
	swapFile(t, crlFile, append(clients.crl(t, later, prom.Leaf.SerialNumber), root.crl(t, later)...))
	if code, reused := get(); code != http.StatusForbidden || !reused {
		t.Errorf("on the open connection after revocation: %d (reused %v), want 403", code, reused)
	}
	if code, _ := get(); code != 0 {
		t.Errorf("reconnecting after revocation: %d, want a failed handshake", code)
	}
}
