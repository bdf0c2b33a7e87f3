package templates

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/internal/pki"
)

// Certificate is the value of the `certificate` template function. PEM
// fields end with a newline and are empty when there is nothing to put in
// them (Chain for a leaf issued straight by the root). The JSON names are
// what the stock "json" template writes.
type Certificate struct {
	// Name is the certificate block's label in the config.
	Name       string   `json:"name"`
	CommonName string   `json:"common_name"`
	DNSNames   []string `json:"dns_names"`
	IPSANs     []string `json:"ip_sans"`
	URISANs    []string `json:"uri_sans"`
	// Serial is colon-separated hex, as Vault prints it.
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Issuer is the issuing CA's common name.
	Issuer string `json:"issuer"`
	// KeyType is "ec", "rsa" or "ed25519"; KeyBits is 0 for ed25519.
	KeyType string `json:"key_type"`
	KeyBits int    `json:"key_bits"`
	// FingerprintSHA256 is the lowercase hex SHA-256 of the leaf's DER.
	FingerprintSHA256 string `json:"fingerprint_sha256"`

	// Cert is the leaf alone.
	Cert string `json:"cert"`
	// Key is the private key, PKCS#8 PEM.
	Key string `json:"key"`
	// Chain is the intermediates, nearest first, without the root.
	Chain string `json:"chain"`
	// Fullchain is Cert followed by Chain: what a TLS server sends.
	Fullchain string `json:"fullchain"`
	// CA is the intermediates and the root: what a peer needs to verify.
	CA string `json:"ca"`
	// Roots is the trust anchor(s) alone.
	Roots string `json:"roots"`
}

// NewCertificate is the template view of a held bundle.
func NewCertificate(name string, b *pki.Bundle) (Certificate, error) {
	key, err := pki.MarshalKey(b.Key)
	if err != nil {
		return Certificate{}, err
	}
	leaf := b.Leaf
	keyType, bits := pki.KeyInfo(leaf.PublicKey)
	sum := sha256.Sum256(leaf.Raw)
	c := Certificate{
		Name:              name,
		CommonName:        leaf.Subject.CommonName,
		DNSNames:          nonNil(leaf.DNSNames),
		IPSANs:            []string{},
		URISANs:           []string{},
		Serial:            pki.Serial(leaf),
		NotBefore:         leaf.NotBefore.UTC(),
		NotAfter:          leaf.NotAfter.UTC(),
		Issuer:            leaf.Issuer.CommonName,
		KeyType:           keyType,
		KeyBits:           bits,
		FingerprintSHA256: hex.EncodeToString(sum[:]),
		Cert:              string(pki.EncodeCerts(leaf)),
		Key:               string(key),
		Chain:             string(pki.EncodeCerts(b.Intermediates...)),
		Fullchain:         string(pki.EncodeCerts(append([]*x509.Certificate{leaf}, b.Intermediates...)...)),
		CA:                string(pki.EncodeCerts(append(append([]*x509.Certificate{}, b.Intermediates...), b.Roots...)...)),
		Roots:             string(pki.EncodeCerts(b.Roots...)),
	}
	for _, ip := range leaf.IPAddresses {
		c.IPSANs = append(c.IPSANs, ip.String())
	}
	for _, u := range leaf.URIs {
		c.URISANs = append(c.URISANs, u.String())
	}
	return c, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sampleKeyMarker is the body of the placeholder key the dry run renders.
const sampleKeyMarker = "certkeeper-validate-sample-private-key"

// withPlaceholders fills what a config cannot know before issuance with
// values of the right shape, so a dry run exercises the same code paths as
// a real render.
func (c Certificate) withPlaceholders(now time.Time) Certificate {
	pemOf := func(typ, body string) string {
		return "-----BEGIN " + typ + "-----\n" + body + "\n-----END " + typ + "-----\n"
	}
	now = now.UTC().Truncate(time.Second)
	c.DNSNames, c.IPSANs, c.URISANs = nonNil(c.DNSNames), nonNil(c.IPSANs), nonNil(c.URISANs)
	if c.Serial == "" {
		c.Serial = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33"
	}
	if c.NotBefore.IsZero() {
		c.NotBefore, c.NotAfter = now.Add(-30*time.Second), now.Add(72*time.Hour)
	}
	if c.Issuer == "" {
		c.Issuer = "certkeeper validate sample issuing CA"
	}
	if c.FingerprintSHA256 == "" {
		c.FingerprintSHA256 = strings.Repeat("00", sha256.Size)
	}
	c.Cert = pemOf("CERTIFICATE", "certkeeper-validate-sample-leaf")
	c.Key = pemOf("PRIVATE KEY", sampleKeyMarker)
	c.Chain = pemOf("CERTIFICATE", "certkeeper-validate-sample-intermediate")
	c.Roots = pemOf("CERTIFICATE", "certkeeper-validate-sample-root")
	c.Fullchain = c.Cert + c.Chain
	c.CA = c.Chain + c.Roots
	return c
}
