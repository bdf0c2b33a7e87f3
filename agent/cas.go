package agent

import (
	"crypto/x509"
	"sync"

	"github.com/certkeeper/certkeeper/internal/pki"
)

// sharedCAs lets every certificate issued by the same CAs share one parsed
// copy of them and one copy of their PEM text. Each bundle used to hold its
// own parsed intermediate and root and each record its own chain text:
// about 5 KB per certificate, half of what the agent keeps per certificate
// (heap profile at N=1000), so 50 MB at 10,000 certificates for the same
// two CA certificates. It is a package variable because what it holds is
// immutable and keyed by content: DiskStatus and the agent may share it
// safely.
var sharedCAs = &caCache{}

// caCacheMax bounds the CA certificates and chain texts remembered; more
// than that means CAs are being rotated, and forgetting them all is the
// right answer.
const caCacheMax = 32

type caCache struct {
	mu    sync.Mutex
	certs map[string]*x509.Certificate // DER -> parsed
	text  map[string]string            // canonical copy of chain text
}

// parse returns the certificates in pemText, like pki.ParseCertificates,
// but each distinct certificate is parsed once and shared, whichever text
// it came in (Vault's issuing_ca and ca_chain, or a record on disk). The
// certificates are shared: callers must not modify them.
func (c *caCache) parse(pemText string) ([]*x509.Certificate, error) {
	return pki.ParseCertificatesWith([]byte(pemText), c.cert)
}

func (c *caCache) cert(der []byte) (*x509.Certificate, error) {
	c.mu.Lock()
	cert, ok := c.certs[string(der)]
	c.mu.Unlock()
	if ok {
		return cert, nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.certs[string(der)]; ok {
		return prev, nil // another pass parsed it meanwhile
	}
	if c.certs == nil || len(c.certs) >= caCacheMax {
		c.certs = map[string]*x509.Certificate{}
	}
	c.certs[string(der)] = cert
	return cert, nil
}

// intern returns a canonical copy of s, so equal chain texts share memory.
func (c *caCache) intern(s string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.text[s]; ok {
		return v
	}
	if c.text == nil || len(c.text) >= caCacheMax {
		c.text = map[string]string{}
	}
	c.text[s] = s
	return s
}
