package trust

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/vault"
)

// round caches what one refresh round fetched, so bundles sharing a mount
// cost Vault one set of requests.
type round struct {
	src     Source
	issuers map[string]issuersResult
	crls    map[string]crlResult
}

type issuersResult struct {
	list []vault.CAIssuer
	err  error
}

type crlResult struct {
	data []byte
	err  error
}

func newRound(src Source) *round {
	return &round{src: src, issuers: map[string]issuersResult{}, crls: map[string]crlResult{}}
}

func (r *round) issuersOf(ctx context.Context, mount string) ([]vault.CAIssuer, error) {
	res, ok := r.issuers[mount]
	if !ok {
		res.list, res.err = r.src.Issuers(ctx, mount)
		r.issuers[mount] = res
	}
	return res.list, res.err
}

func (r *round) crl(ctx context.Context, mount, ref string) ([]byte, error) {
	key := mount + "\x00" + ref
	res, ok := r.crls[key]
	if !ok {
		res.data, res.err = r.src.CRL(ctx, mount, ref)
		r.crls[key] = res
	}
	return res.data, res.err
}

// ca is one CA certificate of a bundle and where it was found.
type ca struct {
	cert *x509.Certificate
	from []vault.CAIssuer
	crl  *x509.RevocationList
}

// bundle is what a trust bundle's files will hold.
type bundle struct {
	cas      []*ca
	withCRLs bool
	warnings []string
}

