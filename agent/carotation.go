package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/renewal"
)

// CA rotation, trust first, then leaves. When a mount's default issuer
// changes (a new intermediate: `vault write <mount>/root/replace` or
// config/issuers), a certificate from the old issuer:
//
//   - keeps being renewed by the issuer it came from (the request names it:
//     <mount>/issuer/<id>/sign/<role>), while the new issuer has not been
//     in this host's trust bundles for ca_soak: trust bundles take every
//     usable issuer at their next refresh, so the new CA reaches servers
//     long before any leaf from it does;
//   - moves to the new issuer once the soak is over, at a random point
//     within a tenth of ca_soak after it (a routine change: it waits for
//     a renewal window, never past its own renewal point);
//   - moves at its next renewal, soak or not, when the old issuer would
//     expire before a new certificate from it, or is gone from the mount.
//
// The soak counts from TrustedSince over the bundles that take the
// certificate's mount; for a mount no bundle takes, from when this host
// first saw the issuer listed (kept in state_dir).

// caStep is what CA rotation asks of a certificate now.
type caStep struct {
	// pin is the issuer the next request must name ("": the default), and
	// pinned its certificate.
	pin    string
	pinned *x509.Certificate
	// target is the mount's default issuer, when the certificate held is
	// not from it; trustedSince is when the soak began (zero: not yet, no
	// bundle of the mount holds it), soakEnd when it ends.
	target       *x509.Certificate
	trustedSince time.Time
	soakEnd      time.Time
	// moveAt is when the certificate held moves to target; zero when no
	// move is planned (pinned, or not known yet).
	moveAt time.Time
	// recheck is when to look again while pinned.
	recheck time.Time
	// early says why the certificate leaves its issuer before the soak.
	early string
}

// issuerOf returns the CA certificate in h's chain that signed its leaf.
// A held certificate's bundle never changes, so it is found once per held
// certificate (a renewal makes a new one): caStepFor, outlivesIssuer and
// status ask at every pass and every status, and checking the signature
// each time was 3.2 s of CPU at the start of 10,000 certificates
// (profile).
func issuerOf(h *held) *x509.Certificate {
	h.issuer.once.Do(func() { h.issuer.ca = findIssuer(h.bundle, h.signers) })
	return h.issuer.ca
}

