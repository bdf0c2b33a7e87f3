package trust

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/vault"
)

// Revocations is whoever must know when a certificate certkeeper holds is
// revoked: the agent, which replaces it. The keeper hands it every current
// CRL it checks (a bundle's, at each refresh), and for issuers no bundle
// covers it fetches the issuer's CRL itself, per mount, every
// revocation_check.
type Revocations interface {
	// HeldIssuers lists the CAs that issued the certificates held now,
	// with their mounts and how often each wants its CRL checked.
	HeldIssuers() []HeldIssuer
	// CheckCRL is told a current CRL that ca signed and the keeper
	// checked; it must not block on Vault.
	CheckCRL(ca *x509.Certificate, crl *x509.RevocationList)
}

// HeldIssuer is the issuer of certificates held, in a mount.
type HeldIssuer struct {
	Mount string
	CA    *x509.Certificate
	// Every is how often its CRL is wanted (the certificates'
	// revocation_check).
	Every time.Duration
}

// watchKey names the revocation watch in the keeper's queue; no bundle
// name holds a slash.
const watchKey = "/revocations"

// watch is the state of the revocation watch.
type watch struct {
	mu sync.Mutex
	// covered maps a CA (its DER) to the bundles whose refresh checks its
	// CRL, so the watch does not fetch it a second time.
	covered map[string][]string
	// next is when each issuer (mount and CA) is due; failures counts
	// failed checks in a row, for the backoff.
	next     map[string]time.Time
	failures map[string]int
}

// covers records which CAs' CRLs bundle tb checks now, and hands each CRL
// to Revocations.
func (k *Keeper) covers(tb config.TrustBundle, b *bundle) {
	w := &k.watch
	w.mu.Lock()
	if w.covered == nil {
		w.covered = map[string][]string{}
	}
	for der, names := range w.covered {
		w.covered[der] = slices.DeleteFunc(names, func(n string) bool { return n == tb.Name })
	}
	for _, c := range b.cas {
		if c.crl != nil {
			w.covered[string(c.cert.Raw)] = append(w.covered[string(c.cert.Raw)], tb.Name)
		}
	}
	w.mu.Unlock()
	if k.revocations == nil {
		return
	}
	for _, c := range b.cas {
		if c.crl != nil {
			k.revocations.CheckCRL(c.cert, c.crl)
		}
	}
}

func (w *watch) isCovered(ca *x509.Certificate) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.covered[string(ca.Raw)]) > 0
}

// checkHeld fetches and hands on the CRL of every issuer of the
// certificates held that is due and that no bundle covers, and returns
// when the watch is due again.
func (k *Keeper) checkHeld(ctx context.Context, r *round) time.Time {
	now := k.now()
	// Certificates held later (the agent's first pass, a new issuer) are
	// seen at the next look: as often as the most eager certificate wants.
	next := now.Add(k.lookEvery())
	held := mergeIssuers(k.revocations.HeldIssuers())
	w := &k.watch
	w.mu.Lock()
	if w.next == nil {
		w.next, w.failures = map[string]time.Time{}, map[string]int{}
	}
	keys := map[string]bool{}
	for _, h := range held {
		keys[watchID(h)] = true
	}
	for key := range w.next {
		if !keys[key] {
			delete(w.next, key)
			delete(w.failures, key)
		}
	}
	w.mu.Unlock()
	for _, h := range held {
		if w.isCovered(h.CA) {
			continue
		}
		key := watchID(h)
		w.mu.Lock()
		due, failures := w.next[key], w.failures[key]
		w.mu.Unlock()
		if due.After(now) {
			next = minTime(next, due)
			continue
		}
		wait := backoff.Poll(h.Every, k.rand())
		if err := k.checkIssuer(ctx, r, h); err != nil {
			if ctx.Err() != nil {
				return next
			}
			failures++
			wait = min(backoff.Default.Delay(failures-1, k.rand()), h.Every)
			k.log.Warn("cannot check whether the certificates held were revoked; retrying", "mount", h.Mount, "issuer", subject(h.CA),
				"error", err, "failures", failures, "retry_in", wait.Round(time.Second).String())
		} else {
			failures = 0
		}
		w.mu.Lock()
		w.next[key], w.failures[key] = now.Add(wait), failures
		w.mu.Unlock()
		next = minTime(next, now.Add(wait))
	}
	return next
}

