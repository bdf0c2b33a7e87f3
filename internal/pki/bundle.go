package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bundle is a certificate with its key and the CA chain that issued it.
type Bundle struct {
	Leaf *x509.Certificate
	Key  crypto.Signer
	// Intermediates are the issuing CAs below the root, nearest first.
	Intermediates []*x509.Certificate
	// Roots are the trust anchors the chain ends at: self-signed CAs, or,
	// when Vault does not know the root, the topmost CA it returned.
	Roots []*x509.Certificate
}

// ParseCertificates reads every CERTIFICATE block in PEM data, and fails on
// data that holds none.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	return ParseCertificatesWith(data, x509.ParseCertificate)
}

// ParseCertificatesWith is ParseCertificates with the DER parser given, so
// a cache can hand back a certificate it parsed before.
func ParseCertificatesWith(data []byte, parse func(der []byte) (*x509.Certificate, error)) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := parse(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// NewBundle assembles a bundle from a leaf, its key, and the CA
// certificates Vault returned (in any order, duplicates allowed). The
// bundle's leaf is a lean copy of leaf (see lean); leaf itself is not
// changed.
func NewBundle(leaf *x509.Certificate, key crypto.Signer, cas []*x509.Certificate) *Bundle {
	if key != nil {
		key = detached(key)
	}
	b := &Bundle{Leaf: lean(leaf, key, cas), Key: key}
	var uniq []*x509.Certificate
	for _, c := range cas {
		if c.Equal(leaf) || slices.ContainsFunc(uniq, c.Equal) {
			continue
		}
		uniq = append(uniq, c)
	}
	for _, c := range uniq {
		if selfSigned(c) {
			b.Roots = append(b.Roots, c)
		}
	}
	// Walk up from the leaf so intermediates come out nearest first, which
	// is the order TLS servers must send them in.
	cur := leaf
	for range uniq {
		parent := issuerOf(cur, uniq)
		if parent == nil || selfSigned(parent) {
			break
		}
		b.Intermediates = append(b.Intermediates, parent)
		cur = parent
	}
	if len(b.Roots) == 0 && len(b.Intermediates) > 0 {
		// Vault's chain stops below the root: trust its top as the anchor.
		b.Roots = b.Intermediates[len(b.Intermediates)-1:]
		b.Intermediates = b.Intermediates[:len(b.Intermediates)-1]
	}
	return b
}

// lean returns a copy of leaf that shares what it can with the CAs that
// issued it and drops what nothing reads. The agent holds one parsed leaf
// per certificate for the life of the process, 3.6 KB each for Vault's EC
// leaves (heap profile at 10,000 certificates: 37 MB, the largest part of
// the heap); this makes it about 2.6 KB:
//   - Issuer is parsed from the same bytes as the issuing CA's Subject
//     (RawIssuer equals its RawSubject), so the CA's parsed name is used;
//   - the AIA and CRL distribution URLs are the same in every leaf of a
//     CA, so equal strings share one copy;
//   - Extensions, the raw list of every extension, is nil: each extension
//     certkeeper or crypto/x509 uses is parsed into its own field, and
//     the bytes stay in Raw;
//   - PublicKey is the key's own public half when they are equal (Check
//     refuses a bundle whose key does not match its leaf anyway).
//
// Everything else is leaf's, unchanged; nothing may modify the shared parts.
func lean(leaf *x509.Certificate, key crypto.Signer, cas []*x509.Certificate) *x509.Certificate {
	l := *leaf
	l.Extensions = nil
	if key != nil && KeyMatches(leaf, key) == nil {
		l.PublicKey = key.Public()
	}
	for _, ca := range cas {
		if bytes.Equal(l.RawIssuer, ca.RawSubject) {
			l.Issuer = ca.Subject
			break
		}
	}
	l.IssuingCertificateURL = leanURLs.strings(l.IssuingCertificateURL)
	l.CRLDistributionPoints = leanURLs.strings(l.CRLDistributionPoints)
	l.OCSPServer = leanURLs.strings(l.OCSPServer)
	return &l
}

// leanURLs holds one copy of each list of URLs leaves carry. They name the
// issuing CA's endpoints, so there are a few per CA.
var leanURLs = &urlLists{}

// urlListsMax bounds the lists kept; more means CAs are being rotated or
// leaves come from many, and forgetting them all is right.
const urlListsMax = 64

type urlLists struct {
	mu sync.Mutex
	m  map[string][]string // the URLs joined by newlines -> one shared list
}

func (u *urlLists) strings(urls []string) []string {
	if len(urls) == 0 {
		return urls
	}
	key := strings.Join(urls, "\n")
	u.mu.Lock()
	defer u.mu.Unlock()
	if shared, ok := u.m[key]; ok {
		return shared
	}
	if u.m == nil || len(u.m) >= urlListsMax {
		u.m = map[string][]string{}
	}
	u.m[key] = urls
	return urls
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && signedBy(c, c)
}

// issuerOf returns the certificate in pool that issued c, chosen by name:
// its subject is c's issuer and, where both carry key ids, its key is the
// one c names. Only when several fit does a signature decide. The leaf's
// signature is checked once, by Check's chain verification, which every
// bundle goes through before it is written or served: checking it here
// too cost a second ECDSA verification per issuance (16% of the agent's
// CPU profile at 1,000 certificates). A pick that did not sign c cannot
// pass that verification, as no pick could not before.
func issuerOf(c *x509.Certificate, pool []*x509.Certificate) *x509.Certificate {
	var fit []*x509.Certificate
	for _, p := range pool {
		if !bytes.Equal(c.RawIssuer, p.RawSubject) {
			continue
		}
		if len(c.AuthorityKeyId) > 0 && len(p.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, p.SubjectKeyId) {
			continue
		}
		fit = append(fit, p)
	}
	if len(fit) == 1 {
		return fit[0]
	}
	for _, p := range fit {
		if signedBy(c, p) {
			return p
		}
	}
	return nil
}

// Want is what a certificate must be for the config to be satisfied.
type Want struct {
	Names
	KeyType string
	KeyBits int
}

// Check decides whether b may be served at time now: its key is the
// bundle's, it names exactly what was asked, it is valid now, and it chains
// to the bundle's roots. Nothing is written unless this passes.
func Check(b *Bundle, want Want, now time.Time) error {
	_, err := CheckSigners(b, want, now)
	return err
}

// CheckSigners is Check that also returns the CA certificates of b that
// the chain verification found to have signed the leaf, so a caller that
// needs the leaf's issuer does not check that signature again (each ECDSA
// verification of a leaf cost about 100 us; the agent did it 4 more
// times per issuance).
func CheckSigners(b *Bundle, want Want, now time.Time) ([]*x509.Certificate, error) {
	var errs []error
	if err := KeyMatches(b.Leaf, b.Key); err != nil {
		errs = append(errs, err)
	}
	if err := CheckNames(b.Leaf, want.Names); err != nil {
		errs = append(errs, err)
	}
	if t, bits := KeyInfo(b.Leaf.PublicKey); t != want.KeyType || (want.KeyBits != 0 && bits != want.KeyBits) {
		errs = append(errs, fmt.Errorf("key is %s %d, config asks for %s %d", t, bits, want.KeyType, want.KeyBits))
	}
	if err := CheckValidity(b.Leaf, now); err != nil {
		errs = append(errs, err)
	}
	chains, err := b.verifyChain(now)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var signers []*x509.Certificate
	for _, chain := range chains {
		if len(chain) > 1 && !slices.ContainsFunc(signers, chain[1].Equal) {
			signers = append(signers, chain[1])
		}
	}
	return signers, nil
}

// KeyMatches fails when cert was not issued for key.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) error {
	if key == nil {
		return errors.New("no private key")
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("certificate public key does not match the private key")
	}
	return nil
}

