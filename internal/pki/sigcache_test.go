package pki

import (
	"crypto/x509"
	"testing"
)

// TestRememberedSignaturesNeverConfuseCAs: once a real intermediate and
// root were checked (and remembered), a root of the same name but another
// key is still not taken for the intermediate's issuer, and the real chain
// still verifies afterwards.
func TestRememberedSignaturesNeverConfuseCAs(t *testing.T) {
	root := newCA(t, "root", nil)
	inter := newCA(t, "intermediate", root)
	impostor := newCA(t, "root", nil) // same subject, another key
	key, _ := GenerateKey("ec", 256)
	leaf := inter.issue(t, key.Public(), leafOpts{cn: "web.example.internal"})

	for range 2 {
		b := NewBundle(leaf, key, []*x509.Certificate{inter.cert, root.cert})
		if len(b.Intermediates) != 1 || !b.Intermediates[0].Equal(inter.cert) || len(b.Roots) != 1 || !b.Roots[0].Equal(root.cert) {
			t.Fatalf("real chain: intermediates %d, roots %d", len(b.Intermediates), len(b.Roots))
		}
		if err := b.VerifyChain(now); err != nil {
			t.Fatal(err)
		}
		forged := NewBundle(leaf, key, []*x509.Certificate{inter.cert, impostor.cert})
		if len(forged.Intermediates) != 1 || len(forged.Roots) != 1 || !forged.Roots[0].Equal(impostor.cert) {
			t.Errorf("forged chain: intermediates %d, roots %d", len(forged.Intermediates), len(forged.Roots))
		}
		if err := forged.VerifyChain(now); err == nil {
			t.Error("a chain to the impostor root verified")
		}
	}
	if !signedBy(inter.cert, root.cert) || signedBy(inter.cert, impostor.cert) || !signedBy(root.cert, root.cert) || signedBy(root.cert, impostor.cert) {
		t.Error("remembered signatures are wrong")
	}
}
