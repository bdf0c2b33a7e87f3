package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"reflect"
	"testing"
)

// TestNewBundleLeanLeaf: a bundle's leaf shares its issuer name and URL
// lists with the other leaves of the same CA and drops only the raw
// extension list; every other field is what parsing the leaf gives, the
// caller's leaf is untouched, and the lean leaf still checks.
func TestNewBundleLeanLeaf(t *testing.T) {
	root := newCA(t, "root", nil)
	inter := newCA(t, "inter", root)
	urls := leafOpts{aia: []string{"http://vault:8200/v1/pki_int/ca"}, crl: []string{"http://vault:8200/v1/pki_int/crl"}}
	var bundles []*Bundle
	for _, cn := range []string{"a.example.internal", "b.example.internal"} {
		key, _ := GenerateKey("ec", 256)
		o := urls
		o.cn, o.dns = cn, []string{cn}
		// Each leaf parsed on its own, as each Vault response is.
		leaf, err := x509.ParseCertificate(inter.issue(t, key.Public(), o).Raw)
		if err != nil {
			t.Fatal(err)
		}
		aia := leaf.IssuingCertificateURL
		b := NewBundle(leaf, key, []*x509.Certificate{inter.cert, root.cert})
		if leaf.Extensions == nil || &leaf.IssuingCertificateURL[0] != &aia[0] {
			t.Fatal("NewBundle changed the caller's leaf")
		}
		if err := Check(b, Want{Names: Names{CommonName: cn, DNSNames: []string{cn}}, KeyType: "ec", KeyBits: 256}, now); err != nil {
			t.Fatalf("lean leaf fails the check: %v", err)
		}
		fresh, _ := x509.ParseCertificate(b.Leaf.Raw)
		fresh.Extensions = nil
		if !reflect.DeepEqual(fresh, b.Leaf) {
			t.Errorf("lean leaf differs from the parsed certificate in more than Extensions")
		}
		if b.Leaf.Extensions != nil {
			t.Error("lean leaf keeps the raw extension list")
		}
		if &b.Leaf.Issuer.Names[0] != &inter.cert.Subject.Names[0] {
			t.Error("lean leaf does not share the issuing CA's parsed subject")
		}
		bundles = append(bundles, b)
	}
	a, b := bundles[0].Leaf, bundles[1].Leaf
	if &a.IssuingCertificateURL[0] != &b.IssuingCertificateURL[0] || &a.CRLDistributionPoints[0] != &b.CRLDistributionPoints[0] {
		t.Error("two leaves of one CA hold separate copies of its URLs")
	}

	// Another CA with the same subject but its own key: its leaf takes
	// that CA's name, and the first CA is not taken for its issuer.
	twin := newCA(t, "inter", root)
	key, _ := GenerateKey("ec", 256)
	o := urls
	o.cn = "c.example.internal"
	leaf := twin.issue(t, key.Public(), o)
	tb := NewBundle(leaf, key, []*x509.Certificate{twin.cert, root.cert})
	if &tb.Leaf.Issuer.Names[0] != &twin.cert.Subject.Names[0] {
		t.Error("the twin CA's leaf does not share the twin's subject")
	}
	if len(tb.Intermediates) != 1 || tb.Intermediates[0] != twin.cert {
		t.Errorf("twin's leaf chains to %v, want the twin", subjects(tb.Intermediates))
	}
	wrong := NewBundle(leaf, key, []*x509.Certificate{inter.cert, root.cert})
	if len(wrong.Intermediates) != 0 {
		t.Error("a CA with the same subject but another key was taken for the leaf's issuer")
	}
	if err := wrong.VerifyChain(now); err == nil {
		t.Error("a leaf verifies against a CA that did not sign it")
	}
}

// TestNewBundleDetachesECKey: a bundle holds its own EC key object with
// the given key's numbers (so crypto/ecdsa's per-object cache of the key
// the CSR was signed with dies with that object), which still matches the
// leaf, signs, and encodes to exactly the bytes the given key does: key
// files written before stay equal and are not rewritten.
func TestNewBundleDetachesECKey(t *testing.T) {
	root := newCA(t, "root", nil)
	key, _ := GenerateKey("ec", 256)
	if _, err := CSR(key, Names{CommonName: "x"}); err != nil {
		t.Fatal(err)
	}
	leaf := root.issue(t, key.Public(), leafOpts{cn: "x"})
	b := NewBundle(leaf, key, []*x509.Certificate{root.cert})
	if b.Key == key {
		t.Fatal("the bundle holds the caller's key object")
	}
	if err := KeyMatches(b.Leaf, b.Key); err != nil {
		t.Fatal(err)
	}
	if b.Leaf.PublicKey != b.Key.Public() {
		t.Error("the leaf keeps its own copy of the public key its key holds")
	}
	other, _ := GenerateKey("ec", 256)
	if mb := NewBundle(leaf, other, []*x509.Certificate{root.cert}); !reflect.DeepEqual(mb.Leaf.PublicKey, leaf.PublicKey) || KeyMatches(mb.Leaf, mb.Key) == nil {
		t.Error("a key that does not match the leaf was given the leaf's place")
	}
	want, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []crypto.Signer{key, b.Key} {
		got, err := MarshalKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if block, _ := pem.Decode(got); block == nil || !bytes.Equal(block.Bytes, want) {
			t.Error("MarshalKey encodes differently from x509.MarshalPKCS8PrivateKey")
		}
	}
	if _, err := CSR(b.Key, Names{CommonName: "x"}); err != nil {
		t.Errorf("the bundle's key cannot sign: %v", err)
	}
	rsaKey, _ := GenerateKey("rsa", 2048)
	if rb := NewBundle(root.issue(t, rsaKey.Public(), leafOpts{cn: "y"}), rsaKey, []*x509.Certificate{root.cert}); rb.Key != rsaKey {
		t.Error("an RSA key was copied; only EC keys need detaching")
	}
}