// build fetches the issuers of tb's mounts, keeps the usable ones, and,
// when tb has a crl_file, gets a checked CRL for each. existing are the
// CRLs on disk now: one is kept if Vault answers with an older one (a
// lagging standby), so a CRL never goes backwards.
func build(ctx context.Context, r *round, tb config.TrustBundle, existing []*x509.RevocationList, now time.Time) (*bundle, error) {
	b := &bundle{withCRLs: tb.CRLFile != ""}
	for _, mount := range tb.Mounts {
		issuers, err := r.issuersOf(ctx, mount)
		if err != nil {
			return nil, fmt.Errorf("listing issuers of %s: %w", mount, err)
		}
		var found []*ca
		for _, is := range issuers {
			certs, err := pki.ParseCertificates([]byte(is.Certificate))
			if err != nil {
				return nil, fmt.Errorf("issuer %s of %s: %w", is.Ref, mount, err)
			}
			cert := certs[0]
			if i := slices.IndexFunc(b.cas, func(c *ca) bool { return c.cert.Equal(cert) }); i >= 0 {
				b.cas[i].from = append(b.cas[i].from, is)
				continue
			}
			if i := slices.IndexFunc(found, func(c *ca) bool { return c.cert.Equal(cert) }); i >= 0 {
				found[i].from = append(found[i].from, is)
				continue
			}
			if !cert.IsCA || !now.Before(cert.NotAfter) {
				// An expired issuer verifies nobody; Vault keeps it
				// until it is tidied.
				continue
			}
			found = append(found, &ca{cert: cert, from: []vault.CAIssuer{is}})
		}
		// Vault lists issuers by random id: order them (intermediates
		// before roots, older first) so an unchanged mount always gives
		// the same bytes and no needless reload.
		slices.SortFunc(found, func(x, y *ca) int {
			return cmp.Or(cmp.Compare(rootRank(x.cert), rootRank(y.cert)), x.cert.NotBefore.Compare(y.cert.NotBefore), bytes.Compare(x.cert.Raw, y.cert.Raw))
		})
		b.cas = append(b.cas, found...)
	}
	if len(b.cas) == 0 {
		return nil, fmt.Errorf("no usable CA certificate in %s", strings.Join(tb.Mounts, ", "))
	}
	if !b.withCRLs {
		return b, nil
	}
	var errs []error
	for _, c := range b.cas {
		crl, err := crlFor(ctx, r, c, tb.Mounts, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if old := newestFrom(existing, c.cert); old != nil && old.Number != nil && crl.Number != nil && old.Number.Cmp(crl.Number) > 0 && now.Before(old.NextUpdate) {
			b.warnings = append(b.warnings, fmt.Sprintf("vault served CRL number %s for %s, older than number %s on disk; keeping the one on disk", crl.Number, name(c.cert), old.Number))
			crl = old
		}
		c.crl = crl
		if life := crl.NextUpdate.Sub(crl.ThisUpdate); life > 0 && now.After(crl.ThisUpdate.Add(life*2/3)) {
			b.warnings = append(b.warnings, fmt.Sprintf("the CRL of %s expires at %s and vault has no newer one; servers reject every client once it expires (rotate the CRL in vault, or enable its auto_rebuild)", name(c.cert), crl.NextUpdate.UTC().Format(time.RFC3339)))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return b, nil
}

func rootRank(c *x509.Certificate) int {
	if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
		return 1
	}
	return 0
}

// crlFor fetches and checks the CRL of one CA from the first mount that
// holds the CA's key.
func crlFor(ctx context.Context, r *round, c *ca, mounts []string, now time.Time) (*x509.RevocationList, error) {
	i := slices.IndexFunc(c.from, func(is vault.CAIssuer) bool { return is.HasKey })
	if i < 0 {
		return nil, fmt.Errorf("no CRL for CA %s: none of the mounts %s holds its key, so none signs a CRL for it; add the mount that issued it (for a root CA, its own mount) to mounts", name(c.cert), strings.Join(mounts, ", "))
	}
	is := c.from[i]
	data, err := r.crl(ctx, is.Mount, is.Ref)
	if err != nil {
		return nil, fmt.Errorf("fetching the CRL of %s from %s: %w", name(c.cert), is.Mount, err)
	}
	crl, err := checkCRL(data, c.cert, now)
	if err != nil {
		return nil, fmt.Errorf("CRL of %s from %s/issuer/%s: %w", name(c.cert), is.Mount, is.Ref, err)
	}
	return crl, nil
}

// checkCRL parses a CRL (PEM or DER) and checks that issuer signed it and
// that it is current.
func checkCRL(data []byte, issuer *x509.Certificate, now time.Time) (*x509.RevocationList, error) {
	der := data
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("PEM block is %q, not an X509 CRL", block.Type)
		}
		der = block.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("it names issuer %q, not %q", crl.Issuer, issuer.Subject)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("not signed by the CA it names: %w", err)
	}
	if crl.NextUpdate.IsZero() {
		return nil, errors.New("it has no NextUpdate, so servers cannot tell when it is stale")
	}
	if !now.Before(crl.NextUpdate) {
		return nil, fmt.Errorf("it expired at %s (NextUpdate); servers would reject every client", crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return crl, nil
}

// newestFrom returns the CRL in crls signed by issuer with the highest
// number, if any.
func newestFrom(crls []*x509.RevocationList, issuer *x509.Certificate) *x509.RevocationList {
	var best *x509.RevocationList
	for _, crl := range crls {
		if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) || crl.CheckSignatureFrom(issuer) != nil {
			continue
		}
		if best == nil || (crl.Number != nil && (best.Number == nil || crl.Number.Cmp(best.Number) > 0)) {
			best = crl
		}
	}
	return best
}

// crlFileLimit bounds a CRL file of n CAs that certkeeper reads back or
// replaces: one CRL per CA, each at most what the Vault client accepts
// for one download, in PEM (base64 plus a newline every 64 characters,
// and the armour lines). It is above sinks.MaxFile, which is sized for
// certificates.
func crlFileLimit(n int) int64 {
	const pemCRL = vault.MaxCRLSize/3*4 + vault.MaxCRLSize/48 + 64
	return int64(max(n, 1)) * pemCRL
}

// readCRLs parses the CRLs in a PEM file of a bundle of n CAs; a missing,
// unreadable or oversized file gives none.
func readCRLs(path string, n int) []*x509.RevocationList {
	if path == "" {
		return nil
	}
	data, err := sinks.ReadFileUpTo(path, crlFileLimit(n))
	if err != nil {
		return nil
	}
	return parseCRLs(data)
}

// caCount is how many certificates the CA file on disk holds (0 when it
// cannot be read), which bounds the CRL file beside it.
func caCount(path string) int {
	data, err := sinks.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			return n
		}
		if block.Type == "CERTIFICATE" {
			n++
		}
	}
}

