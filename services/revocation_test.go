package services

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/sinks"
)

// deliveries records what Delivered was told.
type deliveries struct {
	mu  sync.Mutex
	got []*sinks.Change
}

func (d *deliveries) add(c *sinks.Change) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, c)
}

func (d *deliveries) has(c *sinks.Change) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.got, c)
}

// TestDeliveredOnlyOnceLoadedEverywhere: a change is delivered once every
// service it notifies was checked and reloaded with it on disk; a change
// whose check failed (rolled back) is not, until it is written again,
// checked and reloaded; Reload delivers its token without a change.
func TestDeliveredOnlyOnceLoadedEverywhere(t *testing.T) {
	f := newFixture(t)
	f.cfg.Services = []config.Service{shell(f.dir, "nginx"), shell(f.dir, "apache")}
	f.cfg.Certificates[0].Notify = []string{"nginx", "apache"}
	d := &deliveries{}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Delivered: d.add})

	c1 := f.write("1")
	f.m.Changed(f.cfg.Certificates[0], c1, notice.Notice{})
	if d.has(c1) {
		t.Fatal("delivered before any reload")
	}
	f.m.Flush(t.Context())
	if !d.has(c1) {
		t.Fatal("not delivered after both services reloaded")
	}

	os.WriteFile(filepath.Join(f.dir, "broken"), nil, 0o600)
	c2 := f.write("2")
	f.m.Changed(f.cfg.Certificates[0], c2, notice.Notice{})
	if out := f.m.Flush(t.Context()); out[0].Result != ResultCheckFailed {
		t.Fatalf("flush = %+v, want a failed check", out)
	}
	if d.has(c2) {
		t.Fatal("a change whose check failed (rolled back) was delivered")
	}
	os.Remove(filepath.Join(f.dir, "broken"))
	f.m.Flush(t.Context())
	if !d.has(c2) || f.onDisk() != "KEY2/CERT2" {
		t.Fatalf("after the retry wrote, checked and reloaded it: delivered %v, on disk %q", d.has(c2), f.onDisk())
	}

	token := &sinks.Change{}
	f.m.Reload(f.cfg.Certificates[0], token)
	f.m.Flush(t.Context())
	if !d.has(token) {
		t.Error("Reload's token was not delivered after the services reloaded")
	}
}

// TestDeliveredWaitsForAFailedReload: one of two services fails its
// reload; the change is delivered only when its retry succeeds.
func TestDeliveredWaitsForAFailedReload(t *testing.T) {
	f := newFixture(t)
	apache := shell(f.dir, "apache")
	apache.Reload = []string{"sh", "-c", "test ! -e " + filepath.Join(f.dir, "down")}
	f.cfg.Services = []config.Service{shell(f.dir, "nginx"), apache}
	f.cfg.Certificates[0].Notify = []string{"nginx", "apache"}
	d := &deliveries{}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Delivered: d.add})
	os.WriteFile(filepath.Join(f.dir, "down"), nil, 0o600)
	f.run()
	c := f.write("1")
	f.m.Changed(f.cfg.Certificates[0], c, notice.Notice{})
	waitFor(t, "apache's reload to fail", func() bool { return f.status("apache").State == StateReloadFailed })
	time.Sleep(300 * time.Millisecond)
	if d.has(c) {
		t.Fatal("delivered while apache had not loaded it")
	}
	os.Remove(filepath.Join(f.dir, "down"))
	waitFor(t, "delivery after apache's retry", func() bool { return d.has(c) })
}

// pkiSet is a CA, a client certificate it issued, and a server
// certificate, as files.
type pkiSet struct {
	ca        *x509.Certificate
	caKey     crypto.Signer
	client    *x509.Certificate
	clientKey crypto.Signer
	server    *tls.Certificate
	serverPEM []byte
}

func newPKISet(t *testing.T) *pkiSet {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4711), Subject: pkix.Name{CommonName: "caller.example.internal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	client, _ := x509.ParseCertificate(der)
	server, serverPEM := selfSigned(t)
	return &pkiSet{ca: ca, caKey: caKey, client: client, clientKey: key, server: server, serverPEM: serverPEM}
}

