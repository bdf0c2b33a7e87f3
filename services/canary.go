package services

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/sinks"
)

// The canary: after a trust bundle change reaches a service, certkeeper
// connects with a client certificate the server should accept (verify's
// client_certificate) and proves that it still does. `nginx -t` and
// `apachectl -t` load the CA and CRL files but do not judge them: a CRL
// level that is expired, not yet valid, or out of scope for the leaf (its
// Issuing Distribution Point) passes the check, and then the server
// refuses every client.
//
// Accepted means: the TLS handshake with the client certificate completes,
// and GET / on that connection gets an HTTP response whose status is not
// 400. Refused means: the server fails the handshake (Apache, and any
// server with TLS 1.2), sends a TLS alert or closes the connection when
// the response is read (a TLS 1.3 server refuses after the client's side
// of the handshake is done), or answers 400 (nginx completes the handshake
// and answers "400 The SSL certificate error"). Anything else, such as a
// refused TCP connection or a timeout, is no verdict on the files.

// refusedError is a server that refused the canary.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// canarySkipped is a canary certificate that the new trust files
// themselves reject (revoked, expired, from a CA no longer in the
// bundle): the server refusing it proves nothing, and the files stay.
// The agent replaces a revoked certificate it holds; the canary works
// again then.
type canarySkipped struct{ reason string }

func (e *canarySkipped) Error() string { return e.reason }

// canary connects to s with its client certificate repeatedly for the
// canary window (a server may answer with its old configuration for a
// moment after the reload signal), and returns a *refusedError at the
// first refusal, *canarySkipped when the certificate is not one the
// server should accept, another error when the server cannot be asked,
// or nil when every attempt was accepted.
func (m *Manager) canary(ctx context.Context, s config.Service) error {
	cert, leaf, err := canaryPair(m.cfg, s.Verify.ClientCertificate)
	if err != nil {
		return err
	}
	if err := validFor(m.cfg, s.Name, leaf, cert.Certificate[1:], m.now()); err != nil {
		return &canarySkipped{reason: err.Error()}
	}
	deadline := m.now().Add(min(m.canaryWindow, s.Verify.Timeout))
	for attempt := 1; ; attempt++ {
		if err := admits(ctx, s.Verify, cert); err != nil {
			return err
		}
		if attempt >= 2 && !m.now().Before(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.interval):
		}
	}
}

