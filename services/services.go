// Package services tells the servers that read certkeeper's files (nginx,
// Apache, anything with a reload command or a pid file) that the files
// changed, safely and once.
//
// Changes arrive as sinks.Change values right after a set of files was
// written. Every change for a service within its settle window joins one
// batch; the batch is checked with the service's own config test, then the
// service is reloaded once, then (optionally) certkeeper connects and
// confirms that the server serves the certificate on disk. A failed check
// rolls the batch's files back, so the running server and the disk agree
// on the last good set, and the same files are written again and checked
// later, with backoff; nothing is re-issued. A failed or hanging reload is
// retried with backoff.
//
// The package runs the commands configured for services, signals the pids
// their pid files name, asks the owner of the file sets (FileSets) to roll
// batches back and write them again, and keeps its state in services.json
// in the state directory.
package services

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/sinks"
)

// Observer hears what happens to services, for metrics. Nil is fine.
type Observer interface {
	// ServiceReloaded reports the outcome of one attempt: ResultOK,
	// ResultCheckFailed, ResultReloadFailed, ResultNotServed or
	// ResultNotRunning.
	ServiceReloaded(service, result string)
	// ServedMatches reports whether, after a reload, the server served
	// the certificate on disk.
	ServedMatches(service string, ok bool)
	// ReloadReason reports a reload that ran (the server was signalled or
	// its reload command succeeded) and why: the reason of the change
	// that led to it (budget.go's leadingReason), and whether that was
	// urgent.
	ReloadReason(service, reason string, urgent bool)
	// Backlog reports how many changes wait for the service's next
	// reload (held by the budget, settling, or rolled back for a retry).
	Backlog(service string, changes int)
}

// Results of an attempt, as the observer and the logs name them.
const (
	ResultOK           = "ok"
	ResultCheckFailed  = "check_failed"
	ResultReloadFailed = "reload_failed"
	ResultNotServed    = "not_served"
	ResultNotRunning   = "not_running"
	// ResultClientsRefused: after a trust bundle change the server refused
	// the verify block's client certificate (the canary); the bundle's
	// files were rolled back.
	ResultClientsRefused = "clients_refused"
)

// FileSets undoes and redoes changes to files the agent and the trust
// keeper wrote; sinks.Sets is the real one. Services never write a
// certificate's or a bundle's files themselves.
type FileSets interface {
	Rollback(*sinks.Change) error
	Reapply(*sinks.Change) error
}

// Options build a Manager.
type Options struct {
	Config   *config.Config
	Log      *slog.Logger
	Observer Observer
	// Backoff spaces retries of failed checks and reloads; the zero value
	// means backoff.Default.
	Backoff backoff.Backoff
	// VerifyInterval is the pause between two verify handshakes (default
	// 200ms).
	VerifyInterval time.Duration
	// Files rolls back and re-applies batches; nil means sinks.Sets.
	Files FileSets
	// Delivered, if not nil, is told each change once every service it
	// notifies has loaded it: checked, reloaded with the change on disk
	// (or found not running) and, with verify, seen serving. The agent
	// revokes a replaced certificate only after that (revoke_superseded).
	Delivered func(change *sinks.Change)
	// BundleRefused, if not nil, is told that servers refused valid
	// clients with a trust bundle's new files, which were rolled back, and
	// when to try them again (the trust keeper holds the bundle till then).
	BundleRefused func(bundle string, retryAt time.Time, reason error)
	// CanaryWindow is how long the canary keeps connecting after a reload,
	// every VerifyInterval (default 1s): a server may still answer with
	// its old configuration for a moment after the signal.
	CanaryWindow time.Duration
	// Now and Rand default to the real clock and math/rand.
	Now  func() time.Time
	Rand func() float64
}

