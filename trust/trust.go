// Package trust keeps trust bundles fresh: the CA certificates and CRLs a
// server verifies client certificates against (nginx ssl_client_certificate
// and ssl_crl, Apache SSLCACertificateFile and SSLCARevocationFile).
//
// A bundle holds every usable issuer of its PKI mounts, so clients holding
// certificates from an old issuer keep working while a new one takes over,
// and a CRL for every one of those CAs, because nginx (ssl_crl) and Apache
// (SSLCARevocationCheck chain) reject every client when one level of the
// chain has none. A CRL is written only after it parses, is signed by the
// CA it names, and is not expired. Issuers and CRLs are fetched once per
// mount per refresh round, however many bundles share the mount.
//
// The package reads from Vault through a Source and writes the bundle
// files (and a journal per bundle under <state_dir>/trust) through sinks.
package trust

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/outdirs"
	"github.com/certkeeper/certkeeper/internal/schedule"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/vault"
)

// Source reads issuers and CRLs, and has Vault rebuild CRLs; *vault.Client
// is the real one.
type Source interface {
	Issuers(ctx context.Context, mount string) ([]vault.CAIssuer, error)
	// CRL answers with no data when the CRL was not rebuilt since since
	// (a 304); a zero since asks unconditionally.
	CRL(ctx context.Context, mount, ref string, since time.Time) (*vault.CRLAnswer, error)
	RotateCRL(ctx context.Context, mount string) error
}

// Notifier hears about bundle files that changed, so the services reading
// them can be reloaded; n says what changed (rotation.go).
// *services.Manager is the real one.
type Notifier interface {
	BundleChanged(tb config.TrustBundle, change *sinks.Change, n notice.Notice)
	// BundleSettled is told that a bundle whose new files servers refused
	// (Refused) is, at its next refresh, what is on disk already: Vault
	// no longer serves what was refused.
	BundleSettled(tb config.TrustBundle)
}

// Observer hears about CRLs, for metrics. Nil is fine.
type Observer interface {
	// CRLNextUpdate reports when the CRL of issuer (its common name) in
	// bundle must be replaced.
	CRLNextUpdate(bundle, issuer string, t time.Time)
	// BundleCAs reports the CAs bundle holds after a refresh, with when
	// each entered it on this host.
	BundleCAs(bundle string, cas []CAInfo)
}

// Options build a Keeper.
type Options struct {
	Config   *config.Config
	Source   Source
	Notifier Notifier // may be nil
	Observer Observer // may be nil
	// Revocations, if not nil, hears every current CRL the keeper holds,
	// and names the issuers whose CRLs it must fetch beyond the bundles'
	// (revocation.go).
	Revocations Revocations
	Log         *slog.Logger
	// Now and Rand default to the real clock and math/rand.
	Now  func() time.Time
	Rand func() float64
}

// Keeper keeps the configured trust bundles fresh.
type Keeper struct {
	cfg         *config.Config
	src         Source
	notifier    Notifier
	observer    Observer
	revocations Revocations
	log         *slog.Logger
	now         func() time.Time
	rand        func() float64

	// queue schedules every bundle, and the revocation watch (watchKey).
	queue *schedule.Queue
	// memo spares Vault requests between rounds.
	memo *memo
	// rotateAt is the share of a CRL's life after which this process asks
	// Vault to rebuild it (crlFor).
	rotateAt float64
	watch    watch

	mu     sync.Mutex
	status map[string]*Status
	// saved are the CAs of each bundle as a previous process saved them,
	// read once (rotation.go).
	saved map[string][]CAInfo
	// refused are the bundles whose new files servers refused, until
	// their next refresh (Refused).
	refused map[string]bool
	// warned are the warnings logged already (warnOnce).
	warned map[string]bool
	// writing keeps refreshes one at a time: Run's and those of a once
	// request to the running daemon write the same files.
	writing sync.Mutex
}

