package agent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/vault"
)

// fakeVault signs CSRs with an in-memory CA. The real Vault is exercised by
// test/integration; this one exists to inject bad answers.
type fakeVault struct {
	mu      sync.Mutex
	caCert  *x509.Certificate
	caKey   crypto.Signer
	calls   map[string]int
	tamper  func(r vault.CertRequest, tmpl *x509.Certificate, pub *crypto.PublicKey)
	failFor map[string]error
	life    time.Duration
	// claimCA, when set, is returned as the chain instead of the real CA.
	claimCA *x509.Certificate
	// clock, when set, replaces time.Now for validity dates.
	clock func() time.Time
	// serial, when set, makes the serial numbers (else crypto/rand).
	serial func() *big.Int
	// answer, when set, may change the answer before it is returned.
	answer func(*vault.Issued)
	// requests are the requests received, in order.
	requests []vault.CertRequest
}

var _ Issuer = (*fakeVault)(nil)

func newFakeVault(t testing.TB) *fakeVault {
	t.Helper()
	key, _ := pki.GenerateKey("ec", 256)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &fakeVault{caCert: ca, caKey: key, calls: map[string]int{}, failFor: map[string]error{}, life: time.Hour}
}

func (f *fakeVault) Obtain(ctx context.Context, r vault.CertRequest) (*vault.Issued, error) {
	f.mu.Lock()
	f.calls[r.CommonName]++
	f.requests = append(f.requests, r)
	err := f.failFor[r.CommonName]
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	if f.serial != nil {
		serial = f.serial()
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// Sign mode sends a CSR; issue mode makes the key here, as Vault does.
	var pub crypto.PublicKey
	var privateKey string
	if len(r.CSR) == 0 {
		key, err := pki.GenerateKey("ec", 256)
		if err != nil {
			return nil, err
		}
		pub = key.Public()
		pemKey, err := pki.MarshalKey(key)
		if err != nil {
			return nil, err
		}
		privateKey = string(pemKey)
	} else {
		block, _ := pem.Decode(r.CSR)
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			return nil, err
		}
		pub = csr.PublicKey
	}
	now := time.Now()
	if f.clock != nil {
		now = f.clock()
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: r.CommonName},
		DNSNames: r.AltNames, IPAddresses: r.IPSANs,
		NotBefore: now.Add(-30 * time.Second), NotAfter: now.Add(f.life),
	}
	for _, u := range r.URISANs {
		parsed, err := url.Parse(u)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	if f.tamper != nil {
		f.tamper(r, tmpl, &pub)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, pub, f.caKey)
	if err != nil {
		return nil, err
	}
	claimed := f.caCert
	if f.claimCA != nil {
		claimed = f.claimCA
	}
	caPEM := string(pki.EncodeCerts(claimed))
	issued := &vault.Issued{
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		IssuingCA:   caPEM,
		CAChain:     []string{caPEM},
		PrivateKey:  privateKey,
	}
	if f.answer != nil {
		f.answer(issued)
	}
	return issued, nil
}

// lastRequest is the last request Vault received.
func (f *fakeVault) lastRequest() vault.CertRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func (f *fakeVault) count(cn string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[cn]
}

func testConfig(t testing.TB, names ...string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{StateDir: filepath.Join(dir, "state"), Vault: config.Vault{MaxParallel: 4}}
	for _, n := range names {
		cfg.Certificates = append(cfg.Certificates, config.Certificate{
			Name: n, Mount: "pki_int", Role: "web", CommonName: n + ".example.internal",
			AltNames: []string{n + ".example.internal"},
			KeyType:  "ec", KeyBits: 256, IssueMode: config.ModeSign,
			RenewFraction: 0.66, RenewJitter: 0.1, UID: -1, GID: -1, KeyMode: 0o600, CertMode: 0o644,
			Files: config.Files{
				Cert: filepath.Join(dir, n+".crt"), Key: filepath.Join(dir, n+".key"),
				Fullchain: filepath.Join(dir, n+".fullchain.pem"),
			},
		})
	}
	return cfg
}

func TestRejectedCertificateKeepsOldFiles(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(r vault.CertRequest, tmpl *x509.Certificate, pub *crypto.PublicKey)
		want   string
	}{
		{"key does not match", func(_ vault.CertRequest, _ *x509.Certificate, pub *crypto.PublicKey) {
			k, _ := pki.GenerateKey("ec", 256)
			*pub = k.Public()
		}, "does not match the private key"},
		{"wrong SAN", func(_ vault.CertRequest, tmpl *x509.Certificate, _ *crypto.PublicKey) {
			tmpl.DNSNames = []string{"evil.example.com"}
		}, "were not asked for"},
		{"already expired", func(_ vault.CertRequest, tmpl *x509.Certificate, _ *crypto.PublicKey) {
			tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		}, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "web")
			fv := newFakeVault(t)
			a := New(Options{Config: cfg, Issuer: fv})
			if _, err := a.ensure(t.Context(), cfg.Certificates[0], false); err != nil {
				t.Fatal(err)
			}
			c := cfg.Certificates[0]
			before := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain)

			fv.tamper = tt.tamper
			_, err := a.ensure(t.Context(), c, true)
			var rej *RejectedError
			if !errors.As(err, &rej) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a rejection saying %q", err, tt.want)
			}
			if after := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain); after != before {
				t.Error("files changed although the certificate was rejected")
			}
		})
	}
}