func (p *pkiSet) crl(t *testing.T, number int64, revoked ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
	for _, s := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.ca, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// refuser is a TLS server that demands a client certificate from the CA
// in the trust files on disk and refuses every client while the CRL file
// holds the word "refuse", the way a server refuses all clients when a
// CRL level is unusable: in the handshake (Apache), or with an HTTP 400
// after it (nginx).
type refuser struct {
	addr    string
	crlFile string
	http400 bool
	mu      sync.Mutex
	asked   int
}

func (r *refuser) refusing() bool {
	data, _ := os.ReadFile(r.crlFile)
	return bytes.Contains(data, []byte("refuse"))
}

func newRefuser(t *testing.T, version uint16, server *tls.Certificate, ca *x509.Certificate, crlFile string, http400 bool) *refuser {
	t.Helper()
	r := &refuser{crlFile: crlFile, http400: http400}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	conf := &tls.Config{
		MinVersion: version, MaxVersion: version,
		Certificates: []tls.Certificate{*server},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: pool,
		VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error {
			r.mu.Lock()
			r.asked++
			r.mu.Unlock()
			if !r.http400 && r.refusing() {
				return errors.New("CRL is not usable")
			}
			return nil
		},
	}
	if http400 {
		// nginx verifies the client after the handshake: the handshake
		// passes whenever a certificate is sent.
		conf.ClientAuth, conf.ClientCAs = tls.RequireAnyClientCert, nil
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if r.http400 && r.refusing() {
			http.Error(w, "400 The SSL certificate error", http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "hello")
	}), ErrorLog: nil}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	r.addr = l.Addr().String()
	return r
}

// canaryFixture is a service "web" reloaded by `true`, verified at a
// refuser, fed by certificate web (the server's) and trust bundle
// clients, with certificate caller as its canary.
type canaryFixture struct {
	*fixture
	p       *pkiSet
	tb      config.TrustBundle
	srv     *refuser
	refused []string
	mu      sync.Mutex
}

func newCanaryFixture(t *testing.T, version uint16, http400 bool) *canaryFixture {
	f := newFixture(t)
	p := newPKISet(t)
	cf := &canaryFixture{fixture: f, p: p}
	tb := config.TrustBundle{Name: "clients", CAFile: filepath.Join(f.dir, "clients-ca.pem"), CRLFile: filepath.Join(f.dir, "clients.crl.pem"), Notify: []string{"web"}}
	cf.tb = tb
	cf.srv = newRefuser(t, version, p.server, p.ca, tb.CRLFile, http400)
	f.cfg.TrustBundles = []config.TrustBundle{tb}
	f.cfg.Services = []config.Service{{
		Name: "web", Reload: []string{"true"}, Timeout: time.Second, Settle: 20 * time.Millisecond,
		Verify: &config.Verify{Address: cf.srv.addr, Timeout: 2 * time.Second, ClientCertificate: "caller"},
	}}
	f.cfg.Certificates[0].Notify = []string{"web"}
	caller := config.Certificate{Name: "caller", Files: config.Files{Cert: filepath.Join(f.dir, "caller.crt"), Key: filepath.Join(f.dir, "caller.key")}}
	f.cfg.Certificates = append(f.cfg.Certificates, caller)
	key, _ := pki.MarshalKey(p.clientKey)
	os.WriteFile(caller.Files.Cert, pki.EncodeCerts(p.client), 0o644)
	os.WriteFile(caller.Files.Key, key, 0o600)
	os.WriteFile(f.cfg.Certificates[0].Files.Cert, p.serverPEM, 0o644)
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Observer: f.obs, VerifyInterval: 20 * time.Millisecond, CanaryWindow: 100 * time.Millisecond,
		BundleRefused: func(bundle string, retryAt time.Time, err error) {
			cf.mu.Lock()
			defer cf.mu.Unlock()
			cf.refused = append(cf.refused, fmt.Sprintf("%s in %s: %v", bundle, time.Until(retryAt).Round(time.Second), err))
		}})
	return cf
}