// New makes a keeper; it touches neither disk nor Vault until used.
func New(o Options) *Keeper {
	k := &Keeper{
		cfg:         o.Config,
		src:         o.Source,
		notifier:    o.Notifier,
		observer:    o.Observer,
		revocations: o.Revocations,
		log:         o.Log,
		now:         o.Now,
		rand:        o.Rand,
		memo:        newMemo(),
		status:      map[string]*Status{},
		refused:     map[string]bool{},
	}
	if k.log == nil {
		k.log = slog.Default()
	}
	if k.now == nil {
		k.now = time.Now
	}
	if k.rand == nil {
		k.rand = rand.Float64
	}
	k.queue = schedule.New(k.now)
	k.rotateAt = rotateFrom + (rotateTo-rotateFrom)*k.rand()
	return k
}

// A CRL that Vault has not rebuilt by this share of its life is rebuilt on
// request; each process draws its point in between, so hosts of a fleet do
// not all ask at once. The window ends before CertkeeperCRLAboutToGoStale
// (6 hours before NextUpdate) fires for a 72-hour CRL, and starts after
// Vault's own auto_rebuild (12-hour grace by default) would have acted.
const (
	rotateFrom = 0.80
	rotateTo   = 0.90
)

// roundWindow is how close together bundles must fall due to be refreshed
// in one round, sharing what was fetched for their mounts.
const roundWindow = time.Second

// Run refreshes every bundle now, then keeps them fresh until ctx ends.
// passed, if not nil, is called after every round of refreshes, whatever
// their outcome; Unplaced then says which bundles are not in place (the
// daemon's READY=1 waits on that). Beside the bundles it watches the CRLs
// of the issuers of the certificates held (revocation.go), with or
// without bundles.
func (k *Keeper) Run(ctx context.Context, passed func()) {
	q := k.queue
	for _, tb := range k.cfg.TrustBundles {
		q.Set(tb.Name, time.Time{})
	}
	if k.revocations != nil {
		// After the bundles: what they fetch need not be fetched again.
		q.Set(watchKey, k.now().Add(roundWindow))
	}
	if len(k.cfg.TrustBundles) == 0 && passed != nil {
		passed()
	}
	for {
		name, err := q.Next(ctx)
		if err != nil {
			return
		}
		due := []string{name}
		for _, tb := range k.cfg.TrustBundles {
			if at, ok := q.When(tb.Name); ok && at.Before(k.now().Add(roundWindow)) {
				q.Remove(tb.Name)
				due = append(due, tb.Name)
			}
		}
		r := newRound(k.src, k.memo, k.now())
		watchDue := false
		for _, n := range due {
			if n == watchKey {
				watchDue = true
				continue
			}
			tb, ok := k.bundle(n)
			if !ok {
				continue
			}
			next := k.pass(ctx, r, tb)
			if ctx.Err() != nil {
				return
			}
			// Refused (from another goroutine) may have moved it later.
			if at, queued := q.When(n); !queued || at.Before(next) {
				q.Set(n, next)
			}
		}
		if at, ok := q.When(watchKey); watchDue || (ok && at.Before(k.now().Add(roundWindow))) {
			next := k.checkHeld(ctx, r)
			if ctx.Err() != nil {
				return
			}
			q.Set(watchKey, next)
		}
		if passed != nil {
			passed()
		}
	}
}

func (k *Keeper) bundle(name string) (config.TrustBundle, bool) {
	for _, tb := range k.cfg.TrustBundles {
		if tb.Name == name {
			return tb, true
		}
	}
	return config.TrustBundle{}, false
}

// pass refreshes one bundle and returns when it is due again.
func (k *Keeper) pass(ctx context.Context, r *round, tb config.TrustBundle) time.Time {
	res, err := k.refresh(ctx, r, tb)
	if ctx.Err() != nil {
		return time.Time{}
	}
	st := k.record(tb, res, err)
	if err != nil {
		k.log.Error("trust bundle refresh failed; keeping the files on disk", "bundle", tb.Name, "error", err,
			"failures", st.Failures, "retry_at", st.NextRefresh.Format(time.RFC3339))
	}
	return st.NextRefresh
}

// Outcome is what Once did for one bundle.
type Outcome struct {
	Name   string
	Result *Result // nil on failure
	Err    error
}

// onceRetry is the one-shot retry of certificates; a variable so tests
// need not wait for it.
var onceRetry = backoff.OneShot

