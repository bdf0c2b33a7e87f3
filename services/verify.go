package services

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/sinks"
)

// verify connects to the service until it serves one of the certificates
// that notify it, as they were on disk when it was reloaded (loaded) or as
// they are now, or until the verify timeout passes. It returns the serial
// it saw last. A newer certificate written while this runs belongs to the
// next batch and must not make this one look unserved.
func (m *Manager) verify(ctx context.Context, s config.Service, loaded []expected) (served string, err error) {
	deadline := m.now().Add(s.Verify.Timeout)
	for {
		served, err = m.verifyOnce(ctx, s, loaded...)
		if err == nil || !m.now().Before(deadline) {
			return served, err
		}
		select {
		case <-ctx.Done():
			return served, err
		case <-time.After(m.interval):
		}
	}
}

func (m *Manager) verifyOnce(ctx context.Context, s config.Service, loaded ...expected) (served string, err error) {
	want, err := expectedLeaves(m.cfg, s.Name)
	if err != nil {
		return "", err
	}
	for _, l := range loaded {
		if !slices.ContainsFunc(want, func(w expected) bool { return w.leaf.Equal(l.leaf) }) {
			want = append(want, l)
		}
	}
	byClass := map[string][]expected{}
	var classes []string
	for _, w := range want {
		c := keyClass(w.leaf)
		if _, ok := byClass[c]; !ok {
			classes = append(classes, c)
		}
		byClass[c] = append(byClass[c], w)
	}
	if len(classes) == 1 {
		return m.verifyAs(ctx, s, "", want)
	}
	// A server with an EC and an RSA certificate presents one per
	// handshake: each is asked for by offering only the TLS 1.2 cipher
	// suites of its key type, so a reload that left one behind is seen.
	var servedAll []string
	for _, c := range classes {
		got, err := m.verifyAs(ctx, s, c, byClass[c])
		if err != nil {
			return strings.Join(append(servedAll, got), ","), err
		}
		servedAll = append(servedAll, got)
	}
	return strings.Join(servedAll, ","), nil
}

// verifyAs handshakes once (offering only key class's suites, unless
// class is empty) and checks that the leaf served is one of want.
func (m *Manager) verifyAs(ctx context.Context, s config.Service, class string, want []expected) (string, error) {
	leaf, err := servedLeaf(ctx, s.Verify.Address, s.Verify.ServerName, s.Verify.Timeout, class)
	if err != nil {
		return "", fmt.Errorf("connecting to %s: %w", s.Verify.Address, err)
	}
	served := pki.Serial(leaf)
	var expected []string
	for _, w := range want {
		if leaf.Equal(w.leaf) {
			return served, nil
		}
		expected = append(expected, fmt.Sprintf("%s (certificate %q)", pki.Serial(w.leaf), w.name))
	}
	return served, &mismatchError{msg: fmt.Sprintf("%s serves serial %s, but the files on disk hold %s", s.Verify.Address, served, strings.Join(expected, " or "))}
}

// keyClass groups certificates by the TLS 1.2 cipher suites that make a
// server present them.
func keyClass(c *x509.Certificate) string {
	if c.PublicKeyAlgorithm == x509.RSA {
		return "rsa"
	}
	return "ecdsa" // ECDSA and Ed25519 both sign ECDHE_ECDSA suites
}

var classSuites = map[string][]uint16{
	"ecdsa": {tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	"rsa":   {tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
}

// mismatchError is a server that answers with another certificate than
// the one on disk (as opposed to one that does not answer).
type mismatchError struct{ msg string }

func (e *mismatchError) Error() string { return e.msg }

type expected struct {
	name string
	leaf *x509.Certificate
}

// expectedLeaves reads, now, the leaf of every certificate that notifies
// the service: what is on disk is what the server should serve.
func expectedLeaves(cfg *config.Config, service string) ([]expected, error) {
	var out []expected
	for _, c := range cfg.CertificatesNotifying(service) {
		data, err := sinks.ReadFile(c.Files.Cert)
		if err != nil {
			return nil, err
		}
		certs, err := pki.ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Files.Cert, err)
		}
		out = append(out, expected{name: c.Name, leaf: certs[0]})
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate notifies this service")
	}
	return out, nil
}

// servedLeaf returns the leaf certificate the server at address presents.
// The handshake itself need not succeed: a server that requires a client
// certificate aborts it after presenting its own, which is all this needs.
func servedLeaf(ctx context.Context, address, serverName string, timeout time.Duration, class string) (*x509.Certificate, error) {
	var leaf *x509.Certificate
	conf := &tls.Config{
		ServerName: serverName,
		// The served leaf is compared byte for byte with the one on disk,
		// which is stricter than chain validation and works whether or not
		// this host trusts the CA.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				leaf = cs.PeerCertificates[0]
			}
			return nil
		},
	}
	if class != "" {
		conf.MaxVersion, conf.CipherSuites = tls.VersionTLS12, classSuites[class]
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &tls.Dialer{Config: conf}
	conn, err := d.DialContext(ctx, "tcp", address)
	if conn != nil {
		conn.Close()
	}
	if leaf != nil {
		return leaf, nil
	}
	if err == nil {
		err = errors.New("the server presented no certificate")
	}
	return nil, err
}
