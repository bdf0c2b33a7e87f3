package agent

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/vault"
)

// IssuerLister lists a mount's issuers and reads their certificates, so
// the agent notices a new default issuer (a CA rotation); *vault.Client
// is the real one.
type IssuerLister interface {
	ListIssuers(ctx context.Context, mount string) ([]vault.IssuerInfo, error)
	IssuerCertificate(ctx context.Context, mount, ref string) (string, error)
}

// Trust says how long this host's trust bundles have held a CA for a
// mount (see trust.Keeper.TrustedSince), and hears that a mount's issuers
// changed, so its bundles take a new CA in at once (IssuersChanged);
// *trust.Keeper is the real one.
type Trust interface {
	TrustedSince(mount string, ca *x509.Certificate) (since time.Time, covered bool)
	IssuersChanged(mount string)
}

// issuer is one issuer of a mount.
type issuer struct {
	ref  string
	cert *x509.Certificate
	// seen is when this host first saw it listed in the mount.
	seen time.Time
}

// mountIssuers is what the last listing of a mount said.
type mountIssuers struct {
	issuers []*issuer
	def     *issuer // nil when the mount names no default
	checked time.Time
}

// by returns the mount's issuer whose certificate is cert.
func (m *mountIssuers) by(cert *x509.Certificate) *issuer {
	for _, is := range m.issuers {
		if is.cert.Equal(cert) {
			return is
		}
	}
	return nil
}

// issuerWatch is what the agent knows about its mounts' issuers.
type issuerWatch struct {
	mu     sync.Mutex
	mounts map[string]*mountIssuers
	// seen is when each issuer (mount and serial) was first listed, as
	// kept in state_dir; loaded at the first listing.
	seen   map[string]time.Time
	loaded bool
}

func (w *issuerWatch) mount(name string) *mountIssuers {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mounts[name]
}

// issuersState is the file IssuersSeen.
type issuersState struct {
	Version int          `json:"version"`
	Issuers []issuerSeen `json:"issuers"`
}

type issuerSeen struct {
	Mount     string    `json:"mount"`
	Serial    string    `json:"serial"`
	Subject   string    `json:"subject"`
	FirstSeen time.Time `json:"first_seen"`
}

const issuersStateVersion = 1

func seenKey(mount string, cert *x509.Certificate) string { return mount + "\x00" + pki.Serial(cert) }

// lister is who lists issuers: Options.Issuers, else the Issuer if it can.
func (a *Agent) lister() IssuerLister {
	if a.issuers != nil {
		return a.issuers
	}
	if l, ok := a.currentIssuer().(IssuerLister); ok {
		return l
	}
	return nil
}

// refreshMount lists mount's issuers, reads the certificates of those not
// seen before, and records when each was first seen. It says whether the
// default changed since the last listing (or this is the first).
func (a *Agent) refreshMount(ctx context.Context, mount string) (changed bool, err error) {
	l := a.lister()
	if l == nil {
		return false, nil
	}
	infos, err := l.ListIssuers(ctx, mount)
	if err != nil {
		return false, err
	}
	now := a.now()
	w := &a.iw
	w.mu.Lock()
	prev := w.mounts[mount]
	w.mu.Unlock()
	next := &mountIssuers{checked: now}
	var fresh []issuerSeen
	for _, info := range infos {
		var is *issuer
		if prev != nil {
			if i := slices.IndexFunc(prev.issuers, func(p *issuer) bool { return p.ref == info.Ref }); i >= 0 {
				is = prev.issuers[i]
			}
		}
		if is == nil {
			pemText, err := l.IssuerCertificate(ctx, mount, info.Ref)
			if err != nil {
				return false, err
			}
			certs, err := pki.ParseCertificates([]byte(pemText))
			if err != nil {
				return false, fmt.Errorf("issuer %s of %s: %w", info.Ref, mount, err)
			}
			is = &issuer{ref: info.Ref, cert: certs[0]}
			a.loadSeen()
			w.mu.Lock()
			if t, ok := w.seen[seenKey(mount, is.cert)]; ok {
				is.seen = t
			} else {
				is.seen = now
				w.seen[seenKey(mount, is.cert)] = now
				fresh = append(fresh, issuerSeen{Mount: mount, Serial: pki.Serial(is.cert), Subject: is.cert.Subject.CommonName, FirstSeen: now})
			}
			w.mu.Unlock()
		}
		next.issuers = append(next.issuers, is)
		if info.Default {
			next.def = is
		}
	}
	w.mu.Lock()
	if w.mounts == nil {
		w.mounts = map[string]*mountIssuers{}
	}
	w.mounts[mount] = next
	w.mu.Unlock()
	if len(fresh) > 0 {
		a.saveSeen()
	}
	// The first listing counts as a change too: the default may have
	// moved while no process was looking.
	changed = next.def != nil && (prev == nil || prev.def == nil || !prev.def.cert.Equal(next.def.cert))
	if changed && prev != nil {
		a.log.Info("the mount has a new default issuer", "mount", mount, "issuer", next.def.cert.Subject.CommonName,
			"issuer_serial", pki.Serial(next.def.cert), "first_seen", next.def.seen.Format(time.RFC3339))
	}
	if prev != nil && (changed || len(fresh) > 0) && a.trust != nil {
		// Trust first: the bundles take the new CA in now, not when
		// they would next list the mount.
		a.trust.IssuersChanged(mount)
	}
	return changed, nil
}