func (cf *canaryFixture) writeTrust(crl []byte) *sinks.Change {
	cf.t.Helper()
	c, err := sinks.WriteSet(filepath.Join(cf.dir, "clients.journal"), []sinks.File{
		{Path: cf.tb.CAFile, Data: pki.EncodeCerts(cf.p.ca), Mode: 0o644, UID: -1, GID: -1},
		{Path: cf.tb.CRLFile, Data: crl, Mode: 0o644, UID: -1, GID: -1},
	})
	if err != nil {
		cf.t.Fatal(err)
	}
	return c
}

// TestCanaryRollsBackRefusedTrustFiles: new trust files that the check
// does not catch but with which the server refuses a valid client (in
// the handshake, as Apache does, or with a 400 after it, as nginx does)
// are rolled back, the service is reloaded onto the previous ones and
// admits clients again, its state is clients_refused, and the bundle is
// held for a backoff. Good files afterwards are accepted.
func TestCanaryRollsBackRefusedTrustFiles(t *testing.T) {
	for _, tt := range []struct {
		name    string
		version uint16
		http400 bool
	}{
		{"handshake TLS 1.2", tls.VersionTLS12, false},
		{"handshake TLS 1.3", tls.VersionTLS13, false},
		{"HTTP 400", tls.VersionTLS13, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cf := newCanaryFixture(t, tt.version, tt.http400)
			good := cf.p.crl(t, 1)
			cf.m.BundleChanged(cf.tb, cf.writeTrust(good), notice.Notice{})
			if out := cf.m.Flush(t.Context()); len(out) != 1 || out[0].Err != nil {
				t.Fatalf("good trust files: %+v", out)
			}
			bad := append(cf.p.crl(t, 2), []byte("refuse\n")...)
			cf.m.BundleChanged(cf.tb, cf.writeTrust(bad), notice.Notice{})
			cf.run()
			waitFor(t, "clients_refused", func() bool { return cf.status("web").State == StateClientsRefused })
			if got, _ := os.ReadFile(cf.tb.CRLFile); !bytes.Equal(got, good) {
				t.Errorf("the CRL file was not rolled back:\n%s", got)
			}
			st := cf.status("web")
			if !strings.Contains(st.LastError, "refused the client certificate") && !strings.Contains(st.LastError, "400") {
				t.Errorf("status = %+v", st)
			}
			cf.mu.Lock()
			refused := slices.Clone(cf.refused)
			cf.mu.Unlock()
			if len(refused) != 1 || !strings.HasPrefix(refused[0], "clients in ") {
				t.Errorf("bundle refusals = %v", refused)
			}
			if _, err := admitsNow(cf); err != nil {
				t.Errorf("after the rollback a valid client is refused: %v", err)
			}

			// The next good files are accepted and the state clears.
			cf.m.BundleChanged(cf.tb, cf.writeTrust(cf.p.crl(t, 3)), notice.Notice{})
			waitFor(t, "ok again", func() bool { return cf.status("web").State == StateOK })

			// Refused again, then Vault serves what is on disk: ok again.
			cf.m.BundleChanged(cf.tb, cf.writeTrust(append(cf.p.crl(t, 4), []byte("refuse\n")...)), notice.Notice{})
			waitFor(t, "clients_refused", func() bool { return cf.status("web").State == StateClientsRefused })
			cf.m.BundleSettled(cf.tb)
			if st := cf.status("web"); st.State != StateOK || st.LastError != "" {
				t.Errorf("after the bundle settled: %+v", st)
			}
		})
	}
}

func admitsNow(cf *canaryFixture) (bool, error) {
	cert, _, err := canaryPair(cf.cfg, "caller")
	if err != nil {
		return false, err
	}
	return true, admits(cf.t.Context(), cf.cfg.Services[0].Verify, cert)
}