// canaryPair reads the named certificate's key pair from its files, with
// its intermediates (chain or fullchain file) so the server can build the
// chain.
func canaryPair(cfg *config.Config, name string) (tls.Certificate, *x509.Certificate, error) {
	c, ok := cfg.Certificate(name)
	if !ok {
		return tls.Certificate{}, nil, fmt.Errorf("no certificate %q for the canary", name)
	}
	certPEM, err := sinks.ReadFile(c.Files.Cert)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certs, err := pki.ParseCertificates(certPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%s: %w", c.Files.Cert, err)
	}
	leaf := certs[0]
	chain := [][]byte{leaf.Raw}
	for _, p := range []string{c.Files.Chain, c.Files.Fullchain} {
		if p == "" {
			continue
		}
		data, err := sinks.ReadFile(p)
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		more, err := pki.ParseCertificates(data)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, m := range more {
			if !m.Equal(leaf) {
				chain = append(chain, m.Raw)
			}
		}
		break
	}
	keyPEM, err := sinks.ReadFile(c.Files.Key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%s: %w", c.Files.Key, err)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, leaf, nil
}

// validFor says why leaf (with its intermediates) is not a client the
// trust bundles notifying service accept by their own files, or nil when
// one of them does: it chains to a CA of the bundle's CA file and no
// certificate of the chain is on its issuer's CRL in the CRL file.
func validFor(cfg *config.Config, service string, leaf *x509.Certificate, sent [][]byte, now time.Time) error {
	var reasons []string
	for _, tb := range cfg.TrustBundles {
		if !slices.Contains(tb.Notify, service) {
			continue
		}
		err := validIn(tb, leaf, sent, now)
		if err == nil {
			return nil
		}
		reasons = append(reasons, fmt.Sprintf("trust_bundle %s: %v", tb.Name, err))
	}
	if len(reasons) == 0 {
		return errors.New("no trust bundle notifies this service")
	}
	return errors.New(strings.Join(reasons, "; "))
}

func validIn(tb config.TrustBundle, leaf *x509.Certificate, sent [][]byte, now time.Time) error {
	data, err := sinks.ReadFile(tb.CAFile)
	if err != nil {
		return err
	}
	cas, err := pki.ParseCertificates(data)
	if err != nil {
		return fmt.Errorf("%s: %w", tb.CAFile, err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range cas {
		if bytes.Equal(c.RawIssuer, c.RawSubject) {
			roots.AddCert(c)
		} else {
			inters.AddCert(c)
		}
	}
	for _, der := range sent {
		if c, err := x509.ParseCertificate(der); err == nil {
			inters.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return err
	}
	if tb.CRLFile == "" {
		return nil
	}
	crlData, err := sinks.ReadFile(tb.CRLFile)
	if err != nil {
		return err
	}
	crls, err := pki.ParseCRLs(crlData)
	if err != nil {
		return fmt.Errorf("%s: %w", tb.CRLFile, err)
	}
	var errs []string
	for _, chain := range chains {
		if err := notRevoked(chain, crls); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// notRevoked says which certificate of chain a CRL of its issuer lists.
func notRevoked(chain []*x509.Certificate, crls []*x509.RevocationList) error {
	for i, c := range chain[:len(chain)-1] {
		issuer := chain[i+1]
		for _, crl := range crls {
			if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) || crl.CheckSignatureFrom(issuer) != nil {
				continue
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
					return fmt.Errorf("%s (serial %s) is revoked on the CRL of %s", c.Subject.CommonName, pki.Serial(c), issuer.Subject.CommonName)
				}
			}
		}
	}
	return nil
}

// admits makes one canary connection, as the package comment defines.
func admits(ctx context.Context, v *config.Verify, cert tls.Certificate) error {
	ctx, cancel := context.WithTimeout(ctx, v.Timeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", v.Address)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", v.Address, err)
	}
	defer raw.Close()
	if deadline, ok := ctx.Deadline(); ok {
		raw.SetDeadline(deadline)
	}
	conn := tls.Client(raw, &tls.Config{
		ServerName:   v.ServerName,
		Certificates: []tls.Certificate{cert},
		// verify compared the server's certificate with the one on disk
		// already; here only the server's verdict on ours matters.
		InsecureSkipVerify: true,
	})
	if err := conn.HandshakeContext(ctx); err != nil {
		if refusal(err) {
			return &refusedError{msg: fmt.Sprintf("%s refused the client certificate in the TLS handshake: %v", v.Address, err)}
		}
		return fmt.Errorf("TLS handshake with %s: %w", v.Address, err)
	}
	host := v.ServerName
	if host == "" {
		host = v.Address
	}
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: certkeeper-canary\r\nConnection: close\r\n\r\n", host); err != nil {
		if refusal(err) {
			return &refusedError{msg: fmt.Sprintf("%s refused the client certificate after the TLS handshake: %v", v.Address, err)}
		}
		return fmt.Errorf("sending a request to %s: %w", v.Address, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if refusal(err) {
			return &refusedError{msg: fmt.Sprintf("%s refused the client certificate after the TLS handshake: %v", v.Address, err)}
		}
		return fmt.Errorf("reading the answer of %s: %w", v.Address, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest {
		return &refusedError{msg: fmt.Sprintf("%s answered %s to a request with the client certificate (nginx's answer when it refuses one)", v.Address, resp.Status)}
	}
	return nil
}

// refusal says whether a connection error is the server refusing the
// client: a TLS alert, or the connection closed or reset under the
// handshake or before any answer.
func refusal(err error) bool {
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return true
	}
	if strings.Contains(err.Error(), "remote error: tls:") {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
