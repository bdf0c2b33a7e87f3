package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ParseCRLs reads the certificate revocation lists in data: every X509 CRL
// block of PEM data (what Vault serves at <mount>/crl/pem), or, when there
// is no PEM at all, one DER-encoded list (<mount>/crl). It parses; it does
// not check signatures, which needs the issuer (RevocationList.CheckSignatureFrom).
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	var crls []*x509.RevocationList
	rest := data
	sawPEM := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing crl %d: %w", len(crls)+1, err)
		}
		crls = append(crls, crl)
	}
	if !sawPEM && len(data) > 0 {
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("parsing der crl: %w", err)
		}
		return []*x509.RevocationList{crl}, nil
	}
	if len(crls) == 0 {
		return nil, errors.New("no PEM crl found")
	}
	return crls, nil
}
