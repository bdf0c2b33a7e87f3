package trust

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/vault"
)

// round caches what one refresh round fetched, so bundles sharing a mount
// cost Vault one set of requests. It reads through the keeper's memory
// (memo): issuers listed less than issuersTTL ago are not listed again,
// and a CRL is asked for only if Vault rebuilt it since the last answer.
type round struct {
	src     Source
	memo    *memo
	now     time.Time
	issuers map[string]issuersResult
	crls    map[string]crlResult
	// rotated holds, per mount, the outcome of asking Vault to rebuild its
	// CRLs in this round: once per mount, however many CAs need it.
	rotated map[string]error
}

type issuersResult struct {
	list []vault.CAIssuer
	err  error
}

type crlResult struct {
	data []byte
	err  error
}

func newRound(src Source, m *memo, now time.Time) *round {
	return &round{src: src, memo: m, now: now, issuers: map[string]issuersResult{}, crls: map[string]crlResult{}, rotated: map[string]error{}}
}

func (r *round) issuersOf(ctx context.Context, mount string) ([]vault.CAIssuer, error) {
	res, ok := r.issuers[mount]
	if !ok {
		if list, fresh := r.memo.issuers(mount, r.now); fresh {
			res.list = list
		} else {
			res.list, res.err = r.src.Issuers(ctx, mount)
			if res.err == nil {
				r.memo.setIssuers(mount, res.list, r.now)
			}
		}
		r.issuers[mount] = res
	}
	return res.list, res.err
}

func (r *round) crl(ctx context.Context, mount, ref string) ([]byte, error) {
	key := mount + "\x00" + ref
	res, ok := r.crls[key]
	if !ok {
		res.data, res.err = r.fetchCRL(ctx, mount, ref, true)
		r.crls[key] = res
	}
	return res.data, res.err
}

// fetchCRL asks Vault for a CRL; conditional, it sends If-Modified-Since
// for what the memo holds and takes the memo's copy on a 304.
func (r *round) fetchCRL(ctx context.Context, mount, ref string, conditional bool) ([]byte, error) {
	held, since := r.memo.crl(mount, ref)
	if !conditional || held == nil {
		since = time.Time{}
	}
	answer, err := r.src.CRL(ctx, mount, ref, since)
	if err != nil {
		// The issuer may be gone from the mount: list it again next time.
		r.memo.forgetIssuers(mount)
		return nil, err
	}
	if answer.NotModified() {
		return held, nil
	}
	r.memo.setCRL(mount, ref, answer.Data, answer.Date)
	return answer.Data, nil
}

// rotate asks Vault to rebuild the CRLs of mount, once per round.
func (r *round) rotate(ctx context.Context, mount string) error {
	err, done := r.rotated[mount]
	if !done {
		err = r.src.RotateCRL(ctx, mount)
		r.rotated[mount] = err
		for key := range r.crls {
			if strings.HasPrefix(key, mount+"\x00") {
				delete(r.crls, key)
			}
		}
	}
	return err
}

