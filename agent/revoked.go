package agent

import (
	"bytes"
	"crypto/x509"
	"time"
)

// A certificate certkeeper holds may be revoked in Vault (a compromised
// host, an operator's mistake, a CA compromise). Whoever fetches CRLs
// (the trust keeper: a bundle's, or the issuer's own on the certificate's
// revocation_check) hands each current, checked CRL to CheckCRL; a held
// certificate it lists is replaced like a renewal: new key, new
// certificate, one set, services reloaded and verified.

// revokedSpread bounds the random delay before a revoked certificate is
// replaced. A CA compromise revokes a whole fleet at once: spread over
// this window (on top of the fleet's spread over crl_refresh or
// revocation_check, since each host sees the CRL at its own time), the
// replacements do not reach Vault in one burst, and a 429 is waited out
// as Vault asks, like any renewal.
const revokedSpread = time.Minute

// revocation is what a CRL said about a certificate held.
type revocation struct {
	serial string
	at     time.Time
}

// HeldIssuer is the CA that issued a certificate held, and its mount.
type HeldIssuer struct {
	Mount string
	CA    *x509.Certificate
	// Every is the certificate's revocation_check.
	Every time.Duration
}

// HeldIssuers lists the issuer of every certificate held, for the
// revocation watch.
func (a *Agent) HeldIssuers() []HeldIssuer {
	cfg := a.config()
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []HeldIssuer
	for _, c := range cfg.Certificates {
		h := a.held[c.Name]
		if h == nil {
			continue
		}
		if ca := issuerOf(h); ca != nil {
			out = append(out, HeldIssuer{Mount: h.record.Mount, CA: ca, Every: c.RevocationCheck})
		}
	}
	return out
}

// issued says whether ca issued leaf, by name and key identifier: a CA
// rotated under the same name has another key.
func issued(leaf, ca *x509.Certificate) bool {
	if !bytes.Equal(leaf.RawIssuer, ca.RawSubject) {
		return false
	}
	return len(leaf.AuthorityKeyId) == 0 || len(ca.SubjectKeyId) == 0 || bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId)
}

// CheckCRL is told a current CRL that ca signed (already checked). Every
// certificate held that ca issued and the CRL lists is marked revoked,
// logged once, and scheduled for replacement within revokedSpread.
func (a *Agent) CheckCRL(ca *x509.Certificate, crl *x509.RevocationList) {
	if len(crl.RevokedCertificateEntries) == 0 {
		return
	}
	cfg := a.config()
	now := a.now()
	a.mu.Lock()
	var found []string
	var listed map[string]time.Time
	for _, c := range cfg.Certificates {
		h := a.held[c.Name]
		if h == nil || !issued(h.bundle.Leaf, ca) {
			continue
		}
		if listed == nil {
			listed = make(map[string]time.Time, len(crl.RevokedCertificateEntries))
			for _, e := range crl.RevokedCertificateEntries {
				listed[string(e.SerialNumber.Bytes())] = e.RevocationTime
			}
		}
		at, revoked := listed[string(h.bundle.Leaf.SerialNumber.Bytes())]
		if !revoked {
			continue
		}
		if prev, ok := a.revoked[c.Name]; ok && prev.serial == h.record.Serial {
			continue
		}
		a.revoked[c.Name] = revocation{serial: h.record.Serial, at: at}
		if st := a.status[c.Name]; st != nil && st.Serial == h.record.Serial {
			st.RevokedAt = at
		}
		found = append(found, c.Name)
		a.log.Warn("the certificate on disk was revoked in vault; replacing it", "cert", c.Name, "serial", h.record.Serial,
			"revoked_at", at.UTC().Format(time.RFC3339), "issuer", ca.Subject.CommonName, "alert", "certificate_revoked")
	}
	a.mu.Unlock()
	for _, name := range found {
		at := now.Add(time.Duration(a.rand() * float64(revokedSpread)))
		if queued, ok := a.queue.When(name); ok && queued.Before(at) {
			continue
		}
		a.queue.Set(name, at)
	}
}

// revokedNow says whether the certificate held for name, with serial, is
// known to be revoked, and since when.
func (a *Agent) revokedNow(name, serial string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.revoked[name]
	if !ok || r.serial != serial {
		return time.Time{}, false
	}
	return r.at, true
}
