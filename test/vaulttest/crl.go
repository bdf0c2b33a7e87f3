package vaulttest

import (
	"crypto/x509"
	"io"
	"net/http"
	"testing"

	"github.com/certkeeper/certkeeper/internal/pki"
)

// CRL fetches mount's CRL from the server, unauthenticated, as anyone
// (and certkeeper) can.
func (s *Server) CRL(t testing.TB, mount string) *x509.RevocationList {
	t.Helper()
	resp, err := http.Get(s.Addr + "/v1/" + mount + "/crl/pem")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	crls, err := pki.ParseCRLs(body)
	if err != nil {
		t.Fatalf("%s/crl/pem: %v", mount, err)
	}
	return crls[0]
}

// Lists says whether crl lists cert's serial.
func Lists(crl *x509.RevocationList, cert *x509.Certificate) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return true
		}
	}
	return false
}
