// Package agent is certkeeper's lifecycle: for each configured certificate
// it decides whether what is held is still good, obtains a new one from
// Vault when not, checks it, and writes it as one set. It composes the
// pieces (vault, pki, renewal, schedule, sinks) and owns the per-certificate
// state that status and metrics read.
package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/outdirs"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/schedule"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/vault"
)

// Issuer gets certificates signed; *vault.Client is the real one.
type Issuer interface {
	Obtain(ctx context.Context, r vault.CertRequest) (*vault.Issued, error)
}

// Notifier hears about certificate sets that changed on disk, so the
// servers reading them can be reloaded. Nil means nobody listens. n says
// what changed and why (notice.Notice), which decides whether the change
// may wait for a service's reload budget and what hooks are told.
// *services.Manager is the real one; its Delivered option calls back
// Agent.Delivered.
type Notifier interface {
	Changed(cert config.Certificate, change *sinks.Change, n notice.Notice)
	// Reload asks for cert's services to be checked and reloaded though
	// nothing changed; token is delivered when they have been.
	Reload(cert config.Certificate, token *sinks.Change)
}

// Options builds an Agent.
type Options struct {
	Config   *config.Config
	Issuer   Issuer
	Log      *slog.Logger
	Notifier Notifier
	// Observer, if not nil, hears the outcome of every pass (metrics).
	Observer Observer
	// Issuers lists the mounts' issuers for CA rotation (carotation.go);
	// nil means the Issuer, if it can (*vault.Client). Trust, if not nil,
	// says how long this host's trust bundles have held a CA.
	Issuers IssuerLister
	Trust   Trust
	// Revoker revokes the certificates a renewal replaced, for
	// revoke_superseded; nil means the Issuer, if it can (*vault.Client).
	Revoker Revoker
	// Now and Rand default to the real clock and math/rand; tests inject.
	Now  func() time.Time
	Rand func() float64
}

// Agent keeps the configured certificates fresh.
type Agent struct {
	cfg      *config.Config
	issuer   Issuer
	log      *slog.Logger
	notifier Notifier
	observer Observer
	now      func() time.Time
	rand     func() float64

	// queue schedules every certificate's next pass; Run drains it, and
	// anything that wants a certificate looked at sooner sets it.
	queue *schedule.Queue

	mu     sync.Mutex
	held   map[string]*held
	status map[string]*Status
	// reconfigured marks certificates a reload changed, so their next
	// rewrite is not reported as someone else's tampering.
	reconfigured map[string]bool

	// rot holds forced renewals (Rotate) and passes in flight.
	rot rotation

	// sweepAll and swept: crash leftovers are swept once per process
	// (see recoverFiles).
	sweepAll sync.Once
	swept    sweptSet

	// pending holds certificates obtained but not yet written (pending.go).
	pending map[string]*held
	// oneShots counts passes OnceRunning has under way, which Run waits
	// for before it returns.
	oneShots sync.WaitGroup

	// placed marks certificates whose files this process has written, or
	// found right, from a certificate that fits the config (Placed).
	placed map[string]bool

	// issuers, trust and iw serve CA rotation (carotation.go).
	issuers IssuerLister
	trust   Trust
	iw      issuerWatch

	// revoked are held certificates a CRL lists (revoked.go).
	revoked map[string]revocation
	// revoker revokes replaced certificates; sup is what waits for it
	// (superseded.go).
	revoker Revoker
	sup     supersededSet

	// ready is placed and status folded into what Unplaced reports
	// (ready.go).
	ready readiness
}

