package trust

import (
	"crypto/x509"
	"encoding/json"
	"slices"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
)

// CA rotation, trust first: a bundle holds every usable issuer of its
// mounts, so a new intermediate is in it at the first refresh after it
// appears in Vault, long before any leaf from it is presented. This file
// keeps when each CA entered each bundle on this host (CAInfo.TrustedSince,
// kept across restarts in the trust state), which the agent's soak
// (ca_soak) counts from, and says what a bundle change changed, for the
// services reading it: a CA added is urgent (clients holding certificates
// from it are refused until servers load it), a CA removed or new CRLs
// routine, bounded by the NextUpdate of the CRLs servers hold now.

// readCAs parses the CA certificates in a bundle's CA file; a missing or
// unreadable file gives none.
func readCAs(path string) []*x509.Certificate {
	data, err := sinks.ReadFile(path)
	if err != nil {
		return nil
	}
	certs, _ := pki.ParseCertificates(data)
	return certs
}

// sameCA says whether two CAInfos describe the same certificate.
func sameCA(a, b CAInfo) bool { return a.Serial == b.Serial && a.Subject == b.Subject }

// trustedSince fills in when each CA of cas entered bundle tb on this
// host: as it was known (in memory, else from the state a previous
// process saved), or now for a CA new to the bundle.
func (k *Keeper) trustedSince(tb config.TrustBundle, cas []CAInfo, now time.Time) {
	prev := k.knownCAs(tb)
	for i := range cas {
		cas[i].TrustedSince = now
		if j := slices.IndexFunc(prev, func(p CAInfo) bool { return sameCA(p, cas[i]) }); j >= 0 && !prev[j].TrustedSince.IsZero() {
			cas[i].TrustedSince = prev[j].TrustedSince
		}
	}
}

// knownCAs are the CAs of tb as last recorded: by this process, else by
// the previous one (its saved state). Unlike status, the saved state is
// read only for this, once per bundle.
func (k *Keeper) knownCAs(tb config.TrustBundle) []CAInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	if st := k.status[tb.Name]; st != nil && st.CAs != nil {
		return st.CAs
	}
	if k.saved == nil {
		k.saved = map[string][]CAInfo{}
		var file stateFile
		// The state's read-back rule: a file another user could write must
		// not date a CA's entry back and shorten a soak.
		if data, err := sinks.ReadState(statedir.Dir(k.cfg.StateDir).TrustState()); err == nil && json.Unmarshal(data, &file) == nil {
			for _, b := range file.Bundles {
				k.saved[b.Name] = b.CAs
			}
		}
	}
	return k.saved[tb.Name]
}

// IssuersChanged is told that a mount's issuers changed (the agent's
// listing of its certificates' mounts saw a new issuer or a new default):
// the mount is listed again at once rather than when the keeper's list of
// it runs out (issuersTTL), and every bundle that takes it is refreshed
// now, so the new CA reaches servers before any leaf from it can. A bundle
// servers refused keeps its hold (Refused).
func (k *Keeper) IssuersChanged(mount string) {
	k.memo.forgetIssuers(mount)
	now := k.now()
	for _, tb := range k.cfg.TrustBundles {
		if !slices.Contains(tb.Mounts, mount) {
			continue
		}
		k.mu.Lock()
		held := k.refused[tb.Name]
		k.mu.Unlock()
		if !held {
			k.queue.Set(tb.Name, now)
		}
	}
}

// TrustedSince says how long this host's trust bundles have held ca: the
// latest of the times it entered each bundle whose mounts include mount.
// covered is false when no bundle takes that mount; since is zero when a
// bundle that does has not (yet) taken ca in, or has not been refreshed.
func (k *Keeper) TrustedSince(mount string, ca *x509.Certificate) (since time.Time, covered bool) {
	want := CAInfo{Subject: subject(ca), Serial: pki.Serial(ca)}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, tb := range k.cfg.TrustBundles {
		if !slices.Contains(tb.Mounts, mount) {
			continue
		}
		covered = true
		st := k.status[tb.Name]
		if st == nil {
			return time.Time{}, true
		}
		i := slices.IndexFunc(st.CAs, func(c CAInfo) bool { return sameCA(c, want) })
		if i < 0 || st.CAs[i].TrustedSince.IsZero() {
			return time.Time{}, true
		}
		if st.CAs[i].TrustedSince.After(since) {
			since = st.CAs[i].TrustedSince
		}
	}
	return since, covered
}

// changeNotice says what a write of bundle tb changed, from the CAs in its
// files before (old) and after (cas), and the CRLs it held before.
func changeNotice(tb config.TrustBundle, old []*x509.Certificate, oldCRLs []*x509.RevocationList, cas []CAInfo, written []string) notice.Notice {
	n := notice.Notice{Kind: notice.TrustBundle, Name: tb.Name, Files: slices.Clone(written), Outputs: map[string]string{"ca_file": tb.CAFile}}
	if tb.CRLFile != "" {
		n.Outputs["crl_file"] = tb.CRLFile
	}
	var before []CAInfo
	for _, c := range old {
		before = append(before, CAInfo{Subject: subject(c), Serial: pki.Serial(c), NotAfter: c.NotAfter})
	}
	for _, c := range cas {
		n.CAs = append(n.CAs, noticeCA(c))
		if !slices.ContainsFunc(before, func(b CAInfo) bool { return sameCA(b, c) }) {
			n.Added = append(n.Added, noticeCA(c))
		}
	}
	for _, b := range before {
		if !slices.ContainsFunc(cas, func(c CAInfo) bool { return sameCA(b, c) }) {
			n.Removed = append(n.Removed, noticeCA(b))
		}
	}
	switch {
	case len(n.Added) > 0:
		// Clients holding certificates from a new CA are refused until
		// servers load it.
		n.Reason = notice.CAAdded
	case len(n.Removed) > 0:
		n.Reason = notice.CARemoved
	default:
		n.Reason = notice.TrustRefresh
	}
	n.Urgent = n.Reason.Urgent()
	if !n.Urgent {
		n.Deadline = crlDeadline(oldCRLs)
	}
	return n
}

func noticeCA(c CAInfo) notice.CA {
	return notice.CA{Subject: c.Subject, Serial: c.Serial, NotAfter: c.NotAfter}
}

// crlDeadline is when the CRLs servers have loaded stop being good enough
// to wait on: a tenth of its life before the first of them expires, since
// servers that check CRLs refuse every client past a CRL's NextUpdate.
// Zero when there are none.
func crlDeadline(crls []*x509.RevocationList) time.Time {
	var at time.Time
	for _, c := range crls {
		if c.NextUpdate.IsZero() {
			continue
		}
		d := c.NextUpdate.Add(-c.NextUpdate.Sub(c.ThisUpdate) / 10)
		if at.IsZero() || d.Before(at) {
			at = d
		}
	}
	return at
}

func caNames(cas []notice.CA) []string {
	var out []string
	for _, c := range cas {
		out = append(out, c.Subject)
	}
	return out
}

// keepTrustedSince copies into cas (read from the files) when each CA
// entered the bundle, as the daemon saved it.
func keepTrustedSince(cas, saved []CAInfo) {
	for i := range cas {
		if j := slices.IndexFunc(saved, func(s CAInfo) bool { return sameCA(s, cas[i]) }); j >= 0 {
			cas[i].TrustedSince = saved[j].TrustedSince
		}
	}
}