// TestRevokedCanaryDoesNotBlockTheCRL: when the new CRL revokes the
// canary certificate itself, the server refusing it is right: the files
// stay (a revocation must reach the server) and the canary is skipped
// with a warning.
func TestRevokedCanaryDoesNotBlockTheCRL(t *testing.T) {
	cf := newCanaryFixture(t, tls.VersionTLS13, false)
	cf.m.BundleChanged(cf.tb, cf.writeTrust(cf.p.crl(t, 1)), notice.Notice{})
	cf.m.Flush(t.Context())
	revoking := append(cf.p.crl(t, 2, cf.p.client.SerialNumber), []byte("refuse\n")...)
	cf.m.BundleChanged(cf.tb, cf.writeTrust(revoking), notice.Notice{})
	out := cf.m.Flush(t.Context())
	if len(out) != 1 || out[0].Err != nil || out[0].Result != ResultOK {
		t.Fatalf("flush = %+v", out)
	}
	if got, _ := os.ReadFile(cf.tb.CRLFile); !bytes.Equal(got, revoking) {
		t.Error("a CRL revoking the canary was rolled back")
	}
}

// TestDeliveredOnlyWhatTheReloadLoaded: a change that arrives while a
// reload is under way was not surely loaded by it; a reload while a
// failed check's batch waits, rolled back, did not load that batch.
func TestDeliveredOnlyWhatTheReloadLoaded(t *testing.T) {
	f := newFixture(t)
	svc := shell(f.dir, "web")
	started := filepath.Join(f.dir, "started")
	svc.Reload = []string{"sh", "-c", "touch " + started + "; sleep 0.4; test ! -e " + filepath.Join(f.dir, "down")}
	f.cfg.Services = []config.Service{svc}
	f.cfg.Certificates[0].Notify = []string{"web"}
	d := &deliveries{}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Delivered: d.add})
	f.run()

	c1 := f.write("1")
	f.m.Changed(f.cfg.Certificates[0], c1, notice.Notice{})
	waitFor(t, "the reload to start", func() bool { _, err := os.Stat(started); return err == nil })
	c2 := f.write("2")
	f.m.Changed(f.cfg.Certificates[0], c2, notice.Notice{})
	waitFor(t, "the first reload's delivery", func() bool { return d.has(c1) })
	if d.has(c2) {
		t.Fatal("a change written during the reload was delivered with it")
	}
	waitFor(t, "the second reload's delivery", func() bool { return d.has(c2) })

	// The reload fails and is retried; meanwhile c3 fails its check and
	// is rolled back. The retry that then succeeds did not load c3.
	os.WriteFile(filepath.Join(f.dir, "down"), nil, 0o600)
	c3a := f.write("3a")
	f.m.Changed(f.cfg.Certificates[0], c3a, notice.Notice{})
	waitFor(t, "the reload to fail", func() bool { return f.status("web").State == StateReloadFailed })
	os.WriteFile(filepath.Join(f.dir, "broken"), nil, 0o600)
	c3 := f.write("3")
	f.m.Changed(f.cfg.Certificates[0], c3, notice.Notice{})
	waitFor(t, "the check to fail", func() bool { return f.status("web").State == StateCheckFailed })
	os.Remove(filepath.Join(f.dir, "down"))
	waitFor(t, "the retried reload's delivery", func() bool { return d.has(c3a) })
	time.Sleep(300 * time.Millisecond)
	if d.has(c3) {
		t.Fatal("a rolled-back change was delivered by a reload that ran while it waited")
	}
	os.Remove(filepath.Join(f.dir, "broken"))
	waitFor(t, "delivery once checked and reloaded", func() bool { return d.has(c3) })
}