// ca is one CA certificate of a bundle and where it was found.
type ca struct {
	cert *x509.Certificate
	from []vault.CAIssuer
	crl  *x509.RevocationList
	// rotatedFrom is the CRL Vault was asked to rebuild, when it did.
	rotatedFrom *x509.RevocationList
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
// lagging standby), so a CRL never goes backwards, or one that revokes the
// same certificates (see below). rotateAt is the share of a CRL's life
// after which Vault is asked to rebuild it (see crlFor).
func build(ctx context.Context, r *round, tb config.TrustBundle, existing []*x509.RevocationList, rotateAt float64) (*bundle, error) {
	now := r.now
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
		f, err := crlFor(ctx, r, c, tb.Mounts, rotateAt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f.warning != "" {
			b.warnings = append(b.warnings, f.warning)
		}
		crl := f.crl
		c.rotatedFrom = f.rebuilt
		if old := newestFrom(existing, c.cert); old != nil && now.Before(old.NextUpdate) {
			switch {
			case old.Number != nil && crl.Number != nil && old.Number.Cmp(crl.Number) > 0:
				b.warnings = append(b.warnings, fmt.Sprintf("vault served CRL number %s for %s, older than number %s on disk; keeping the one on disk", crl.Number, name(c.cert), old.Number))
				crl = old
			case sameEntries(old, crl) && now.Before(twoThirds(old)):
				// Only the dates (and number) moved, as with a Vault that
				// rebuilds every minute: the servers learn nothing from
				// it, so they are not reloaded for it until the one on
				// disk is two thirds through its life.
				crl = old
			}
		}
		c.crl = crl
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
//
// A CRL past rotateAt of its life (0.8 to 0.9, drawn once per process)
// that Vault has not rebuilt is rebuilt on request (<mount>/crl/rotate),
// then fetched again: a mount with auto_rebuild off, as setup-pki.sh
// makes them so that a revocation is in the CRL at once, rebuilds CRLs
// only on a revocation, and servers refuse every client once the one they
// hold expires. Each host of a fleet draws its own point, so the first to
// reach it rebuilds for all, and the others find a fresh CRL. The warning
// says why none came when none did.
func crlFor(ctx context.Context, r *round, c *ca, mounts []string, rotateAt float64) (fetched, error) {
	i := slices.IndexFunc(c.from, func(is vault.CAIssuer) bool { return is.HasKey })
	if i < 0 {
		return fetched{}, fmt.Errorf("no CRL for CA %s: none of the mounts %s holds its key, so none signs a CRL for it; add the mount that issued it (for a root CA, its own mount) to mounts", name(c.cert), strings.Join(mounts, ", "))
	}
	return issuerCRL(ctx, r, c.from[i], c.cert, rotateAt)
}

// fetched is a checked CRL and how it came.
type fetched struct {
	crl *x509.RevocationList
	// rebuilt is the CRL Vault was asked to replace, when it did.
	rebuilt *x509.RevocationList
	// warning says why a CRL near expiry could not be replaced.
	warning string
}

// issuerCRL fetches, checks and, when it is due, has Vault rebuild the
// CRL of issuer is (whose certificate is cert).
func issuerCRL(ctx context.Context, r *round, is vault.CAIssuer, cert *x509.Certificate, rotateAt float64) (fetched, error) {
	data, err := r.crl(ctx, is.Mount, is.Ref)
	if err != nil {
		return fetched{}, fmt.Errorf("fetching the CRL of %s from %s: %w", name(cert), is.Mount, err)
	}
	crl, err := checkCRL(data, cert, r.now)
	if err != nil {
		return fetched{}, fmt.Errorf("CRL of %s from %s/issuer/%s: %w", name(cert), is.Mount, is.Ref, err)
	}
	if !r.now.After(lifePoint(crl, rotateAt)) {
		return fetched{crl: crl}, nil
	}
	expires := crl.NextUpdate.UTC().Format(time.RFC3339)
	stale := func(format string, args ...any) (fetched, error) {
		return fetched{crl: crl, warning: fmt.Sprintf("the CRL of %s expires at %s and vault has not rebuilt it: servers reject every client once it expires; ", name(cert), expires) + fmt.Sprintf(format, args...)}, nil
	}
	if err := r.rotate(ctx, is.Mount); err != nil {
		return stale("asking vault to rebuild it failed (grant read on %s/crl/rotate, as certkeeper policy prints, or turn auto_rebuild on in %s/config/crl): %v", is.Mount, is.Mount, err)
	}
	data, err = r.fetchCRL(ctx, is.Mount, is.Ref, false)
	if err != nil {
		return stale("vault was asked to rebuild it, but fetching it again failed: %v", err)
	}
	fresh, err := checkCRL(data, cert, r.now)
	if err != nil {
		return stale("vault was asked to rebuild it, but the new one is not usable: %v", err)
	}
	if !fresh.ThisUpdate.After(crl.ThisUpdate) {
		return stale("vault was asked to rebuild it, but serves no newer one")
	}
	return fetched{crl: fresh, rebuilt: crl}, nil
}

// lifePoint is when share of crl's life (ThisUpdate to NextUpdate) has
// passed.
func lifePoint(crl *x509.RevocationList, share float64) time.Time {
	return crl.ThisUpdate.Add(time.Duration(float64(crl.NextUpdate.Sub(crl.ThisUpdate)) * share))
}

func twoThirds(crl *x509.RevocationList) time.Time { return lifePoint(crl, 2.0/3) }

// sameEntries says whether two CRLs revoke the same serials at the same
// times.
func sameEntries(a, b *x509.RevocationList) bool {
	if len(a.RevokedCertificateEntries) != len(b.RevokedCertificateEntries) {
		return false
	}
	key := func(e x509.RevocationListEntry) string {
		return e.SerialNumber.String() + "@" + strconv.FormatInt(e.RevocationTime.Unix(), 10)
	}
	seen := make(map[string]int, len(a.RevokedCertificateEntries))
	for _, e := range a.RevokedCertificateEntries {
		seen[key(e)]++
	}
	for _, e := range b.RevokedCertificateEntries {
		k := key(e)
		if seen[k] == 0 {
			return false
		}
		seen[k]--
	}
	return true
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
	for _, ext := range crl.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator):
			// nginx and Apache load full CRLs only; a delta one leaves the
			// level without a CRL and every client refused.
			return nil, errors.New("it is a delta CRL (Delta CRL Indicator); servers need the full one")
		case ext.Critical && !slices.ContainsFunc(knownCRLExtensions, ext.Id.Equal):
			return nil, fmt.Errorf("it has a critical extension %s that servers do not know, so they would reject every client", ext.Id)
		}
	}
	if !now.Before(crl.NextUpdate) {
		return nil, fmt.Errorf("it expired at %s (NextUpdate); servers would reject every client", crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return crl, nil
}

var (
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	// knownCRLExtensions are the CRL extensions OpenSSL (nginx, Apache)
	// handles when critical: authority key identifier, CRL number,
	// issuing distribution point.
	knownCRLExtensions = []asn1.ObjectIdentifier{{2, 5, 29, 35}, {2, 5, 29, 20}, {2, 5, 29, 28}}
)

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
// interval, or sooner when a CRL reaches two thirds of its life (when a
// CRL that revokes nothing new replaces the one on disk) or rotateAt of
// it (when Vault is asked to rebuild it), so a new CRL is in place well
// before the old one's NextUpdate.
func nextRefresh(now time.Time, interval time.Duration, cas []CAInfo, rotateAt float64) time.Time {
	due := now.Add(interval)
	for _, c := range cas {
		life := c.CRLNextUpdate.Sub(c.CRLThisUpdate)
		if c.CRLNextUpdate.IsZero() || life <= 0 {
			continue
		}
		for _, share := range []float64{2.0 / 3, rotateAt} {
			if point := c.CRLThisUpdate.Add(time.Duration(float64(life) * share)); point.After(now) && point.Before(due) {
				due = point
			}
		}
	}
	return due
}
