package telemetry

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/certkeeper/certkeeper/internal/pki"
)

// KeyPairs hands out the certificate certkeeper holds for a configured
// name, with its key; *agent.Agent is the real one.
type KeyPairs interface {
	// KeyPair returns the certificate held for name, or nil when none is
	// held yet.
	KeyPair(name string) *tls.Certificate
}

// TLSOptions say how the endpoint serves TLS with a certificate certkeeper
// manages, and which clients it lets in.
type TLSOptions struct {
	KeyPairs KeyPairs
	// Certificate is the configured name of the certificate served.
	Certificate string
	// ClientCAFile and ClientCRLFile are a trust bundle's files. With no
	// ClientCAFile, no client certificate is asked for.
	ClientCAFile  string
	ClientCRLFile string
	// ClientNames, when set, are the only names (DNS SAN, URI SAN or
	// common name) a client certificate may carry.
	ClientNames []string
	Log         *slog.Logger
	Now         func() time.Time // default time.Now
}

// EndpointTLS is the endpoint's TLS with a certificate certkeeper manages:
// the listener's configuration, and a check of every request against the
// trust bundle as it is now, so a client whose certificate is revoked
// after it connected is refused at its next request rather than when it
// next reconnects (Prometheus keeps its connection open for as long as it
// scrapes).
type EndpointTLS struct {
	cfg     *tls.Config
	clients *clientTrust // nil: no client certificates asked for
	o       TLSOptions
}

// ServerTLS builds the endpoint's TLS. Nothing is loaded once and kept:
// each handshake takes the certificate the agent holds now and the trust
// bundle's files as they are now (read again only when they changed), so
// a renewal of either takes effect with no restart.
func ServerTLS(o TLSOptions) *EndpointTLS {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		kp := o.KeyPairs.KeyPair(o.Certificate)
		if kp == nil {
			return nil, fmt.Errorf("certificate %q is not held yet", o.Certificate)
		}
		return kp, nil
	}
	e := &EndpointTLS{o: o, cfg: &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: getCert,
		NextProtos:     []string{"http/1.1"},
	}}
	if o.ClientCAFile == "" {
		return e
	}
	e.clients = &clientTrust{caFile: o.ClientCAFile, crlFile: o.ClientCRLFile, log: o.Log}
	base := e.cfg
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		tr, err := e.clients.current()
		if err != nil {
			return nil, err
		}
		cfg := base.Clone()
		cfg.GetConfigForClient = nil
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = tr.pool
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return tr.check(cs, o.ClientNames, o.Now())
		}
		return cfg, nil
	}
	return e
}

// Config is the listener's TLS configuration.
func (e *EndpointTLS) Config() *tls.Config { return e.cfg }

// Handler checks each request's client certificate against the trust
// bundle as it is now, then hands over to next. A refused request gets
// 403 and its connection is closed, so the client's next attempt is a
// handshake, which the bundle refuses too.
func (e *EndpointTLS) Handler(next http.Handler) http.Handler {
	if e.clients == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := errors.New("not over TLS")
		if r.TLS != nil {
			var tr *trust
			if tr, err = e.clients.current(); err == nil {
				err = tr.check(*r.TLS, e.o.ClientNames, e.o.Now())
			}
		}
		if err != nil {
			e.o.Log.Debug("telemetry request refused", "remote", r.RemoteAddr, "error", err)
			w.Header().Set("Connection", "close")
			http.Error(w, "client certificate refused", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// trust is one reading of a trust bundle's files.
type trust struct {
	pool *x509.CertPool
	// crls are every CRL of the bundle; nil when it has no crl_file.
	crls []*x509.RevocationList
}

// clientTrust is a trust bundle's files, read again when they change.
type clientTrust struct {
	caFile, crlFile string
	log             *slog.Logger

	mu   sync.Mutex
	seen [2]fileStamp
	last *trust
}

// fileStamp tells a file that was replaced (certkeeper renames a new file
// over the old one) from one that was not.
type fileStamp struct {
	ino, size int64
	mtime     time.Time
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = int64(sys.Ino)
	}
	return st, nil
}

// current returns the bundle as its files are now. A bundle that cannot be
// read lets nobody in: the handshake fails, and the reason is logged once
// per change of the files.
func (c *clientTrust) current() (*trust, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var now [2]fileStamp
	var err error
	if now[0], err = stampOf(c.caFile); err != nil {
		return nil, fmt.Errorf("client trust bundle: %w", err)
	}
	if c.crlFile != "" {
		if now[1], err = stampOf(c.crlFile); err != nil {
			return nil, fmt.Errorf("client trust bundle: %w", err)
		}
	}
	if c.last != nil && now == c.seen {
		return c.last, nil
	}
	tr, err := c.read()
	c.seen = now
	if err != nil {
		c.last = nil
		c.log.Error("telemetry endpoint refuses every client: its trust bundle cannot be read", "error", err)
		return nil, err
	}
	c.last = tr
	return tr, nil
}

func (c *clientTrust) read() (*trust, error) {
	data, err := os.ReadFile(c.caFile)
	if err != nil {
		return nil, err
	}
	cas, err := pki.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.caFile, err)
	}
	tr := &trust{pool: x509.NewCertPool()}
	for _, ca := range cas {
		tr.pool.AddCert(ca)
	}
	if c.crlFile == "" {
		return tr, nil
	}
	data, err = os.ReadFile(c.crlFile)
	if err != nil {
		return nil, err
	}
	if tr.crls, err = pki.ParseCRLs(data); err != nil {
		return nil, fmt.Errorf("%s: %w", c.crlFile, err)
	}
	return tr, nil
}

