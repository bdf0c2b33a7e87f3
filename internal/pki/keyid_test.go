package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// TestIssuerFoundWithoutKeyIDs: NewBundle picks a certificate's issuer by
// name and, where both carry key ids, by key. A leaf that names no
// authority key id (older CAs made such leaves) still gets the
// intermediate that signed it, though that intermediate has a key id of
// its own, and the chain verifies.
func TestIssuerFoundWithoutKeyIDs(t *testing.T) {
	root := newCA(t, "root", nil)
	inter := newCA(t, "inter", root)
	key, err := GenerateKey("ec", 256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "web.example.internal"},
		DNSNames:     []string{"web.example.internal"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	// crypto/x509 copies the parent's key id into the leaf: sign with a
	// copy that has none, so the leaf names none.
	parent := *inter.cert
	parent.SubjectKeyId = nil
	der, err := x509.CreateCertificate(rand.Reader, tmpl, &parent, key.Public(), inter.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.AuthorityKeyId) != 0 || len(inter.cert.SubjectKeyId) == 0 {
		t.Fatal("set-up: want a leaf without an authority key id under an intermediate with a key id")
	}
	b := NewBundle(leaf, key, []*x509.Certificate{root.cert, inter.cert})
	if len(b.Intermediates) != 1 || !b.Intermediates[0].Equal(inter.cert) {
		t.Fatalf("intermediates %v, want the one that signed the leaf", subjects(b.Intermediates))
	}
	if err := b.VerifyChain(now); err != nil {
		t.Fatal(err)
	}
}
