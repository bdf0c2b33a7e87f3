package agent

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
)

// held is a certificate certkeeper has: fresh from Vault, or read back from
// disk. Every output file is a pure function of it and the config, so the
// agent can always rewrite (restore) the outputs without asking Vault.
type held struct {
	bundle *pki.Bundle
	record record
	// renders keeps template outputs fixed for this certificate.
	renders renderMemo
	// signers are CAs of bundle known to have signed its leaf (the chain
	// verification found them), set before the held certificate is
	// shared; issuer is the one issuerOf found, once.
	signers []*x509.Certificate
	issuer  struct {
		once sync.Once
		ca   *x509.Certificate
	}
}

// record is what certkeeper writes to its state directory beside each
// certificate: where it came from (which the certificate does not say) and
// the CA chain, so outputs can be rebuilt from disk after a restart.
type record struct {
	Version int    `json:"version"`
	Mount   string `json:"mount"`
	Role    string `json:"role"`
	Serial  string `json:"serial"`
	// IssuedAt keeps a renewal point from falling before the issuance when
	// Vault backdates NotBefore.
	IssuedAt time.Time `json:"issued_at"`
	CAChain  string    `json:"ca_chain"`
}

const recordVersion = 1

// outputs are the files a held certificate must be on disk as, including
// its record: one set, so they change together.
func outputs(cfg *config.Config, c config.Certificate, h *held) ([]sinks.File, error) {
	key, err := pki.MarshalKey(h.bundle.Key)
	if err != nil {
		return nil, err
	}
	rec, err := json.MarshalIndent(h.record, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding state: %w", err)
	}
	b := h.bundle
	file := func(path string, data []byte, mode fs.FileMode) sinks.File {
		return sinks.File{Path: path, Data: data, Mode: mode, UID: c.UID, GID: c.GID}
	}
	// The key goes first: a reader that races a crash-interrupted set
	// without recovery then sees a new key with an old certificate only if
	// the journal is lost, and Recover closes even that.
	files := []sinks.File{
		file(c.Files.Key, key, c.KeyMode),
		file(c.Files.Cert, pki.EncodeCerts(b.Leaf), c.CertMode),
	}
	if c.Files.Chain != "" {
		files = append(files, file(c.Files.Chain, pki.EncodeCerts(b.Intermediates...), c.CertMode))
	}
	if c.Files.Fullchain != "" {
		files = append(files, file(c.Files.Fullchain, pki.EncodeCerts(append([]*x509.Certificate{b.Leaf}, b.Intermediates...)...), c.CertMode))
	}
	if c.Files.CA != "" {
		files = append(files, file(c.Files.CA, pki.EncodeCerts(append(append([]*x509.Certificate{}, b.Intermediates...), b.Roots...)...), c.CertMode))
	}
	extra, err := formatted(c, h)
	if err != nil {
		return nil, err
	}
	files = append(files, extra...)
	files = append(files, sinks.File{Path: statedir.Dir(cfg.StateDir).CertificateRecord(c.Name), Data: append(rec, '\n'), Mode: 0o600, UID: -1, GID: -1})
	return files, nil
}

// destinations are every path a certificate's set writes, for crash
// recovery.
func destinations(cfg *config.Config, c config.Certificate) []string {
	var out []string
	for _, p := range []string{c.Files.Key, c.Files.Cert, c.Files.Chain, c.Files.Fullchain, c.Files.CA, statedir.Dir(cfg.StateDir).CertificateRecord(c.Name)} {
		if p != "" {
			out = append(out, p)
		}
	}
	out = append(out, formattedPaths(c)...)
	return out
}

// errNothingOnDisk marks the first run for a certificate.
var errNothingOnDisk = errors.New("no certificate on disk yet")

// loadHeld reads a certificate back from its files and record. It does
// not judge it; fits does.
func loadHeld(cfg *config.Config, c config.Certificate) (*held, error) {
	certPEM, err := sinks.ReadFile(c.Files.Cert)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNothingOnDisk
	}
	if err != nil {
		return nil, err
	}
	certs, err := pki.ParseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Files.Cert, err)
	}
	keyPEM, err := sinks.ReadFile(c.Files.Key)
	if err != nil {
		return nil, err
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Files.Key, err)
	}
	recJSON, err := sinks.ReadState(statedir.Dir(cfg.StateDir).CertificateRecord(c.Name))
	var refused *sinks.UnsafePathError
	if errors.As(err, &refused) {
		// Another user's record (or one others may write) is never used:
		// a new certificate replaces it.
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("no record of where the certificate came from: %w", err)
	}
	var rec record
	if err := json.Unmarshal(recJSON, &rec); err != nil || rec.Version != recordVersion {
		return nil, fmt.Errorf("state file %s is unreadable or from another version", statedir.Dir(cfg.StateDir).CertificateRecord(c.Name))
	}
	rec.CAChain = sharedCAs.intern(rec.CAChain)
	chain, err := sharedCAs.parse(rec.CAChain)
	if err != nil {
		return nil, fmt.Errorf("state file %s: ca chain: %w", statedir.Dir(cfg.StateDir).CertificateRecord(c.Name), err)
	}
	return &held{bundle: pki.NewBundle(certs[0], key, chain), record: rec}, nil
}

// fits says why h cannot serve c at now, or nil if it can.
func fits(c config.Certificate, h *held, now time.Time) error {
	_, err := fitsSigners(c, h, now)
	return err
}

// fitsSigners is fits that also returns the CAs the chain verification
// found to have signed h's leaf (pki.CheckSigners).
func fitsSigners(c config.Certificate, h *held, now time.Time) ([]*x509.Certificate, error) {
	if h.record.Mount != c.Mount || h.record.Role != c.Role {
		return nil, fmt.Errorf("certificate came from %s/%s, config now asks %s/%s", h.record.Mount, h.record.Role, c.Mount, c.Role)
	}
	return pki.CheckSigners(h.bundle, want(c), now)
}

func want(c config.Certificate) pki.Want {
	return pki.Want{
		Names:   pki.Names{CommonName: c.CommonName, DNSNames: c.AltNames, IPs: c.IPSANs, URIs: c.URISANs},
		KeyType: c.KeyType,
		KeyBits: c.KeyBits,
	}
}

// renewAt is when h is due as of now (its renewal windows included, see
// plan), and whether the policy had to be held back because it does not
// fit the certificate's lifetime.
func renewAt(c config.Certificate, h *held, now time.Time) (time.Time, bool) {
	pl := plan(c, h, now)
	return pl.At, pl.Held
}
