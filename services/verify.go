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
	leaf, err := servedLeaf(ctx, s.Verify.Address, s.Verify.ServerName, s.Verify.Timeout)
	if err != nil {
		return "", fmt.Errorf("connecting to %s: %w", s.Verify.Address, err)
	}
	served = pki.Serial(leaf)
	var expected []string
	for _, w := range want {
		if leaf.Equal(w.leaf) {
			return served, nil
		}
		expected = append(expected, fmt.Sprintf("%s (certificate %q)", pki.Serial(w.leaf), w.name))
	}
	return served, &mismatchError{msg: fmt.Sprintf("%s serves serial %s, but the files on disk hold %s", s.Verify.Address, served, strings.Join(expected, " or "))}
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
func servedLeaf(ctx context.Context, address, serverName string, timeout time.Duration) (*x509.Certificate, error) {
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