// loadSeen reads IssuersSeen once; an unreadable file is a fresh start
// (every issuer counts as seen now, which only lengthens a soak).
//
// The config is read before iw.mu is taken: a.mu is taken before iw.mu
// (record and ensure hold a.mu while caStepFor reads iw), never after,
// and a.config() under iw.mu once hung a restart for good.
func (a *Agent) loadSeen() {
	dir := statedir.Dir(a.config().StateDir)
	w := &a.iw
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.loaded {
		return
	}
	w.loaded = true
	w.seen = map[string]time.Time{}
	if err := sinks.Recover(dir.IssuersSeenJournal(), []string{dir.IssuersSeen()}); err != nil {
		a.log.Warn("cannot recover the file of when the mounts' issuers were first seen", "error", err)
	}
	// Read back under the state rule: a file another user could have
	// written must not shorten a soak.
	data, err := sinks.ReadState(dir.IssuersSeen())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("cannot read when the mounts' issuers were first seen; their soak starts again", "error", err)
		}
		return
	}
	var st issuersState
	if json.Unmarshal(data, &st) != nil || st.Version != issuersStateVersion {
		return
	}
	for _, s := range st.Issuers {
		w.seen[s.Mount+"\x00"+s.Serial] = s.FirstSeen
	}
}

func (a *Agent) saveSeen() {
	w := &a.iw
	w.mu.Lock()
	st := issuersState{Version: issuersStateVersion}
	for key, t := range w.seen {
		mount, serial, _ := strings.Cut(key, "\x00")
		st.Issuers = append(st.Issuers, issuerSeen{Mount: mount, Serial: serial, FirstSeen: t})
	}
	w.mu.Unlock()
	slices.SortFunc(st.Issuers, func(x, y issuerSeen) int {
		return cmp.Or(cmp.Compare(x.Mount, y.Mount), cmp.Compare(x.Serial, y.Serial))
	})
	dir := statedir.Dir(a.config().StateDir)
	data, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = dir.Ensure()
	}
	if err == nil {
		_, err = sinks.WriteSet(dir.IssuersSeenJournal(), []sinks.File{{Path: dir.IssuersSeen(), Data: append(data, '\n'), Mode: 0o600, UID: -1, GID: -1}})
	}
	if err != nil {
		a.log.Warn("cannot save when the mounts' issuers were first seen; a restart starts their soak again", "error", err)
	}
}

// issuerLoop lists every certificate mount's issuers every issuer_check,
// and looks again at once at the certificates of a mount whose default
// issuer changed.
func (a *Agent) issuerLoop(ctx context.Context) {
	if a.lister() == nil {
		return
	}
	for {
		cfg := a.config()
		for _, mount := range certificateMounts(cfg.Certificates) {
			changed, err := a.refreshMount(ctx, mount)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				a.log.Warn("cannot list the mount's issuers; a new default issuer will be noticed later", "mount", mount, "error", err)
				continue
			}
			if changed {
				a.lookAgain(cfg, mount)
			}
		}
		t := time.NewTimer(backoff.Poll(cfg.IssuerCheck, a.rand()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// lookAgain asks for a pass of every certificate of mount that is held
// and not from the mount's default issuer, so its CA rotation step (pin,
// soak, move) is planned now rather than at its renewal point.
func (a *Agent) lookAgain(cfg *config.Config, mount string) {
	mi := a.iw.mount(mount)
	if mi == nil || mi.def == nil {
		return
	}
	for _, c := range cfg.Certificates {
		if c.Mount != mount {
			continue
		}
		h := a.heldNow(c.Name)
		if h == nil {
			continue // its first pass is coming anyway
		}
		if from := issuerOf(h); from != nil && !from.Equal(mi.def.cert) {
			a.queue.Set(c.Name, time.Time{})
		}
	}
}

// knowMount makes sure mount's issuers were listed within issuer_check
// before a certificate of it is requested, so a renewal right after a
// start, or by a one-shot command, stays with its issuer during a soak.
func (a *Agent) knowMount(ctx context.Context, mount string) {
	mi := a.iw.mount(mount)
	if mi != nil && a.now().Sub(mi.checked) < a.config().IssuerCheck {
		return
	}
	if _, err := a.refreshMount(ctx, mount); err != nil {
		a.log.Warn("cannot list the mount's issuers; requesting from its default issuer", "mount", mount, "error", err)
	}
}

func certificateMounts(certs []config.Certificate) []string {
	var out []string
	for _, c := range certs {
		if !slices.Contains(out, c.Mount) {
			out = append(out, c.Mount)
		}
	}
	return out
}