// TestVerifyEveryKeyType: a server with an EC and an RSA certificate
// presents one per handshake. verify asks for each, so a server that
// took the new RSA certificate but kept the old EC one is "written but
// not served"; before, any one matching passed.
func TestVerifyEveryKeyType(t *testing.T) {
	f := newFixture(t)
	oldEC, _ := selfSigned(t)
	newEC, newECPEM := selfSigned(t)
	rsaCert, rsaPEM := selfSignedRSA(t)
	var mu sync.Mutex
	ec := oldEC
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		// Like the nginx of test/e2e: RSA whenever the client can take it.
		if hello.SupportsCertificate(rsaCert) == nil {
			return rsaCert, nil
		}
		return ec, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); c.(*tls.Conn).Handshake() }()
		}
	}()
	dir := f.dir
	rsaCfg := config.Certificate{Name: "web-rsa", Files: config.Files{Cert: filepath.Join(dir, "web-rsa.crt"), Key: filepath.Join(dir, "web-rsa.key")}, Notify: []string{"web"}}
	f.cfg.Certificates[0].Notify = []string{"web"}
	f.cfg.Certificates = append(f.cfg.Certificates, rsaCfg)
	f.cfg.Services = []config.Service{{Name: "web", Reload: []string{"true"}, Timeout: time.Second, Settle: 10 * time.Millisecond,
		Verify: &config.Verify{Address: l.Addr().String(), Timeout: 300 * time.Millisecond}}}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, VerifyInterval: 20 * time.Millisecond})
	os.WriteFile(rsaCfg.Files.Cert, rsaPEM, 0o644)
	c, err := sinks.WriteSet(filepath.Join(dir, "j"), []sinks.File{{Path: f.cfg.Certificates[0].Files.Cert, Data: newECPEM, Mode: 0o644, UID: -1, GID: -1}})
	if err != nil {
		t.Fatal(err)
	}
	f.m.Changed(f.cfg.Certificates[0], c, notice.Notice{})
	out := f.m.Flush(t.Context())
	if len(out) != 1 || out[0].Result != ResultNotServed || !strings.Contains(fmt.Sprint(out[0].Err), pki.Serial(oldEC.Leaf)) {
		t.Fatalf("a server still on the old EC certificate: %+v", out)
	}
	mu.Lock()
	ec = newEC
	mu.Unlock()
	f.m.Reload(f.cfg.Certificates[0], &sinks.Change{})
	if out := f.m.Flush(t.Context()); len(out) != 1 || out[0].Err != nil {
		t.Fatalf("serving both new: %+v", out)
	}
	if st := f.status("web"); !strings.Contains(st.Served, pki.Serial(newEC.Leaf)) || !strings.Contains(st.Served, pki.Serial(rsaCert.Leaf)) {
		t.Errorf("served = %q, want both serials", st.Served)
	}
}

func selfSignedRSA(t *testing.T) (*tls.Certificate, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "web.example.internal"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pki.EncodeCerts(leaf)
}

// TestRefusedBatchStillDeliversItsCertificate: a certificate change that
// came in the same batch as refused trust files stays (only the trust
// files are rolled back) and is delivered once the service is back on
// the previous trust files; the refused change never is.
func TestRefusedBatchStillDeliversItsCertificate(t *testing.T) {
	cf := newCanaryFixture(t, tls.VersionTLS13, true)
	d := &deliveries{}
	cf.m.delivered = d.add
	cf.m.BundleChanged(cf.tb, cf.writeTrust(cf.p.crl(t, 1)), notice.Notice{})
	cf.m.Flush(t.Context())
	keyChange, err := sinks.WriteSet(filepath.Join(cf.dir, "web.journal"), []sinks.File{{Path: cf.cfg.Certificates[0].Files.Key, Data: []byte("another key"), Mode: 0o600, UID: -1, GID: -1}})
	if err != nil {
		t.Fatal(err)
	}
	cf.m.Changed(cf.cfg.Certificates[0], keyChange, notice.Notice{})
	bad := cf.writeTrust(append(cf.p.crl(t, 2), []byte("refuse\n")...))
	cf.m.BundleChanged(cf.tb, bad, notice.Notice{})
	if out := cf.m.Flush(t.Context()); len(out) != 1 || out[0].Result != ResultClientsRefused {
		t.Fatalf("flush = %+v", out)
	}
	if !d.has(keyChange) || d.has(bad) {
		t.Errorf("delivered: the certificate's change %v (want true), the refused trust files %v (want false)", d.has(keyChange), d.has(bad))
	}
}
