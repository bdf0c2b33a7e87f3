package vaulttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TestCA is a throwaway certificate authority for Vault's own TLS listener
// (not Vault's PKI): tests give its certificate to certkeeper as ca_cert, or
// withhold it to prove certkeeper refuses a server it cannot verify.
type TestCA struct {
	CertPEM  []byte
	CertFile string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
}

// NewTestCA makes a CA and writes its certificate to dir/name.pem.
func NewTestCA(dir, name string) (*TestCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating test ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(),
		Subject:               pkix.Name{CommonName: "vaulttest " + name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating test ca: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &TestCA{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		CertFile: filepath.Join(dir, name+".pem"),
		cert:     cert,
		key:      key,
	}
	if err := os.WriteFile(ca.CertFile, ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing test ca: %w", err)
	}
	return ca, nil
}

// Issue makes a certificate for pub (a fresh key when pub is nil) signed by
// the CA, valid from notBefore to notAfter, naming ips and dnsNames, and
// returns it with its key (nil when pub was given).
func (ca *TestCA) Issue(pub any, cn string, ips []net.IP, dnsNames []string, notBefore, notAfter time.Time) (certPEM []byte, key *ecdsa.PrivateKey, err error) {
	if pub == nil {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, nil, err
		}
		pub = key.Public()
	}
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		IPAddresses:  ips,
		DNSNames:     dnsNames,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing test certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key, nil
}

// WriteServerPair issues a server certificate for 127.0.0.1 and localhost
// and writes it and its key into dir, returning both paths.
func (ca *TestCA) WriteServerPair(dir, name string) (certFile, keyFile string, err error) {
	certPEM, key, err := ca.Issue(nil, "127.0.0.1", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"},
		time.Now().Add(-time.Hour), time.Now().Add(47*time.Hour))
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func serialNumber() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// setupTLS makes the test CA and listener certificate and picks the port.
func (s *Server) setupTLS() error {
	ca, err := NewTestCA(s.dir, "vault-listener-ca")
	if err != nil {
		return err
	}
	if s.tlsCert, s.tlsKey, err = ca.WriteServerPair(s.dir, "vault-listener"); err != nil {
		return err
	}
	if s.tlsPort, err = freePort(); err != nil {
		return err
	}
	s.TLSCA = ca
	s.TLSAddr = fmt.Sprintf("https://127.0.0.1:%d", s.tlsPort)
	return nil
}

// tlsListener is the HCL of the HTTPS listener, or "" without one. Client
// certificates are requested but not required, so cert auth sees them and
// other clients still connect.
func (s *Server) tlsListener() string {
	if s.tlsPort == 0 {
		return ""
	}
	return fmt.Sprintf(`
listener "tcp" {
  address       = "127.0.0.1:%d"
  tls_cert_file = %q
  tls_key_file  = %q
}
`, s.tlsPort, s.tlsCert, s.tlsKey)
}