// Once refreshes every bundle and returns one outcome per bundle, in
// config order.
func (k *Keeper) Once(ctx context.Context) []Outcome {
	var out []Outcome
	for _, tb := range k.cfg.TrustBundles {
		var res *Result
		err := onceRetry.Do(ctx, backoff.Hooks{Rand: k.rand, Retrying: func(err error, d time.Duration) {
			k.log.Warn("trust bundle refresh failed, retrying", "bundle", tb.Name, "error", err, "retry_in", d.String())
		}}, func() (err error) {
			res, err = k.refresh(ctx, newRound(k.src, k.memo, k.now()), tb)
			return err
		})
		k.record(tb, res, err)
		out = append(out, Outcome{Name: tb.Name, Result: res, Err: err})
	}
	return out
}

// Result is what one successful refresh put on disk.
type Result struct {
	CAs     []CAInfo
	Written []string
}

// refresh fetches, checks and writes one bundle.
func (k *Keeper) refresh(ctx context.Context, r *round, tb config.TrustBundle) (*Result, error) {
	k.writing.Lock()
	defer k.writing.Unlock()
	prevCAs := caCount(tb.CAFile)
	existing := readCRLs(tb.CRLFile, prevCAs)
	oldCAs := readCAs(tb.CAFile)
	b, err := build(ctx, r, tb, existing, k.rotateAt)
	if err != nil {
		return nil, err
	}
	for _, w := range b.warnings {
		k.warnOnce(w, "bundle", tb.Name)
	}
	for _, c := range b.cas {
		if c.crl != nil && c.rotatedFrom != nil {
			k.log.Info("asked vault to rebuild a CRL near its expiry, and got the new one", "bundle", tb.Name, "issuer", subject(c.cert),
				"old_next_update", c.rotatedFrom.NextUpdate.UTC().Format(time.RFC3339), "next_update", c.crl.NextUpdate.UTC().Format(time.RFC3339))
		}
	}
	k.covers(tb, b)
	journal := statedir.Dir(k.cfg.StateDir).TrustJournal(tb.Name)
	if err := sinks.Recover(journal, destinations(tb)); err != nil {
		return nil, err
	}
	dests := destinations(tb)
	gids := make([]int, len(dests))
	for i := range gids {
		gids[i] = tb.GID
	}
	if err := outdirs.Files(dests, gids, k.log.With("bundle", tb.Name)); err != nil {
		return nil, err
	}
	change, err := sinks.WriteSet(journal, b.files(tb, max(len(existing), prevCAs)))
	if err != nil {
		return nil, err
	}
	res := &Result{CAs: b.info(), Written: change.Written}
	k.trustedSince(tb, res.CAs, k.now())
	if k.observer != nil {
		for _, ca := range res.CAs {
			if !ca.CRLNextUpdate.IsZero() {
				k.observer.CRLNextUpdate(tb.Name, ca.Subject, ca.CRLNextUpdate)
			}
		}
		k.observer.BundleCAs(tb.Name, res.CAs)
	}
	k.mu.Lock()
	wasRefused := k.refused[tb.Name]
	delete(k.refused, tb.Name)
	k.mu.Unlock()
	if change.Changed() {
		n := changeNotice(tb, oldCAs, existing, res.CAs, change.Written)
		k.log.Info("trust bundle written", "bundle", tb.Name, "files", change.Written, "cas", len(res.CAs), "crls", crlSummary(res.CAs),
			"reason", n.Reason, "added", caNames(n.Added), "removed", caNames(n.Removed))
		if k.notifier != nil {
			k.notifier.BundleChanged(tb, change, n)
		}
	} else {
		k.log.Debug("trust bundle unchanged", "bundle", tb.Name)
		if wasRefused && k.notifier != nil {
			k.log.Info("vault no longer serves the trust files servers refused; the files they have are current", "bundle", tb.Name)
			k.notifier.BundleSettled(tb)
		}
	}
	return res, nil
}

// destinations are every file a bundle's set writes.
func destinations(tb config.TrustBundle) []string {
	dests := []string{tb.CAFile}
	if tb.CRLFile != "" {
		dests = append(dests, tb.CRLFile)
	}
	return dests
}

func crlSummary(cas []CAInfo) []string {
	var out []string
	for _, ca := range cas {
		if ca.CRLNumber != "" {
			out = append(out, fmt.Sprintf("%s#%s(%d revoked)", ca.Subject, ca.CRLNumber, ca.Revoked))
		}
	}
	return out
}