// check is what the handshake adds to chain verification: with CRLs, no
// certificate of the chain below its root is revoked, and each has a
// current CRL from its issuer (as nginx's ssl_crl demands: a CA without
// one lets nobody in); with names, the client carries one of them.
func (tr *trust) check(cs tls.ConnectionState, names []string, now time.Time) error {
	if len(cs.VerifiedChains) == 0 {
		return errors.New("client certificate not verified")
	}
	leaf := cs.VerifiedChains[0][0]
	if len(names) > 0 && !carriesName(leaf, names) {
		return fmt.Errorf("client certificate %q carries none of the allowed names", leaf.Subject.CommonName)
	}
	if tr.crls == nil {
		return nil
	}
	var errs []error
	for _, chain := range toRoots(cs.VerifiedChains) {
		err := tr.notRevoked(chain, now)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// toRoots keeps the chains that reach a self-signed root. The bundle
// holds intermediates too, and a chain that stops at one would leave the
// intermediate itself unchecked against its root's CRL; OpenSSL (nginx,
// Apache) also builds the chain up to the root.
func toRoots(chains [][]*x509.Certificate) [][]*x509.Certificate {
	var out [][]*x509.Certificate
	for _, chain := range chains {
		last := chain[len(chain)-1]
		if bytes.Equal(last.RawIssuer, last.RawSubject) && last.CheckSignatureFrom(last) == nil {
			out = append(out, chain)
		}
	}
	if len(out) == 0 {
		return chains
	}
	return out
}

func (tr *trust) notRevoked(chain []*x509.Certificate, now time.Time) error {
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		crl := tr.crlOf(issuer)
		if crl == nil {
			return fmt.Errorf("no CRL from %q in the trust bundle", issuer.Subject.CommonName)
		}
		if !now.Before(crl.NextUpdate) {
			return fmt.Errorf("the CRL of %q expired at %s", issuer.Subject.CommonName, crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return fmt.Errorf("certificate %s (%q) is revoked", pki.Serial(cert), cert.Subject.CommonName)
			}
		}
	}
	return nil
}

// crlOf is the newest CRL signed by issuer.
func (tr *trust) crlOf(issuer *x509.Certificate) *x509.RevocationList {
	var best *x509.RevocationList
	for _, crl := range tr.crls {
		if crl.CheckSignatureFrom(issuer) != nil {
			continue
		}
		if best == nil || crl.ThisUpdate.After(best.ThisUpdate) {
			best = crl
		}
	}
	return best
}

func carriesName(c *x509.Certificate, names []string) bool {
	if slices.Contains(names, c.Subject.CommonName) {
		return true
	}
	for _, n := range c.DNSNames {
		if slices.Contains(names, n) {
			return true
		}
	}
	for _, u := range c.URIs {
		if slices.Contains(names, u.String()) {
			return true
		}
	}
	return false
}
