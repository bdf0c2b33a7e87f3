package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(t *testing.T, name string, parent *testCA) *testCA {
	t.Helper()
	key, err := GenerateKey("ec", 256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	signer, issuer := key, tmpl
	if parent != nil {
		signer, issuer = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

type leafOpts struct {
	cn        string
	dns       []string
	ips       []net.IP
	uris      []string
	notBefore time.Time
	notAfter  time.Time
	aia, crl  []string // issuing CA and CRL URLs, as Vault's leaves carry
}

func (ca *testCA) issue(t *testing.T, pub crypto.PublicKey, o leafOpts) *x509.Certificate {
	t.Helper()
	if o.notBefore.IsZero() {
		o.notBefore = now.Add(-time.Minute)
	}
	if o.notAfter.IsZero() {
		o.notAfter = now.Add(72 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: o.cn},
		DNSNames:     o.dns,
		IPAddresses:  o.ips,
		NotBefore:    o.notBefore,
		NotAfter:     o.notAfter,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},

		IssuingCertificateURL: o.aia,
		CRLDistributionPoints: o.crl,
	}
	for _, u := range o.uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func TestCheck(t *testing.T) {
	root := newCA(t, "root", nil)
	inter := newCA(t, "intermediate", root)
	otherRoot := newCA(t, "other root", nil)
	otherInter := newCA(t, "other intermediate", otherRoot)
	key, _ := GenerateKey("ec", 256)
	otherKey, _ := GenerateKey("ec", 256)
	want := Want{
		Names:   Names{CommonName: "web1.example.internal", DNSNames: []string{"web1.example.internal", "localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}},
		KeyType: "ec", KeyBits: 256,
	}
	good := leafOpts{cn: "web1.example.internal", dns: []string{"web1.example.internal", "localhost"}, ips: []net.IP{net.ParseIP("127.0.0.1")}}

	tests := []struct {
		name    string
		bundle  *Bundle
		wantErr string // empty: must pass
	}{
		{"good", NewBundle(inter.issue(t, key.Public(), good), key, []*x509.Certificate{inter.cert, root.cert}), ""},
		{"chain in any order", NewBundle(inter.issue(t, key.Public(), good), key, []*x509.Certificate{root.cert, inter.cert}), ""},
		{"wrong key", NewBundle(inter.issue(t, otherKey.Public(), good), key, []*x509.Certificate{inter.cert, root.cert}), "does not match the private key"},
		{"missing SAN", NewBundle(inter.issue(t, key.Public(), leafOpts{cn: good.cn, dns: []string{"web1.example.internal"}, ips: good.ips}), key, []*x509.Certificate{inter.cert, root.cert}), "DNS names [localhost] are missing"},
		{"extra SAN", NewBundle(inter.issue(t, key.Public(), leafOpts{cn: good.cn, dns: append(good.dns, "evil.example.com"), ips: good.ips}), key, []*x509.Certificate{inter.cert, root.cert}), "[evil.example.com] were not asked for"},
		{"wrong CN", NewBundle(inter.issue(t, key.Public(), leafOpts{cn: "web2.example.internal", dns: good.dns, ips: good.ips}), key, []*x509.Certificate{inter.cert, root.cert}), `common name is "web2.example.internal"`},
		{"missing IP", NewBundle(inter.issue(t, key.Public(), leafOpts{cn: good.cn, dns: good.dns}), key, []*x509.Certificate{inter.cert, root.cert}), "IP SANs [127.0.0.1] are missing"},
		{"expired", NewBundle(inter.issue(t, key.Public(), leafOpts{cn: good.cn, dns: good.dns, ips: good.ips, notBefore: now.Add(-72 * time.Hour), notAfter: now.Add(-time.Hour)}), key, []*x509.Certificate{inter.cert, root.cert}), "expired"},
		{"not yet valid", NewBundle(inter.issue(t, key.Public(), leafOpts{cn: good.cn, dns: good.dns, ips: good.ips, notBefore: now.Add(time.Hour)}), key, []*x509.Certificate{inter.cert, root.cert}), "not valid until"},
		{"untrusted chain", NewBundle(otherInter.issue(t, key.Public(), good), key, []*x509.Certificate{inter.cert, root.cert}), "does not chain"},
		{"no CA at all", NewBundle(inter.issue(t, key.Public(), good), key, nil), "no CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.bundle, want, now)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("rejected a good certificate: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("accepted a bad certificate (want error containing %q)", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not say %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckRejectsWrongKeyType(t *testing.T) {
	root := newCA(t, "root", nil)
	key, _ := GenerateKey("rsa", 2048)
	leaf := root.issue(t, key.Public(), leafOpts{cn: "a.example.internal"})
	err := Check(NewBundle(leaf, key, []*x509.Certificate{root.cert}), Want{Names: Names{CommonName: "a.example.internal"}, KeyType: "ec", KeyBits: 256}, now)
	if err == nil || !strings.Contains(err.Error(), "key is rsa 2048, config asks for ec 256") {
		t.Fatalf("err = %v", err)
	}
}

// TestCheckURISANs: uri_sans (SPIFFE IDs and the like) must be exactly
// what was asked, like DNS names and IPs: a certificate missing one, or
// carrying one nobody asked for, would authenticate the wrong workload.
func TestCheckURISANs(t *testing.T) {
	root := newCA(t, "root", nil)
	key, _ := GenerateKey("ec", 256)
	const id, other = "spiffe://example.internal/web", "spiffe://example.internal/db"
	want := Want{Names: Names{CommonName: "web.example.internal", URIs: []string{id}}, KeyType: "ec", KeyBits: 256}
	for _, tt := range []struct {
		name    string
		uris    []string
		wantErr string
	}{
		{"exact", []string{id}, ""},
		{"missing", nil, "URI SANs are [], want [" + id + "]"},
		{"another", []string{other}, "URI SANs are [" + other + "], want [" + id + "]"},
		{"extra", []string{id, other}, "URI SANs are [" + id + " " + other + "], want [" + id + "]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaf := root.issue(t, key.Public(), leafOpts{cn: "web.example.internal", uris: tt.uris})
			err := Check(NewBundle(leaf, key, []*x509.Certificate{root.cert}), want, now)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	// Asking for none: a certificate with one is refused too.
	leaf := root.issue(t, key.Public(), leafOpts{cn: "web.example.internal", uris: []string{id}})
	if err := Check(NewBundle(leaf, key, []*x509.Certificate{root.cert}), Want{Names: Names{CommonName: "web.example.internal"}, KeyType: "ec", KeyBits: 256}, now); err == nil {
		t.Error("a URI SAN nobody asked for was accepted")
	}
}

func TestNewBundleOrdersChain(t *testing.T) {
	root := newCA(t, "root", nil)
	i1 := newCA(t, "i1", root)
	i2 := newCA(t, "i2", i1)
	key, _ := GenerateKey("ec", 256)
	leaf := i2.issue(t, key.Public(), leafOpts{cn: "x"})
	b := NewBundle(leaf, key, []*x509.Certificate{root.cert, i1.cert, i2.cert, i1.cert})
	if len(b.Intermediates) != 2 || !b.Intermediates[0].Equal(i2.cert) || !b.Intermediates[1].Equal(i1.cert) {
		t.Errorf("intermediates not nearest-first: %v", subjects(b.Intermediates))
	}
	if len(b.Roots) != 1 || !b.Roots[0].Equal(root.cert) {
		t.Errorf("roots = %v", subjects(b.Roots))
	}
	// Without the root, the topmost intermediate becomes the anchor.
	b = NewBundle(leaf, key, []*x509.Certificate{i2.cert, i1.cert})
	if len(b.Roots) != 1 || !b.Roots[0].Equal(i1.cert) || len(b.Intermediates) != 1 {
		t.Errorf("partial chain: roots %v intermediates %v", subjects(b.Roots), subjects(b.Intermediates))
	}
	if err := b.VerifyChain(now); err != nil {
		t.Errorf("partial chain does not verify: %v", err)
	}
}

func subjects(cs []*x509.Certificate) []string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Subject.CommonName)
	}
	return s
}

func TestKeyRoundTrip(t *testing.T) {
	for _, kt := range []struct {
		typ  string
		bits int
	}{{"ec", 256}, {"ec", 384}, {"rsa", 2048}, {"ed25519", 0}} {
		key, err := GenerateKey(kt.typ, kt.bits)
		if err != nil {
			t.Fatal(err)
		}
		pemKey, err := MarshalKey(key)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseKey(pemKey)
		if err != nil {
			t.Fatalf("%s: %v", kt.typ, err)
		}
		if typ, bits := KeyInfo(back.Public()); typ != kt.typ || bits != kt.bits {
			t.Errorf("round trip of %s %d gave %s %d", kt.typ, kt.bits, typ, bits)
		}
		csr, err := CSR(key, Names{CommonName: "a.example.internal", DNSNames: []string{"a.example.internal"}})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(csr), "CERTIFICATE REQUEST") {
			t.Errorf("csr is not PEM: %q", csr)
		}
	}
}

func TestParseKeyNeverQuotesInput(t *testing.T) {
	secret := "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----\n"
	_, err := ParseKey([]byte(secret))
	if err == nil {
		t.Fatal("garbage key accepted")
	}
	if strings.Contains(err.Error(), "U0VDUkVU") {
		t.Errorf("error leaks key bytes: %v", err)
	}
}

// TestParseCertificates: every CERTIFICATE block in order, whatever else
// the PEM holds (a key, another kind of block); a broken certificate is
// named by its position.
func TestParseCertificates(t *testing.T) {
	root := newCA(t, "root", nil)
	inter := newCA(t, "intermediate", root)
	key, _ := GenerateKey("ec", 256)
	keyPEM, _ := MarshalKey(key)
	leaf := inter.issue(t, key.Public(), leafOpts{cn: "web.example.internal"})
	mixed := slices.Concat(keyPEM, EncodeCerts(leaf), pemEncode("X509 CRL", []byte{1}), EncodeCerts(inter.cert))
	certs, err := ParseCertificates(mixed)
	if err != nil || len(certs) != 2 || !certs[0].Equal(leaf) || !certs[1].Equal(inter.cert) {
		t.Fatalf("got %d certificates, %v; want the leaf then the intermediate", len(certs), err)
	}
	if _, err := ParseCertificates(keyPEM); err == nil || err.Error() != "no PEM certificate found" {
		t.Errorf("a key alone: %v", err)
	}
	broken := slices.Concat(EncodeCerts(leaf), pemEncode("CERTIFICATE", []byte{0x30, 0x03, 1, 2, 3}))
	if _, err := ParseCertificates(broken); err == nil || !strings.HasPrefix(err.Error(), "parsing certificate 2: ") {
		t.Errorf("a broken second certificate: %v", err)
	}
}

// TestCheckKeySize: a key of the right type but another size is refused;
// key_bits 0 means any size.
func TestCheckKeySize(t *testing.T) {
	root := newCA(t, "root", nil)
	key, _ := GenerateKey("ec", 256)
	b := NewBundle(root.issue(t, key.Public(), leafOpts{cn: "a.example.internal"}), key, []*x509.Certificate{root.cert})
	names := Names{CommonName: "a.example.internal"}
	if err := Check(b, Want{Names: names, KeyType: "ec", KeyBits: 384}, now); err == nil || !strings.Contains(err.Error(), "key is ec 256, config asks for ec 384") {
		t.Errorf("ec 256 for ec 384: %v", err)
	}
	if err := Check(b, Want{Names: names, KeyType: "ec", KeyBits: 0}, now); err != nil {
		t.Errorf("ec 256 when any size will do: %v", err)
	}
}

// TestCheckIPCommonName: Vault copies an IP common name into the IP SANs;
// that one extra is allowed, any other is not.
func TestCheckIPCommonName(t *testing.T) {
	root := newCA(t, "root", nil)
	key, _ := GenerateKey("ec", 256)
	want := Want{Names: Names{CommonName: "10.0.0.7"}, KeyType: "ec", KeyBits: 256}
	copied := root.issue(t, key.Public(), leafOpts{cn: "10.0.0.7", ips: []net.IP{net.ParseIP("10.0.0.7")}})
	if err := Check(NewBundle(copied, key, []*x509.Certificate{root.cert}), want, now); err != nil {
		t.Errorf("IP common name copied into the SANs: %v", err)
	}
	extra := root.issue(t, key.Public(), leafOpts{cn: "10.0.0.7", ips: []net.IP{net.ParseIP("10.0.0.7"), net.ParseIP("10.0.0.8")}})
	if err := Check(NewBundle(extra, key, []*x509.Certificate{root.cert}), want, now); err == nil || !strings.Contains(err.Error(), "IP SANs [10.0.0.8] were not asked for") {
		t.Errorf("an extra IP SAN: %v", err)
	}
}

// TestSerial: the format Vault prints, which status, logs, records and
// templates all show: pairs of hex digits, a leading zero when odd.
func TestSerial(t *testing.T) {
	for n, want := range map[int64]string{
		0x1:      "01",
		0xab:     "ab",
		0x1abcd:  "01:ab:cd",
		0x7f0000: "7f:00:00",
	} {
		if got := Serial(&x509.Certificate{SerialNumber: big.NewInt(n)}); got != want {
			t.Errorf("Serial(%#x) = %q, want %q", n, got, want)
		}
	}
}

// TestCheckSignersAreTheLeafsIssuer: what CheckSigners returns is what
// callers take as the leaf's issuer without checking its signature, so it
// must be the CA that signed the leaf and nothing else, even beside a CA
// of the same name with another key (a CA rotated under its name), and
// nothing when the bundle fails the check.
func TestCheckSignersAreTheLeafsIssuer(t *testing.T) {
	root := newCA(t, "root", nil)
	inter := newCA(t, "intermediate", root)
	sameName := newCA(t, "intermediate", root)
	key, _ := GenerateKey("ec", 256)
	want := Want{Names: Names{CommonName: "x"}, KeyType: "ec", KeyBits: 256}
	leaf := inter.issue(t, key.Public(), leafOpts{cn: "x"})
	b := &Bundle{Leaf: leaf, Key: key, Intermediates: []*x509.Certificate{sameName.cert, inter.cert}, Roots: []*x509.Certificate{root.cert}}
	signers, err := CheckSigners(b, want, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(signers) != 1 || !signers[0].Equal(inter.cert) {
		t.Errorf("signers = %d certificates, want only the intermediate that signed the leaf", len(signers))
	}
	// Signed by the root directly.
	direct := root.issue(t, key.Public(), leafOpts{cn: "x"})
	signers, err = CheckSigners(NewBundle(direct, key, []*x509.Certificate{root.cert}), want, now)
	if err != nil || len(signers) != 1 || !signers[0].Equal(root.cert) {
		t.Errorf("leaf signed by the root: signers %d, error %v; want the root", len(signers), err)
	}
	expired := inter.issue(t, key.Public(), leafOpts{cn: "x", notBefore: now.Add(-72 * time.Hour), notAfter: now.Add(-time.Hour)})
	bad := NewBundle(expired, key, []*x509.Certificate{inter.cert, root.cert})
	signers, err = CheckSigners(bad, want, now)
	if err == nil || signers != nil || err.Error() != Check(bad, want, now).Error() {
		t.Errorf("failing bundle: signers %d, error %v; want none and Check's error", len(signers), err)
	}
}
