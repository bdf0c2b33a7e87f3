// Package pki makes keys and CSRs on the host and decides whether a
// certificate (fresh from Vault or found on disk) is fit to be served.
// It only uses the standard library and touches neither disk nor network.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
)

// GenerateKey makes a new private key of the given type ("ec", "rsa",
// "ed25519") and size.
func GenerateKey(keyType string, bits int) (crypto.Signer, error) {
	switch keyType {
	case "ec":
		curve, err := curveFor(bits)
		if err != nil {
			return nil, err
		}
		return ecdsa.GenerateKey(curve, rand.Reader)
	case "rsa":
		return rsa.GenerateKey(rand.Reader, bits)
	case "ed25519":
		_, key, err := ed25519.GenerateKey(rand.Reader)
		return key, err
	}
	return nil, fmt.Errorf("unknown key type %q", keyType)
}

func curveFor(bits int) (elliptic.Curve, error) {
	switch bits {
	case 256:
		return elliptic.P256(), nil
	case 384:
		return elliptic.P384(), nil
	case 521:
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("no EC curve of %d bits", bits)
}

// KeyInfo names a public key's type and size as the config does.
func KeyInfo(pub crypto.PublicKey) (keyType string, bits int) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ec", k.Curve.Params().BitSize
	case *rsa.PublicKey:
		return "rsa", k.N.BitLen()
	case ed25519.PublicKey:
		return "ed25519", 0
	}
	return fmt.Sprintf("%T", pub), 0
}

// MarshalKey encodes a private key as PKCS#8 PEM, which nginx, Apache,
// HAProxy and Java all read for every key type.
func MarshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(detached(key))
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads the first private key in PEM data, in PKCS#8, PKCS#1 or
// SEC 1 form (Vault returns the latter two for issue requests). Errors never
// quote the input: it may be key material.
func ParseKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s block: malformed key", block.Type)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		return signer, nil
	}
}

// Names are the identities a certificate is for.
type Names struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	URIs       []string
}

// CSR makes a PEM certificate signing request for names, signed by key.
func CSR(key crypto.Signer, names Names) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: names.CommonName},
		DNSNames:    names.DNSNames,
		IPAddresses: names.IPs,
	}
	for _, u := range names.URIs {
		parsed, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("uri san %q: %w", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("creating csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// detached returns an EC key as a new object sharing key's numbers, and
// any other key as it is. crypto/ecdsa keeps, for each key object it signs
// or encodes with, a converted copy in a cache that lives as long as the
// object: for keys held for the life of the process, one entry per
// certificate, about 500 bytes each (heap profile at 10,000 certificates:
// 5 MB). A bundle holds a detached key and MarshalKey encodes through one,
// so only a key that signs again (cert auth's client key) is cached.
func detached(key crypto.Signer) crypto.Signer {
	if k, ok := key.(*ecdsa.PrivateKey); ok {
		return &ecdsa.PrivateKey{PublicKey: k.PublicKey, D: k.D}
	}
	return key
}