// New makes an agent; it touches neither disk nor Vault until used.
func New(o Options) *Agent {
	a := &Agent{
		cfg:      o.Config,
		issuer:   o.Issuer,
		log:      o.Log,
		notifier: o.Notifier,
		observer: o.Observer,
		now:      o.Now,
		rand:     o.Rand,
		held:     map[string]*held{},
		status:   map[string]*Status{},
		revoked:  map[string]revocation{},
		revoker:  o.Revoker,
		placed:   map[string]bool{},
		issuers:  o.Issuers,
		trust:    o.Trust,

		reconfigured: map[string]bool{},
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.rand == nil {
		a.rand = rand.Float64
	}
	a.queue = schedule.New(a.now)
	a.sup.init(a.now)
	a.rebuildReadiness(a.now())
	return a
}

// Action says what a pass did for a certificate.
type Action string

const (
	// Kept: the certificate held was good; outputs were already right.
	Kept Action = "kept"
	// Restored: the certificate held was good, but some output file was
	// missing or different and was rewritten without asking Vault.
	Restored Action = "restored"
	// Issued: a new certificate was obtained and written.
	Issued Action = "issued"
)

// Result is the outcome of one successful pass for one certificate.
type Result struct {
	Name    string
	Action  Action
	Reason  string // why a new certificate was needed
	Serial  string
	Leaf    *pki.Bundle
	RenewAt time.Time
	Written []string
	// Missing are the written files that did not exist (deleted, or new
	// outputs); the rest of Written existed with other bytes, mode or owner.
	Missing []string
	// recheck, when set, is when to look again before RenewAt: the files
	// were left to the services' retry, which may not write all of them.
	recheck time.Time
	// NextPass, when set, is when the certificate must be looked at again
	// before RenewAt (a CA rotation's soak or move, carotation.go).
	NextPass time.Time
}

// rolledBackRecheck is how soon a certificate whose files a failed
// service check rolled back is looked at again.
const rolledBackRecheck = time.Minute

// ensure makes certificate c valid and written. With force, a new
// certificate is obtained even if the held one is good.
func (a *Agent) ensure(ctx context.Context, c config.Certificate, force bool) (*Result, error) {
	log := a.log.With("cert", c.Name)
	reconfigured := a.takeReconfigured(c.Name)
	if err := statedir.Dir(a.config().StateDir).Ensure(); err != nil {
		return nil, err
	}
	if err := a.recoverFiles(c); err != nil {
		return nil, err
	}
	now := a.now()
	h, reason, cause := a.current(c, now)
	if h != nil {
		if at, revoked := a.revokedNow(c.Name, h.record.Serial); revoked {
			// Urgent (notice.Revocation): neither a renewal window nor a
			// reload budget holds the replacement back.
			reason, cause = "the certificate was revoked in vault at "+at.UTC().Format(time.RFC3339), notice.Revocation
			h = nil
		}
	}
	step := a.caStepFor(a.config(), c, a.heldNow(c.Name), now)
	if h != nil && !force {
		pl := plan(c, h, now)
		if now.Before(pl.At) && !step.moving(now) {
			if !reconfigured && sinks.RolledBack(statedir.Dir(a.config().StateDir).CertificateJournal(c.Name)) {
				// A service's check failed on these files and rolled them
				// back: they are the services' until their retry writes
				// them again and checks them. Restoring them here would
				// put back what failed the check, behind their back, at
				// every change event. A new certificate or a config
				// change is still written (the services check it).
				log.Debug("files rolled back after a failed service check; leaving them to the services' retry", "vault_asked", false)
				return &Result{Name: c.Name, Action: Kept, Serial: h.record.Serial, Leaf: h.bundle, RenewAt: pl.At,
					recheck: now.Add(rolledBackRecheck), NextPass: step.next(pl.At)}, nil
			}
			res, err := a.write(c, h, keptNotice(reconfigured))
			if err != nil {
				return nil, err
			}
			a.logRestored(log, res, reconfigured)
			res.NextPass = step.next(res.RenewAt)
			return res, nil
		}
		if now.Before(pl.At) {
			reason, cause = step.describeMove(a.config()), notice.CAMove
		} else {
			reason, cause = "renewal is due", notice.Renewal
			if pl.Outside {
				reason += "; " + outsideNote(pl)
			}
		}
	}
	if force {
		reason, cause = "rotation requested", notice.Rotation
	}
	why := a.changeNotice(c, cause, reason, now)

	held := h
	h = a.takePending(c, now)
	if h == nil {
		var err error
		if h, err = a.obtain(ctx, c, log, a.issuerFor(ctx, c, log)); err != nil {
			if held != nil {
				a.keepHeld(c, held, log, reconfigured)
			}
			return nil, err
		}
	} else {
		log.Info("writing the certificate obtained at an earlier attempt; vault is not asked again", "serial", h.record.Serial)
	}
	a.supersede(c, h)
	res, err := a.write(c, h, why)
	if err != nil {
		a.setPending(c, h)
		return nil, err
	}
	a.setPending(c, nil)
	res.Action = Issued
	res.Reason = reason
	res.NextPass = a.caStepFor(a.config(), c, h, a.now()).next(res.RenewAt)
	return res, nil
}

// keepHeld makes the files of the certificate held right (restoring any
// that were deleted or changed) after getting a new one failed: the
// servers keep reading a whole set, and the certificate is in place
// (Placed, READY=1) while Vault is away. Only on failure: when the new one
// comes, its own write makes the files right anyway.
func (a *Agent) keepHeld(c config.Certificate, h *held, log *slog.Logger, reconfigured bool) {
	res, err := a.write(c, h, keptNotice(reconfigured))
	if err != nil {
		log.Debug("cannot write the files of the certificate held either", "error", err)
		return
	}
	a.logRestored(log, res, reconfigured)
}

// keptNotice is why the files of a certificate kept are written: a
// restore, or a config change.
func keptNotice(reconfigured bool) notice.Notice {
	if reconfigured {
		return notice.Notice{Reason: notice.Config}
	}
	return notice.Notice{Reason: notice.Restore}
}

func (a *Agent) logRestored(log *slog.Logger, res *Result, reconfigured bool) {
	switch {
	case res.Action != Restored:
	case reconfigured:
		log.Info("config changed; rewrote the outputs from the certificate held", "files", strings.Join(res.Written, ","), "vault_asked", false)
	default:
		log.Warn("output files differed from the certificate held; restored them", "files", strings.Join(res.Written, ","),
			"missing", strings.Join(res.Missing, ","), "vault_asked", false)
	}
}

// current returns the certificate held for c if it still fits the config,
// else nil and why not, in words and as a notice reason.
func (a *Agent) current(c config.Certificate, now time.Time) (*held, string, notice.Reason) {
	a.mu.Lock()
	h := a.held[c.Name]
	a.mu.Unlock()
	var fitErr error
	if h == nil {
		var err error
		h, err = loadHeld(a.config(), c)
		if err != nil {
			return nil, err.Error(), notice.Issued
		}
		// Checked before it is shared, so the signature the chain
		// verification checked need not be checked again (issuerOf).
		h.signers, fitErr = fitsSigners(c, h, now)
		// What is on disk is what servers use: hold it, so status and
		// metrics show its expiry even while getting a new one fails.
		a.mu.Lock()
		a.held[c.Name] = h
		a.mu.Unlock()
	} else {
		fitErr = fits(c, h, now)
	}
	if err := fitErr; err != nil {
		cause := notice.Config
		if leaf := h.bundle.Leaf; !now.Before(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			cause = notice.Expired
		}
		return nil, strings.ReplaceAll(err.Error(), "\n", "; "), cause
	}
	return h, "", ""
}

// obtain gets a new certificate from Vault and checks it before anything
// is written. With step.pin, it must come from that issuer.
func (a *Agent) obtain(ctx context.Context, c config.Certificate, log *slog.Logger, step caStep) (*held, error) {
	req := vault.CertRequest{Certificate: c, IssuerRef: step.pin}
	var key crypto.Signer
	if c.IssueMode == config.ModeSign {
		var err error
		if key, err = pki.GenerateKey(c.KeyType, c.KeyBits); err != nil {
			return nil, fmt.Errorf("generating key: %w", err)
		}
		if req.CSR, err = pki.CSR(key, want(c).Names); err != nil {
			return nil, err
		}
	}
	issued, err := a.currentIssuer().Obtain(ctx, req)
	if err != nil {
		return nil, err
	}
	for _, w := range issued.Warnings {
		// Roles that take names from the CSR say so on every sign request;
		// we send the names anyway for roles that do not.
		level := slog.LevelWarn
		if strings.Contains(w, "use_csr_") {
			level = slog.LevelDebug
		}
		log.Log(ctx, level, "vault warned", "warning", w)
	}
	if c.IssueMode == config.ModeIssue {
		if key, err = pki.ParseKey([]byte(issued.PrivateKey)); err != nil {
			return nil, fmt.Errorf("private key from vault: %w", err)
		}
	}
	leaves, err := pki.ParseCertificates([]byte(issued.Certificate))
	if err != nil {
		return nil, fmt.Errorf("certificate from vault: %w", err)
	}
	// issuing_ca is in ca_chain too when Vault knows the chain; NewBundle
	// drops the duplicate.
	cas, err := sharedCAs.parse(strings.Join(append(issued.CAChain, issued.IssuingCA), "\n"))
	if err != nil {
		return nil, fmt.Errorf("ca chain from vault: %w", err)
	}
	b := pki.NewBundle(leaves[0], key, cas)
	signers, err := pki.CheckSigners(b, want(c), a.now())
	if err != nil {
		return nil, &RejectedError{Err: err}
	}
	h := &held{bundle: b, signers: signers, record: record{
		Version:  recordVersion,
		Mount:    c.Mount,
		Role:     c.Role,
		Serial:   pki.Serial(b.Leaf),
		IssuedAt: a.now().UTC(),
		CAChain:  sharedCAs.intern(string(pki.EncodeCerts(append(append([]*x509.Certificate{}, b.Intermediates...), b.Roots...)...))),
	}}
	if step.pinned != nil && !step.pinned.Equal(issuerOf(h)) {
		return nil, &RejectedError{Err: fmt.Errorf("it was asked of issuer %q (%s) and is not signed by it", step.pinned.Subject.CommonName, step.pin)}
	}
	if outlives, caNotAfter := outlivesIssuer(h); outlives {
		log.Warn("the certificate outlives the CA that signed it: clients cannot verify it past the CA's expiry; rotate the issuer in vault",
			"not_after", b.Leaf.NotAfter.UTC().Format(time.RFC3339), "issuer_not_after", caNotAfter.UTC().Format(time.RFC3339))
	}
	if at, held := renewAt(c, h, a.now()); held {
		log.Warn("renewal policy does not fit this certificate's lifetime; renewing at 10% of its remaining life instead",
			"lifetime", b.Leaf.NotAfter.Sub(b.Leaf.NotBefore).String(), "renew_fraction", c.RenewFraction, "renew_before", c.RenewBefore.String(), "renew_at", at)
	}
	if got := b.Leaf.NotAfter.Sub(a.now()); c.TTL > 0 && got < c.TTL-time.Minute {
		log.Warn("vault issued a shorter lifetime than asked (the role's max_ttl clamps it)", "asked_ttl", c.TTL.String(), "got_ttl", got.Round(time.Second).String())
	}
	return h, nil
}

// RejectedError is a certificate Vault returned that failed our checks.
type RejectedError struct{ Err error }

func (e *RejectedError) Error() string {
	return "vault returned a certificate certkeeper will not use: " + strings.ReplaceAll(e.Err.Error(), "\n", "; ")
}
func (e *RejectedError) Unwrap() error { return e.Err }

// write puts h on disk as c's outputs and makes it the held certificate.
// why says why, for the services reading them (see changeNotice).
func (a *Agent) write(c config.Certificate, h *held, why notice.Notice) (*Result, error) {
	files, err := outputs(a.config(), c, h)
	if err != nil {
		return nil, err
	}
	dir := statedir.Dir(a.config().StateDir)
	if err := a.makeDirs(c, files); err != nil {
		return nil, err
	}
	change, err := sinks.WriteSet(dir.CertificateJournal(c.Name), files)
	if err != nil {
		return nil, err
	}
	now := a.now()
	a.mu.Lock()
	a.held[c.Name] = h
	a.placed[c.Name] = true
	a.reassess(c.Name, now)
	a.mu.Unlock()
	at, _ := renewAt(c, h, now)
	res := &Result{Name: c.Name, Action: Kept, Serial: h.record.Serial, Leaf: h.bundle, RenewAt: at}
	// The record is certkeeper's own; only the outputs matter to servers.
	record := dir.CertificateRecord(c.Name)
	res.Written = slices.DeleteFunc(slices.Clone(change.Written), func(p string) bool { return p == record })
	res.Missing = slices.DeleteFunc(change.Created(), func(p string) bool { return p == record })
	if len(res.Written) > 0 {
		res.Action = Restored
		// Before the services hear of it: the change is what tells when
		// a replaced certificate is out of service.
		a.awaitDelivery(c, h, change)
		if a.notifier != nil {
			a.notifier.Changed(c, change, describe(c, h, why, res.Written))
		}
	}
	return res, nil
}

// makeDirs makes the missing directories of c's outputs (outdirs), each
// logged, before the set is written: left to sinks they would be made
// through the umask, silently.
func (a *Agent) makeDirs(c config.Certificate, files []sinks.File) error {
	record := statedir.Dir(a.config().StateDir).CertificateRecord(c.Name)
	var paths []string
	var gids []int
	for _, f := range files {
		if f.Path == record {
			continue // state_dir's own, made private by statedir
		}
		paths, gids = append(paths, f.Path), append(gids, f.GID)
	}
	return outdirs.Files(paths, gids, a.log.With("cert", c.Name))
}

// forget drops what is held for certificates no longer configured.
func (a *Agent) forget(name string) {
	now := a.now()
	a.mu.Lock()
	delete(a.held, name)
	delete(a.status, name)
	delete(a.revoked, name)
	delete(a.placed, name)
	a.reassess(name, now)
	a.mu.Unlock()
}

// Unplaced says which configured certificates' files are not in place:
// this process has not yet written them (or found them right) from a
// certificate that fits the config, or that certificate has expired. A
// certificate past its renewal point whose renewal fails is in place as
// long as it has not expired: servers can start with it. The daemon sends
// READY=1 once there is none.
//
// At most limit are listed, those whose last attempt failed first: the
// daemon asks after every pass. A call costs what changed since the last
// one (readiness) and a Status per listed certificate.
func (a *Agent) Unplaced(limit int) UnplacedReport {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.unplaced(limit, now)
}

// UnplacedReport is what READY=1 still waits for among the certificates.
type UnplacedReport struct {
	Listed  []Status // up to the limit asked, failing ones first, in config order
	Total   int      // certificates not in place
	Failing int      // of Total, those whose last attempt failed
}