// CheckValidity fails when cert is not yet or no longer valid at now.
func CheckValidity(cert *x509.Certificate, now time.Time) error {
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate is not valid until %s", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(cert.NotAfter) {
		return fmt.Errorf("certificate expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// VerifyChain fails unless the leaf chains to one of the bundle's roots.
func (b *Bundle) VerifyChain(now time.Time) error {
	_, err := b.verifyChain(now)
	return err
}

// verifyChain is VerifyChain returning the chains found, leaf first.
func (b *Bundle) verifyChain(now time.Time) ([][]*x509.Certificate, error) {
	if len(b.Roots) == 0 {
		return nil, errors.New("no CA certificate to verify the chain against")
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, r := range b.Roots {
		opts.Roots.AddCert(r)
	}
	for _, c := range b.Intermediates {
		opts.Intermediates.AddCert(c)
	}
	chains, err := b.Leaf.Verify(opts)
	if err != nil {
		return nil, fmt.Errorf("certificate does not chain to the issuing CA: %w", err)
	}
	return chains, nil
}

// CheckNames fails unless cert is for exactly the names asked. Vault copies
// a hostname or IP common name into the SANs, so that one extra is allowed.
func CheckNames(cert *x509.Certificate, want Names) error {
	var errs []error
	if cert.Subject.CommonName != want.CommonName {
		errs = append(errs, fmt.Errorf("common name is %q, want %q", cert.Subject.CommonName, want.CommonName))
	}
	dns := lowerAll(cert.DNSNames)
	wantDNS := lowerAll(want.DNSNames)
	if missing := minus(wantDNS, dns); len(missing) > 0 {
		errs = append(errs, fmt.Errorf("DNS names %v are missing", missing))
	}
	if extra := minus(dns, append(wantDNS, strings.ToLower(want.CommonName))); len(extra) > 0 {
		errs = append(errs, fmt.Errorf("DNS names %v were not asked for", extra))
	}
	ips := ipStrings(cert.IPAddresses)
	wantIPs := ipStrings(want.IPs)
	if missing := minus(wantIPs, ips); len(missing) > 0 {
		errs = append(errs, fmt.Errorf("IP SANs %v are missing", missing))
	}
	cnIP := ""
	if ip := net.ParseIP(want.CommonName); ip != nil {
		cnIP = ip.String()
	}
	if extra := minus(ips, append(wantIPs, cnIP)); len(extra) > 0 {
		errs = append(errs, fmt.Errorf("IP SANs %v were not asked for", extra))
	}
	var uris []string
	for _, u := range cert.URIs {
		uris = append(uris, u.String())
	}
	if missing, extra := minus(want.URIs, uris), minus(uris, want.URIs); len(missing)+len(extra) > 0 {
		errs = append(errs, fmt.Errorf("URI SANs are %v, want %v", uris, want.URIs))
	}
	return errors.Join(errs...)
}

func lowerAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(s)
	}
	return out
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// minus returns the elements of a that are not in b.
func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// Serial formats a certificate's serial number the way Vault prints it:
// colon-separated pairs of lowercase hex digits ("1a:2b:...").
func Serial(c *x509.Certificate) string {
	hex := fmt.Sprintf("%x", c.SerialNumber)
	if len(hex)%2 == 1 {
		hex = "0" + hex
	}
	var parts []string
	for i := 0; i < len(hex); i += 2 {
		parts = append(parts, hex[i:i+2])
	}
	return strings.Join(parts, ":")
}

// EncodeCerts encodes certificates as concatenated PEM blocks.
func EncodeCerts(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}