// checkIssuer fetches the CRL of one issuer of the certificates held and
// hands it to Revocations.
func (k *Keeper) checkIssuer(ctx context.Context, r *round, h HeldIssuer) error {
	issuers, err := r.issuersOf(ctx, h.Mount)
	if err != nil {
		return fmt.Errorf("listing issuers of %s: %w", h.Mount, err)
	}
	i := slices.IndexFunc(issuers, func(is vault.CAIssuer) bool {
		if !is.HasKey {
			return false
		}
		certs, err := parseIssuer(is)
		return err == nil && certs.Equal(h.CA)
	})
	if i < 0 {
		// A CA rotated out of the mount: list again, in case it is new.
		r.memo.forgetIssuers(h.Mount)
		return fmt.Errorf("CA %s is not an issuer with a key in %s, so vault signs no CRL for it there", name(h.CA), h.Mount)
	}
	f, err := issuerCRL(ctx, r, issuers[i], h.CA, k.rotateAt)
	if err != nil {
		return err
	}
	if f.warning != "" {
		k.warnOnce(f.warning, "mount", h.Mount)
	}
	if f.rebuilt != nil {
		k.log.Info("asked vault to rebuild a CRL near its expiry, and got the new one", "mount", h.Mount, "issuer", subject(h.CA),
			"old_next_update", f.rebuilt.NextUpdate.UTC().Format(time.RFC3339), "next_update", f.crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	k.revocations.CheckCRL(h.CA, f.crl)
	return nil
}

// lookEvery is how often the watch looks for issuers: as often as the
// most eager certificate's revocation_check.
func (k *Keeper) lookEvery() time.Duration {
	every := config.DefaultRevocationCheck
	for i, c := range k.cfg.Certificates {
		if i == 0 || (c.RevocationCheck > 0 && c.RevocationCheck < every) {
			every = c.RevocationCheck
		}
	}
	if every <= 0 {
		every = config.DefaultRevocationCheck
	}
	return every
}

// mergeIssuers keeps one entry per mount and CA, with the shortest
// interval: certificates of one issuer share one fetch.
func mergeIssuers(held []HeldIssuer) []HeldIssuer {
	var out []HeldIssuer
	index := map[string]int{}
	for _, h := range held {
		if h.CA == nil || h.Mount == "" {
			continue
		}
		key := watchID(h)
		if i, ok := index[key]; ok {
			if h.Every > 0 && h.Every < out[i].Every {
				out[i].Every = h.Every
			}
			continue
		}
		if h.Every <= 0 {
			h.Every = config.DefaultRevocationCheck
		}
		index[key] = len(out)
		out = append(out, h)
	}
	return out
}

func watchID(h HeldIssuer) string { return h.Mount + "\x00" + string(h.CA.Raw) }

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Refused is told that servers refused valid clients with bundle's new
// files (the service's canary), which were rolled back: the bundle is not
// refreshed again before retryAt (the services' backoff), so the same
// files do not come back at every crl_refresh, and its status says why.
func (k *Keeper) Refused(bundle string, retryAt time.Time, reason error) {
	tb, ok := k.bundle(bundle)
	if !ok {
		return
	}
	k.mu.Lock()
	st := k.status[tb.Name]
	if st == nil {
		st = &Status{Name: tb.Name}
		k.status[tb.Name] = st
	}
	st.Failures++
	st.State = StateFailing
	st.LastError = "servers refused valid clients with the new files, which were rolled back: " + oneLine(reason)
	st.NextRefresh = retryAt
	k.refused[tb.Name] = true
	all := k.statusesLocked()
	k.mu.Unlock()
	k.save(all)
	k.queue.Set(tb.Name, retryAt)
}

// warnOnce logs a warning the first time it comes, and at debug level
// after that: a CRL Vault does not let certkeeper rebuild says so at every
// refresh (every minute) for hours otherwise.
func (k *Keeper) warnOnce(msg string, args ...any) {
	k.mu.Lock()
	if k.warned == nil || len(k.warned) > 256 {
		k.warned = map[string]bool{}
	}
	seen := k.warned[msg]
	k.warned[msg] = true
	k.mu.Unlock()
	if seen {
		k.log.Debug(msg, args...)
		return
	}
	k.log.Warn(msg, args...)
}

// parseIssuer parses an issuer's certificate.
func parseIssuer(is vault.CAIssuer) (*x509.Certificate, error) {
	certs, err := pki.ParseCertificates([]byte(is.Certificate))
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
