package telemetry

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The load-time check reads the file as strictly as the toolkit does and
// says whether it sets up TLS, without loading the certificate files.
func TestCheckWebConfig(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, text string
		tls        bool
		err        string
	}{
		{"basic auth only", "basic_auth_users:\n  prometheus: " + string(hash) + "\n", false, ""},
		{"tls with files that need not exist yet", "tls_server_config:\n  cert_file: /nonexistent/metrics.crt\n  key_file: /nonexistent/metrics.key\n", true, ""},
		{"client verification", "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n", true, ""},
		{"unknown key", "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  colour: blue\n", false, "colour"},
		{"plain password", "basic_auth_users:\n  prometheus: s3cret\n", false, `the password of "prometheus" is not a bcrypt hash`},
		{"no key", "tls_server_config:\n  cert_file: a.crt\n", true, "key_file (or key) is missing"},
		{"client CA without auth type", "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_ca_file: ca.pem\n", true, "verifies nobody"},
		{"bad auth type", "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: Sometimes\n", true, `"Sometimes"`},
		{"bad tls version", "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS99\n", false, "TLS99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "web.yml", tt.text)
			tls, err := WebConfigChecker{}.CheckWebConfig(p)
			if tt.err == "" {
				if err != nil || tls != tt.tls {
					t.Fatalf("got tls=%v, %v; want tls=%v, no error", tls, err, tt.tls)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one saying %q", err, tt.err)
			}
		})
	}
}

func writeKeyPair(t *testing.T, dir, name string, kp *tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(kp.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, c := range kp.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	certFile = writeFile(t, dir, name+".crt", string(chain))
	keyFile = writeFile(t, dir, name+".key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	return certFile, keyFile
}

// A web configuration in the exporter toolkit's format protects the
// endpoint as it does node_exporter: TLS and client certificates from its
// files, basic auth with bcrypt hashes.
func TestServeWithWebConfig(t *testing.T) {
	root := newRoot(t, "test root")
	ca := root.intermediate(t, "test CA")
	foreign := newRoot(t, "foreign root")
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	dir := t.TempDir()
	certFile, keyFile := writeKeyPair(t, dir, "metrics", ca.leaf(t, "metrics.example.internal", x509.ExtKeyUsageServerAuth))
	clientCA := writeFile(t, dir, "clients.pem", string(pemCerts(ca.cert, root.cert)))
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := writeFile(t, dir, "web.yml", `tls_server_config:
  cert_file: `+certFile+`
  key_file: `+keyFile+`
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: `+clientCA+`
basic_auth_users:
  prometheus: `+string(hash)+"\n")
	addr := tlsEndpoint(t, ServeOptions{WebConfigFile: web})

	prom := ca.leaf(t, "prometheus", x509.ExtKeyUsageClientAuth)
	if body, _, err := scrapeTLS(addr, roots, prom, "prometheus", "s3cret"); err != nil || body != "metrics here\n" {
		t.Fatalf("client certificate and password: %q, %v", body, err)
	}
	var se *statusError
	if _, _, err := scrapeTLS(addr, roots, prom, "prometheus", "wrong"); !errors.As(err, &se) || se.code != 401 {
		t.Errorf("wrong password: %v, want 401", err)
	}
	if _, _, err := scrapeTLS(addr, roots, nil, "prometheus", "s3cret"); err == nil {
		t.Error("no client certificate: let in")
	}
	if _, _, err := scrapeTLS(addr, roots, foreign.leaf(t, "prometheus", x509.ExtKeyUsageClientAuth), "prometheus", "s3cret"); err == nil {
		t.Error("a foreign client certificate: let in")
	}
}

// With tls_certificate, the web configuration adds basic auth on top of
// certkeeper's own TLS.
func TestServeTLSWithBasicAuthFromWebConfig(t *testing.T) {
	root := newRoot(t, "test root")
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := writeFile(t, t.TempDir(), "web.yml", "basic_auth_users:\n  prometheus: "+string(hash)+"\n")
	held := &heldPairs{}
	held.set(root.leaf(t, "metrics.example.internal", x509.ExtKeyUsageServerAuth))
	addr := tlsEndpoint(t, ServeOptions{WebConfigFile: web, TLS: ServerTLS(TLSOptions{KeyPairs: held, Certificate: "metrics"})})
	if _, _, err := scrapeTLS(addr, roots, nil, "prometheus", "s3cret"); err != nil {
		t.Fatalf("right password over certkeeper's TLS: %v", err)
	}
	var se *statusError
	if _, _, err := scrapeTLS(addr, roots, nil); !errors.As(err, &se) || se.code != 401 {
		t.Errorf("no password: %v, want 401", err)
	}
}

// TestWebConfigWaitIsRecorded: while the web configuration's certificate
// files cannot be loaded, the endpoint does not listen, and the Listener
// says so (status, /readyz) with the file's error; the failed-bind counter
// stays 0, since no other process was found on the address. Once the
// files are there, it listens.
func TestWebConfigWaitIsRecorded(t *testing.T) {
	dir := t.TempDir()
	web := writeFile(t, dir, "web.yml", "tls_server_config:\n  cert_file: "+dir+"/metrics.crt\n  key_file: "+dir+"/metrics.key\n")
	reg := NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener("127.0.0.1:0", m)
	listening := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ServeOptions{Listen: "127.0.0.1:0", WebConfigFile: web, RetryEvery: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler),
			Handler: http.NotFoundHandler(), Listener: l, OnListen: func(a net.Addr) { listening <- a }})
	}()
	defer func() { cancel(); <-done }()
	waitUntil(t, "a start held back by the web config", 10*time.Second, func() bool { return l.Status().Failures >= 2 })
	st := l.Status()
	if st.Listening || !strings.Contains(st.Unready(), "web_config_file "+web) {
		t.Errorf("status while the web config's files are missing: %+v; unready: %q", st, st.Unready())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "certkeeper_telemetry_listen_failures_total" && mf.GetMetric()[0].GetCounter().GetValue() != 0 {
			t.Errorf("a missing web config file counted as a taken port: %v", mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	root := newRoot(t, "test root")
	writeKeyPair(t, dir, "metrics", root.leaf(t, "metrics.example.internal", x509.ExtKeyUsageServerAuth))
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("never listened once the web config's files were there")
	}
	if st := l.Status(); !st.Listening || st.Unready() != "" {
		t.Errorf("status once listening: %+v", st)
	}
}