// Manager batches changes per service and reloads services.
type Manager struct {
	cfg      *config.Config
	log      *slog.Logger
	observer Observer
	backoff  backoff.Backoff
	interval time.Duration
	files    FileSets
	now      func() time.Time
	rand     func() float64

	delivered     func(*sinks.Change)
	bundleRefused func(string, time.Time, error)
	canaryWindow  time.Duration

	groups    []*group
	byService map[string]*group

	mu     sync.Mutex
	status map[string]*Status
	// saveMu keeps state file writes in order.
	saveMu sync.Mutex
}

// New makes a manager for the services in cfg. It runs nothing until
// changes arrive and Run or Flush is called.
func New(o Options) *Manager {
	m := &Manager{
		cfg:      o.Config,
		log:      o.Log,
		observer: o.Observer,
		backoff:  o.Backoff,
		interval: o.VerifyInterval,
		files:    o.Files,
		now:      o.Now,
		rand:     o.Rand,

		delivered:     o.Delivered,
		bundleRefused: o.BundleRefused,
		canaryWindow:  o.CanaryWindow,

		byService: map[string]*group{},
		status:    map[string]*Status{},
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.backoff == (backoff.Backoff{}) {
		m.backoff = backoff.Default
	}
	if m.interval <= 0 {
		m.interval = 200 * time.Millisecond
	}
	if m.rand == nil {
		m.rand = rand.Float64
	}
	if m.files == nil {
		m.files = sinks.Sets{}
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.canaryWindow <= 0 {
		m.canaryWindow = time.Second
	}
	for _, names := range components(o.Config) {
		g := &group{m: m, wake: make(chan struct{}, 1)}
		for _, n := range names {
			svc, _ := o.Config.Service(n)
			g.services = append(g.services, &service{cfg: svc})
			m.byService[n] = g
			m.status[n] = &Status{Name: n, State: StateIdle}
		}
		m.groups = append(m.groups, g)
	}
	return m
}

// components groups services that share a source (a certificate or trust
// bundle notifying several of them): a batch touching shared files must
// pass every such service's check before any of them is reloaded, since a
// rollback changes the files for all of them.
func components(cfg *config.Config) [][]string {
	parent := map[string]string{}
	var find func(string) string
	find = func(s string) string {
		if parent[s] == s {
			return s
		}
		parent[s] = find(parent[s])
		return parent[s]
	}
	for _, s := range cfg.Services {
		parent[s.Name] = s.Name
	}
	join := func(notify []string) {
		for _, n := range notify[min(1, len(notify)):] {
			parent[find(n)] = find(notify[0])
		}
	}
	for _, c := range cfg.Certificates {
		join(c.Notify)
	}
	for _, tb := range cfg.TrustBundles {
		join(tb.Notify)
	}
	var out [][]string
	index := map[string]int{}
	for _, s := range cfg.Services {
		root := find(s.Name)
		i, ok := index[root]
		if !ok {
			i = len(out)
			index[root] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], s.Name)
	}
	return out
}

// Changed is called by the agent after a certificate's files changed; n
// says why.
func (m *Manager) Changed(cert config.Certificate, change *sinks.Change, n notice.Notice) {
	if change.Changed() {
		m.notify(arrival{source: CertificateSource(cert.Name), services: slices.Clone(cert.Notify), change: change, note: n})
	}
}

// BundleChanged is called by the trust keeper after a bundle's files
// changed; n says what changed in it. A service whose verify names a
// client_certificate proves with it, after the reload, that valid clients
// still get in.
func (m *Manager) BundleChanged(tb config.TrustBundle, change *sinks.Change, n notice.Notice) {
	if change.Changed() {
		m.notify(arrival{source: BundleSource(tb.Name), bundle: tb.Name, services: slices.Clone(tb.Notify), change: change, note: n})
	}
}

// BundleSettled is told that Vault no longer serves the trust bundle
// files a canary had refused: the services reading it that were left at
// clients_refused run what is current, and are ok again.
func (m *Manager) BundleSettled(tb config.TrustBundle) {
	for _, name := range tb.Notify {
		if g := m.byService[name]; g != nil {
			g.mu.Lock()
			g.canaryFailures = 0
			g.mu.Unlock()
		}
		m.update(name, func(st *Status) {
			if st.State == StateClientsRefused {
				st.State, st.LastError, st.Failures, st.NextAttempt = StateOK, "", 0, time.Time{}
			}
		})
	}
}

// Reload asks for the services cert notifies to be checked, reloaded and
// verified although no file changed; Delivered hears token when that is
// done. After a restart it is how the agent learns that a certificate it
// replaced before the restart is out of service.
func (m *Manager) Reload(cert config.Certificate, token *sinks.Change) {
	m.notify(arrival{source: CertificateSource(cert.Name), services: slices.Clone(cert.Notify), change: token})
}

// CertificateSource and BundleSource are the source names of a
// certificate's and a trust bundle's changes (package trust notifies
// with BundleSource's form), as Outcome.RolledBack lists them.
func CertificateSource(name string) string { return "certificate " + name }

// BundleSource: see CertificateSource.
func BundleSource(name string) string { return "trust_bundle " + name }

// Notify records that source (a name for logs) changed files that the
// named services read, without saying why: the change is handled as
// urgent. It never blocks on a reload.
func (m *Manager) Notify(source string, services []string, change *sinks.Change) {
	if change.Changed() {
		m.notify(arrival{source: source, services: slices.Clone(services), change: change})
	}
}

func (m *Manager) notify(a arrival) {
	if len(a.services) == 0 {
		return
	}
	g := m.byService[a.services[0]]
	if g == nil {
		m.log.Warn("files changed for a service that is not configured", "source", a.source, "services", a.services)
		return
	}
	a.at = m.now()
	g.add(a)
	for _, s := range a.services {
		m.update(s, func(st *Status) { st.Pending = true })
	}
}

// Run processes batches until ctx ends. Changes still waiting then are
// left for Flush, which the caller runs once nothing writes any more.
func (m *Manager) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, g := range m.groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.run(ctx)
		}()
	}
	wg.Wait()
}