// findIssuer is the first CA of b, intermediates first, that signed its
// leaf; the signature of one in verified (pki.CheckSigners found it to
// have signed the leaf) is not checked again.
func findIssuer(b *pki.Bundle, verified []*x509.Certificate) *x509.Certificate {
	leaf := b.Leaf
	for _, ca := range append(append([]*x509.Certificate{}, b.Intermediates...), b.Roots...) {
		if !bytes.Equal(ca.RawSubject, leaf.RawIssuer) {
			continue
		}
		if slices.ContainsFunc(verified, ca.Equal) || leaf.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// caStepFor decides, as of now, how c (holding h, which may no longer fit
// the config) relates to its mount's default issuer. It takes no agent
// lock, so status may call it while holding a.mu.
func (a *Agent) caStepFor(cfg *config.Config, c config.Certificate, h *held, now time.Time) caStep {
	if h == nil {
		return caStep{}
	}
	mi := a.iw.mount(c.Mount)
	from := issuerOf(h)
	if mi == nil || mi.def == nil || from == nil || from.Equal(mi.def.cert) {
		return caStep{}
	}
	step := caStep{target: mi.def.cert}
	covered := false
	if a.trust != nil {
		step.trustedSince, covered = a.trust.TrustedSince(c.Mount, mi.def.cert)
	}
	if !covered {
		step.trustedSince = mi.def.seen
	}
	if !step.trustedSince.IsZero() {
		step.soakEnd = step.trustedSince.Add(cfg.CASoak)
	}
	life := c.TTL
	if life <= 0 {
		life = h.bundle.Leaf.NotAfter.Sub(h.bundle.Leaf.NotBefore)
	}
	cur := mi.by(from)
	soaked := !step.soakEnd.IsZero() && !now.Before(step.soakEnd)
	switch {
	case soaked:
		u := renewal.UnitFromSerial(c.Name+"\x00ca", h.record.Serial)
		due := step.soakEnd.Add(time.Duration(u * float64(cfg.CASoak/10)))
		at := plan(c, h, now).At
		if at.Before(due) {
			// The renewal comes first and moves it anyway.
			at = due
		}
		step.moveAt = renewal.Place(due, at, windowsOf(c), renewal.UnitsFromSerial(c.Name, h.record.Serial).Window, now, false).At
	case cur == nil:
		step.early = "the issuer it came from is no longer in the mount"
	case !now.Add(life).Before(from.NotAfter):
		step.early = fmt.Sprintf("the issuer it came from expires at %s, before a new certificate from it would", from.NotAfter.UTC().Format(time.RFC3339))
	default:
		step.pin, step.pinned = cur.ref, from
		step.recheck = now.Add(cfg.IssuerCheck)
		if !step.soakEnd.IsZero() && step.soakEnd.Before(step.recheck) {
			step.recheck = step.soakEnd
		}
	}
	return step
}

// moving says whether the certificate held must move to the new issuer
// now.
func (s caStep) moving(now time.Time) bool {
	return !s.moveAt.IsZero() && !now.Before(s.moveAt)
}

// next is when the agent must look at the certificate again: at its
// renewal point at, or sooner for the move or the end of a soak.
func (s caStep) next(at time.Time) time.Time {
	for _, t := range []time.Time{s.moveAt, s.recheck} {
		if !t.IsZero() && t.Before(at) {
			at = t
		}
	}
	return at
}

// describeMove is the reason a certificate moves, for the log and notice.
func (s caStep) describeMove(cfg *config.Config) string {
	return fmt.Sprintf("moving to the mount's new default issuer %q (serial %s), in this host's trust bundles since %s, ca_soak %s",
		s.target.Subject.CommonName, pki.Serial(s.target), s.trustedSince.UTC().Format(time.RFC3339), cfg.CASoak)
}

// CAStatus is what status shows while a certificate's mount rotates its
// issuer.
type CAStatus struct {
	// NewIssuer is the mount's default issuer, which the certificate is
	// not from; NewIssuerSerial its serial.
	NewIssuer       string `json:"new_issuer"`
	NewIssuerSerial string `json:"new_issuer_serial"`
	// TrustedSince is when the soak began (zero: no trust bundle of this
	// host holds the new issuer yet); SoakEnd when it ends.
	TrustedSince time.Time `json:"trusted_since,omitzero"`
	SoakEnd      time.Time `json:"soak_end,omitzero"`
	// Pinned: renewals are signed by the issuer the certificate came from.
	Pinned bool `json:"pinned"`
	// MoveAt is when the certificate is re-issued from the new issuer.
	MoveAt time.Time `json:"move_at,omitzero"`
	Note   string    `json:"note,omitempty"`
}

func (s caStep) status() *CAStatus {
	if s.target == nil {
		return nil
	}
	st := &CAStatus{NewIssuer: s.target.Subject.CommonName, NewIssuerSerial: pki.Serial(s.target), TrustedSince: s.trustedSince,
		SoakEnd: s.soakEnd, Pinned: s.pin != "", MoveAt: s.moveAt}
	switch {
	case s.early != "":
		st.Note = "the next renewal moves to the new issuer before the soak ends: " + s.early
	case s.pin != "" && s.trustedSince.IsZero():
		st.Note = "renewals stay with the issuer the certificate came from: no trust bundle of this host holds the new issuer yet"
	case s.pin != "":
		st.Note = "renewals stay with the issuer the certificate came from until the soak ends"
	}
	return st
}

// outlivesIssuer says whether h's leaf expires after the CA that signed
// it: past that point no client can verify it, whatever its own NotAfter.
func outlivesIssuer(h *held) (bool, time.Time) {
	from := issuerOf(h)
	if from == nil {
		return false, time.Time{}
	}
	return h.bundle.Leaf.NotAfter.After(from.NotAfter), from.NotAfter
}

// heldNow is the certificate held for name, fitting the config or not.
func (a *Agent) heldNow(name string) *held {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held[name]
}

// issuerFor is the CA rotation step for the request about to be made for
// c: its mount's issuers are listed first if they are not known (a start,
// a one-shot command), so a request during a soak names its issuer.
func (a *Agent) issuerFor(ctx context.Context, c config.Certificate, log *slog.Logger) caStep {
	h := a.heldNow(c.Name)
	if h == nil {
		return caStep{}
	}
	a.knowMount(ctx, c.Mount)
	cfg := a.config()
	step := a.caStepFor(cfg, c, h, a.now())
	switch {
	case step.pin != "":
		log.Info("renewing from the issuer the certificate came from: the mount's new default issuer has not soaked on this host",
			"issuer", step.pinned.Subject.CommonName, "new_issuer", step.target.Subject.CommonName,
			"trusted_since", formatTime(step.trustedSince), "soak_end", formatTime(step.soakEnd))
	case step.early != "":
		log.Warn("moving to the mount's new default issuer before its soak ends", "reason", step.early,
			"new_issuer", step.target.Subject.CommonName, "trusted_since", formatTime(step.trustedSince), "soak_end", formatTime(step.soakEnd))
	}
	return step
}

// refreshMounts lists the issuers of every certificate mount once, for the
// one-shot commands; failures are logged, and requests then go to the
// mounts' default issuers.
func (a *Agent) refreshMounts(ctx context.Context) {
	if a.lister() == nil {
		return
	}
	for _, mount := range certificateMounts(a.config().Certificates) {
		if _, err := a.refreshMount(ctx, mount); err != nil {
			a.log.Warn("cannot list the mount's issuers; requesting from its default issuer", "mount", mount, "error", err)
		}
	}
}
