package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// The parsers here read what comes from outside: certificates and keys
// from Vault's answers and from disk, CRLs from Vault. Whatever the input,
// they must return an error rather than panic, and an error must never
// quote a key.

func FuzzParseCertificates(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err != nil {
			if certs != nil {
				t.Fatal("certificates returned with an error")
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		// What was parsed encodes and parses back to the same certificates.
		again, err := ParseCertificates(EncodeCerts(certs...))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("round trip: %d certificates, %v", len(again), err)
		}
		for i := range certs {
			if !certs[i].Equal(again[i]) {
				t.Fatalf("certificate %d changed in a round trip", i)
			}
		}
	})
}

func FuzzParseKey(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParseKey(data)
		if err != nil {
			// The input may be key material: no line of it in the error.
			for _, line := range strings.Split(string(data), "\n") {
				line = strings.TrimSpace(line)
				if len(line) >= 12 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
					t.Fatalf("error quotes the input: %v", err)
				}
			}
			return
		}
		der, err := MarshalKey(key)
		if err != nil {
			// Some keys parse but cannot be PKCS#8-encoded; that is an
			// error, not a panic.
			return
		}
		again, err := ParseKey(der)
		if err != nil {
			t.Fatalf("a key we encoded does not parse: %v", err)
		}
		if k, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && !k.Equal(again.Public()) {
			t.Fatal("key changed in a round trip")
		}
	})
}

func FuzzParseCRLs(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		crls, err := ParseCRLs(data)
		if err != nil {
			return
		}
		if len(crls) == 0 {
			t.Fatal("no error and no crl")
		}
		for _, c := range crls {
			if c == nil || len(c.Raw) == 0 {
				t.Fatal("empty crl")
			}
			for _, e := range c.RevokedCertificateEntries {
				if e.SerialNumber == nil {
					t.Fatal("revoked entry without serial")
				}
			}
		}
	})
}

// TestParseCRLs covers the forms Vault serves.
func TestParseCRLs(t *testing.T) {
	ca := newCA(t, "crl ca", nil)
	der, err := x509.CreateRevocationList(nil, &x509.RevocationList{Number: bigOne(), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pemData := pemEncode("X509 CRL", der)
	for name, tt := range map[string]struct {
		in   []byte
		want int
	}{"pem": {pemData, 1}, "der": {der, 1}, "two pem": {append(append([]byte{}, pemData...), pemData...), 2}} {
		crls, err := ParseCRLs(tt.in)
		if err != nil || len(crls) != tt.want || crls[0].CheckSignatureFrom(ca.cert) != nil {
			t.Errorf("%s: %d crls, %v; want %d", name, len(crls), err, tt.want)
		}
	}
	for name, tt := range map[string]struct {
		in   []byte
		want string // the error begins so
	}{
		"empty":         {nil, "no PEM crl found"},
		"other pem":     {pemEncode("CERTIFICATE", []byte{1, 2}), "no PEM crl found"},
		"garbage der":   {[]byte{0x30, 0x03, 1, 2, 3}, "parsing der crl: "},
		"broken second": {append(append([]byte{}, pemData...), pemEncode("X509 CRL", []byte{0x30, 0x03, 1, 2, 3})...), "parsing crl 2: "},
	} {
		if _, err := ParseCRLs(tt.in); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tt.want)
		}
	}
}

func bigOne() *big.Int { return big.NewInt(1) }

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