// Outcome is what Flush did for one service.
type Outcome struct {
	Service string
	Result  string // one of the Result* values
	Err     error
	// RolledBack are the sources (CertificateSource, BundleSource) whose
	// files a failed check rolled back: what they wrote is no longer on
	// disk.
	RolledBack []string
}

// flushReloadAttempts bounds reload retries in Flush, which serves
// one-shot commands and shutdown and cannot back off for minutes.
const flushReloadAttempts = 3

// Flush checks and reloads, now and without a settle window, every
// service with changes waiting (including batches that were rolled back
// and wait for a retry), and returns one outcome per service it touched,
// in config order. A failed check rolls its batch back and is not retried.
func (m *Manager) Flush(ctx context.Context) []Outcome {
	m.lock()
	return m.flushHeld(ctx, false)
}

// Hold keeps every group's loop (Run) from handling changes until the
// function it returns is called, which then handles everything waiting
// as Flush does, but leaves a rolled-back batch and a failed reload to
// the loop's retries, and lets the loops go on. A `once` done by a
// running daemon holds the services while its passes write, so every
// change of the request joins one batch per service, checked and
// reloaded once, and its outcome is the request's to report.
func (m *Manager) Hold() (flush func(context.Context) []Outcome) {
	m.lock()
	return func(ctx context.Context) []Outcome { return m.flushHeld(ctx, true) }
}

func (m *Manager) lock() {
	for _, g := range m.groups {
		g.busy.Lock()
	}
}

// flushHeld flushes every group, whose busy locks the caller holds, and
// releases them. loop says whether Run goes on and retries what failed.
func (m *Manager) flushHeld(ctx context.Context, loop bool) []Outcome {
	var out []Outcome
	for _, g := range m.groups {
		out = append(out, g.flush(ctx, loop)...)
		g.busy.Unlock()
		g.poke() // anything left parked or owed is the loop's again
	}
	return out
}

// retryDelay is the wait after the failures-th consecutive failure.
func (m *Manager) retryDelay(failures int) time.Duration {
	return m.backoff.Delay(failures-1, m.rand())
}
