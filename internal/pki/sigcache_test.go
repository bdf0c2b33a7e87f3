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

// TestRememberedSignaturesAreBounded: the memo keeps what it learns (a
// fleet's one intermediate and root are checked once, not per
// certificate) and never holds more than caSignaturesMax pairs.
func TestRememberedSignaturesAreBounded(t *testing.T) {
	caSignatures.Lock()
	caSignatures.ok = nil
	caSignatures.Unlock()
	size := func() int {
		caSignatures.Lock()
		defer caSignatures.Unlock()
		return len(caSignatures.ok)
	}
	root := newCA(t, "root", nil)
	for i := range caSignaturesMax + 1 {
		inter := newCA(t, "intermediate", root)
		if !signedBy(inter.cert, root.cert) {
			t.Fatal("an intermediate is not taken as signed by its root")
		}
		if want := i%caSignaturesMax + 1; size() != want {
			t.Fatalf("after %d pairs the memo holds %d, want %d", i+1, size(), want)
		}
	}
}