func TestUntrustedChainRejected(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	other := newFakeVault(t)
	fv.claimCA = other.caCert // signed by one CA, claims another
	a := New(Options{Config: cfg, Issuer: fv})
	_, err := a.ensure(t.Context(), cfg.Certificates[0], false)
	if err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("err = %v, want a chain rejection", err)
	}
	if _, err := os.Stat(cfg.Certificates[0].Files.Cert); err == nil {
		t.Error("a certificate with an untrusted chain was written")
	}
}

// TestOneFailureDoesNotBlockOthers: in Once, a certificate whose requests
// fail must not stop or delay the rest.
func TestOneFailureDoesNotBlockOthers(t *testing.T) {
	cfg := testConfig(t, "a", "bad", "c")
	fv := newFakeVault(t)
	fv.failFor["bad.example.internal"] = &vault.Error{Status: 503, Err: errors.New("vault answered 503")}
	a := New(Options{Config: cfg, Issuer: fv})
	outs := a.Once(t.Context())
	for i, o := range outs {
		name := cfg.Certificates[i].Name
		if name == "bad" {
			if o.Err == nil || o.Status.State != StateMissing || o.Status.Failures != 1 {
				t.Errorf("bad: %+v", o)
			}
			if n := fv.count("bad.example.internal"); n != backoff.OneShot.Attempts {
				t.Errorf("bad was tried %d times, want %d", n, backoff.OneShot.Attempts)
			}
			continue
		}
		if o.Err != nil || o.Result.Action != Issued {
			t.Errorf("%s: err=%v result=%+v", name, o.Err, o.Result)
		}
	}
}

// TestRestoresFromHeld: a deleted or altered output file is put back from
// the certificate held in memory, without asking Vault.
func TestRestoresFromHeld(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	c := cfg.Certificates[0]
	if _, err := a.ensure(t.Context(), c, false); err != nil {
		t.Fatal(err)
	}
	want := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain)
	os.Remove(c.Files.Key)
	os.WriteFile(c.Files.Fullchain, []byte("garbage"), 0o644)

	res, err := a.ensure(t.Context(), c, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Restored || len(res.Written) != 2 {
		t.Errorf("action %s, written %v; want restored key and fullchain", res.Action, res.Written)
	}
	if got := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain); got != want {
		t.Error("restored files differ from the held certificate")
	}
	if n := fv.count("web.example.internal"); n != 1 {
		t.Errorf("restoring asked Vault %d more times", n-1)
	}
}

// TestNewProcessReadsDisk: a fresh agent (a restart) finds the certificate
// on disk good and asks Vault for nothing; a config that now wants another
// key type makes it stale.
func TestNewProcessReadsDisk(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	if _, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), cfg.Certificates[0], false); err != nil {
		t.Fatal(err)
	}
	res, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), cfg.Certificates[0], false)
	if err != nil || res.Action != Kept {
		t.Fatalf("restart: action %v err %v, want kept", res, err)
	}
	if n := fv.count("web.example.internal"); n != 1 {
		t.Errorf("restart asked Vault: %d requests in all", n)
	}
	cfg.Certificates[0].KeyBits = 384
	res, err = New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), cfg.Certificates[0], false)
	if err != nil || res.Action != Issued || !strings.Contains(res.Reason, "key is ec 256, config asks for ec 384") {
		t.Fatalf("after key_bits change: %+v, %v", res, err)
	}
}

func TestStatusAfterFailure(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	now := time.Now()
	a := New(Options{Config: cfg, Issuer: fv, Now: func() time.Time { return now }, Rand: func() float64 { return 0.5 }})
	fv.failFor["web.example.internal"] = &vault.Error{Status: 429, RetryAfter: 10 * time.Minute, Err: errors.New("rate limited")}
	next, ok := a.pass(t.Context(), "web")
	if !ok {
		t.Fatal("pass lost the certificate")
	}
	if d := next.Sub(now); d < 10*time.Minute {
		t.Errorf("next attempt in %v, want at least the 10m Retry-After", d)
	}
	st := a.Statuses()[0]
	if st.State != StateMissing || st.Failures != 1 || !strings.Contains(st.LastError, "rate limited") {
		t.Errorf("status = %+v", st)
	}
}

func readAll(t *testing.T, paths ...string) string {
	t.Helper()
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s\n%s", p, data)
	}
	return b.String()
}
