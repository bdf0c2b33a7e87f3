package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/config"
)

// clientCertSource hands the TLS stack the client certificate cert auth
// logs in with, read from disk at every handshake. certkeeper renews that
// certificate like any other, so reading it fresh is what lets a renewed
// certificate take over without a restart.
type clientCertSource struct {
	certFile, keyFile, chainFile string

	mu   sync.Mutex
	seen fileID // the certificate file as rotated() last saw it
}

// fileID tells one version of a file from the next: certkeeper replaces
// files by rename, so a new version is a new inode.
type fileID struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func statID(path string) (fileID, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: info.Size(), mtime: info.ModTime()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		id.ino = st.Ino
	}
	return id, nil
}

func newClientCertSource(a config.Auth) *clientCertSource {
	return &clientCertSource{certFile: a.ClientCert, keyFile: a.ClientKey, chainFile: a.ClientChain}
}

// get is tls.Config.GetClientCertificate. Vault asks every connection
// for a certificate, but only cert auth's login needs one: when the pair
// cannot be read, the handshake goes on without one, so the other methods
// of the chain (and requests with a token) still reach Vault, and cert
// auth's login (which checks the pair first) says which file is wrong.
func (s *clientCertSource) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	pair, err := s.check()
	if err != nil {
		return &tls.Certificate{}, nil
	}
	return pair, nil
}

// check reads the pair as a handshake would, with a message that names
// the files when it cannot.
func (s *clientCertSource) check() (*tls.Certificate, error) {
	var err error
	// A renewal replaces key and certificate by two renames: a handshake
	// between them sees a pair that does not match. Read again shortly.
	for range 5 {
		var pair *tls.Certificate
		if pair, err = s.load(); err == nil {
			return pair, nil
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("cert auth client certificate (%s, %s): %w", s.certFile, s.keyFile, err)
}

func (s *clientCertSource) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(s.certFile)
	if err != nil {
		return nil, err
	}
	if s.chainFile != "" {
		// Intermediates let Vault verify a leaf whose trusted CA is the root.
		if chain, err := os.ReadFile(s.chainFile); err == nil {
			certPEM = append(append(certPEM, '\n'), chain...)
		}
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error from crypto/tls never quotes the key.
		return nil, err
	}
	return &pair, nil
}

// rotated reports, once per change, whether the certificate file was
// replaced since the last call; connections opened before hold the old
// certificate and should not be reused for a login.
func (s *clientCertSource) rotated() bool {
	id, err := statID(s.certFile)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == s.seen {
		return false
	}
	first := s.seen == fileID{}
	s.seen = id
	return !first
}

// certRotationTransport closes idle connections when the client
// certificate changes, so the next request handshakes with the new one.
type certRotationTransport struct {
	next      http.RoundTripper
	certs     *clientCertSource
	closeIdle func()
}

func (t *certRotationTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.certs.rotated() {
		t.closeIdle()
	}
	return t.next.RoundTrip(req)
}

// certLogin logs in with the client certificate on disk.
func certLogin(a config.Auth, closeIdle func()) loginFunc {
	certs := newClientCertSource(a)
	return func(ctx context.Context, c *api.Client) (*api.Secret, error) {
		// Without a readable pair the handshake sends no certificate, and
		// Vault's answer would not say which file is wrong.
		if _, err := certs.check(); err != nil {
			return nil, fmt.Errorf("cert login: %w", err)
		}
		// An idle keep-alive connection carries the certificate it was
		// opened with; a fresh handshake presents the one on disk now.
		closeIdle()
		body := map[string]any{}
		if a.CertRole != "" {
			body["name"] = a.CertRole
		}
		ctx, info := withCallInfo(ctx)
		secret, err := c.Logical().WriteWithContext(ctx, "auth/"+a.Mount+"/login", body)
		if err != nil {
			return nil, fmt.Errorf("cert login with %s: %w", a.ClientCert, classify(err, info))
		}
		if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
			return nil, fmt.Errorf("cert login with %s: vault returned no token", a.ClientCert)
		}
		c.SetToken(secret.Auth.ClientToken)
		return secret, nil
	}
}