func parseCRLs(data []byte) []*x509.RevocationList {
	var out []*x509.RevocationList
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type != "X509 CRL" {
			continue
		}
		if crl, err := x509.ParseRevocationList(block.Bytes); err == nil {
			out = append(out, crl)
		}
	}
}

// files are the bundle's outputs: one set, so CAs and CRLs change
// together.
// files are what b puts on disk for tb; prevCAs is how many CAs the CRL
// file on disk may cover.
func (b *bundle) files(tb config.TrustBundle, prevCAs int) []sinks.File {
	var certs []*x509.Certificate
	var crls []byte
	for _, c := range b.cas {
		certs = append(certs, c.cert)
		if c.crl != nil {
			crls = append(crls, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.crl.Raw})...)
		}
	}
	file := func(path string, data []byte) sinks.File {
		return sinks.File{Path: path, Data: data, Mode: tb.Mode, UID: tb.UID, GID: tb.GID}
	}
	files := []sinks.File{file(tb.CAFile, pki.EncodeCerts(certs...))}
	if b.withCRLs {
		crlFile := file(tb.CRLFile, crls)
		// The previous file may list CAs since gone from the mounts.
		crlFile.Limit = crlFileLimit(max(len(b.cas), prevCAs))
		files = append(files, crlFile)
	}
	return files
}

// CAInfo describes one CA of a bundle and its CRL.
type CAInfo struct {
	Subject       string    `json:"subject"`
	NotAfter      time.Time `json:"not_after"`
	CRLNumber     string    `json:"crl_number,omitempty"`
	CRLThisUpdate time.Time `json:"crl_this_update,omitzero"`
	CRLNextUpdate time.Time `json:"crl_next_update,omitzero"`
	Revoked       int       `json:"revoked"`

	// Serial is the CA certificate's serial; TrustedSince is when it
	// entered this bundle on this host (rotation.go).
	Serial       string    `json:"serial,omitempty"`
	TrustedSince time.Time `json:"trusted_since,omitzero"`
}

func (b *bundle) info() []CAInfo {
	var out []CAInfo
	for _, c := range b.cas {
		out = append(out, caInfo(c.cert, c.crl))
	}
	return out
}

func caInfo(cert *x509.Certificate, crl *x509.RevocationList) CAInfo {
	info := CAInfo{Subject: subject(cert), Serial: pki.Serial(cert), NotAfter: cert.NotAfter}
	if crl != nil {
		info.CRLThisUpdate, info.CRLNextUpdate = crl.ThisUpdate, crl.NextUpdate
		info.Revoked = len(crl.RevokedCertificateEntries)
		if crl.Number != nil {
			info.CRLNumber = crl.Number.String()
		}
	}
	return info
}

// name is how a CA is called in messages: its common name, or its whole
// subject when it has none.
func name(c *x509.Certificate) string { return fmt.Sprintf("%q", subject(c)) }

func subject(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

// nextRefresh is when a bundle is fetched again: after the refresh
// interval, or sooner when a CRL enters the last third of its life, so a
// new CRL is in place well before the old one's NextUpdate.
func nextRefresh(now time.Time, interval time.Duration, cas []CAInfo) time.Time {
	due := now.Add(interval)
	for _, c := range cas {
		life := c.CRLNextUpdate.Sub(c.CRLThisUpdate)
		if c.CRLNextUpdate.IsZero() || life <= 0 {
			continue
		}
		if point := c.CRLThisUpdate.Add(life * 2 / 3); point.After(now) && point.Before(due) {
			due = point
		}
	}
	return due
}
