package services

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/sinks"
)

// arrival is one change to files some services read.
type arrival struct {
	source   string
	services []string
	change   *sinks.Change
	at       time.Time
	// note says what changed and why (empty for a startup check).
	note notice.Notice
	// bundle names the trust bundle whose files changed, if one did.
	bundle string
	// seq numbers the arrivals of a group in the order their files were
	// written: a reload that starts at seq n loads every change up to n
	// that is on disk then (see loadMark).
	seq uint64
}

// service is one configured service and its retry state; the fields are
// only touched under its group's busy lock.
type service struct {
	cfg        config.Service
	needReload bool
	failures   int
	retryAt    time.Time

	// lastReload is when this process last reloaded the service, for the
	// budget (budget.go); loaded are the changes its next reload loads,
	// which its reload command is told of (hooks.go); backlog and
	// heldUntil are what status and metrics last heard of its backlog.
	lastReload time.Time
	loaded     []notice.Notice
	backlog    int
	heldUntil  time.Time
	// mark is what the reload under way loads (set at its start).
	mark loadMark
	// untested are trust bundle changes this service loaded that its
	// canary (verify's client_certificate) has not yet accepted.
	untested []arrival
}

// group is the services that share a source; one goroutine handles its
// batches, so a service is never checked or reloaded twice at once.
type group struct {
	m        *Manager
	services []*service
	wake     chan struct{}
	// busy is held while the group's services are checked or reloaded,
	// by the loop (run) or by Flush and Hold, which may run beside it.
	busy sync.Mutex

	mu      sync.Mutex
	pending []arrival // written, on disk, not yet loaded by the services
	// parked is a batch whose check failed: its files were rolled back
	// (parkedChanges, merged) and it waits for checkRetryAt.
	parked        []arrival
	parkedChanges []*sinks.Change
	checkFailures int
	checkRetryAt  time.Time

	// seq is the last arrival's number; owed are the arrivals some
	// service has not loaded yet, when someone listens (Delivered).
	seq  uint64
	owed []*owed
	// canaryFailures counts canary refusals in a row, for the backoff.
	canaryFailures int
}

// owed is an arrival and the services that have not loaded it yet.
type owed struct {
	seq     uint64
	change  *sinks.Change
	waiting map[string]bool
}

// loadMark is what a reload that starts now loads: every change numbered
// up to seq, but those rolled back and waiting for a retry (parked).
type loadMark struct {
	seq    uint64
	parked map[uint64]bool
}

// maxSettleFactor caps a batch that keeps growing: it is handled at most
// this many settle windows after its first change.
const maxSettleFactor = 10

func (g *group) add(a arrival) {
	g.mu.Lock()
	g.seq++
	a.seq = g.seq
	g.pending = append(g.pending, a)
	if g.m.delivered != nil && a.change != nil {
		o := &owed{seq: a.seq, change: a.change, waiting: map[string]bool{}}
		for _, name := range a.services {
			o.waiting[name] = true
		}
		g.owed = append(g.owed, o)
	}
	g.mu.Unlock()
	g.poke()
}

// markNow is what a reload starting now will load.
func (g *group) markNow() loadMark {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := loadMark{seq: g.seq, parked: map[uint64]bool{}}
	for _, a := range g.parked {
		m.parked[a.seq] = true
	}
	return m
}

// deliver records that s loaded what mark names, and tells Delivered
// about every change all its services have now loaded.
func (g *group) deliver(s *service, mark loadMark) {
	if g.m.delivered == nil {
		return
	}
	var done []*sinks.Change
	g.mu.Lock()
	g.owed = slices.DeleteFunc(g.owed, func(o *owed) bool {
		if o.seq > mark.seq || mark.parked[o.seq] {
			return false
		}
		delete(o.waiting, s.cfg.Name)
		if len(o.waiting) == 0 {
			done = append(done, o.change)
			return true
		}
		return false
	})
	g.mu.Unlock()
	for _, c := range done {
		g.m.delivered(c)
	}
}

func (g *group) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *group) service(name string) *service {
	for _, s := range g.services {
		if s.cfg.Name == name {
			return s
		}
	}
	return nil
}

func (g *group) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// A check or reload under way when ctx ends is finished (each is
	// bounded by its timeout): killing a reload half-way helps nobody.
	work := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		g.busy.Lock()
		wait, acted := g.step(work)
		g.busy.Unlock()
		if acted {
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		case <-timer.C:
		}
	}
}

// step handles what is due now, if anything (acted), else says how long
// to wait. The caller holds busy.
func (g *group) step(ctx context.Context) (wait time.Duration, acted bool) {
	now := g.m.now()
	batchAt, due, heldUntil := g.batchDue()
	g.backlog(heldUntil)
	next := batchAt
	for _, s := range g.services {
		if s.needReload && (next.IsZero() || s.retryAt.Before(next)) {
			next = s.retryAt
		}
	}
	switch {
	case due && !batchAt.After(now):
		g.attempt(ctx)
		return 0, true
	case !next.IsZero() && !next.After(now):
		for _, s := range g.services {
			if s.needReload && !s.retryAt.After(now) {
				g.reload(ctx, s, nil)
			}
		}
		return 0, true
	}
	if next.IsZero() {
		return time.Hour, false
	}
	return next.Sub(now), false
}

// batchDue says when the next batch should be handled: when the newest
// change is a settle window old (capped for batches that keep growing)
// and the reload budget lets it go (heldUntil, when the budget holds it),
// or when a rolled-back batch is due for its retry.
func (g *group) batchDue() (at time.Time, due bool, heldUntil time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) > 0 {
		var settle time.Duration
		for _, a := range g.pending {
			for _, name := range a.services {
				if s := g.service(name); s != nil {
					settle = max(settle, s.cfg.Settle)
				}
			}
		}
		first, last := g.pending[0].at, g.pending[len(g.pending)-1].at
		at, held := g.release(g.pending, minTime(last.Add(settle), first.Add(maxSettleFactor*settle)))
		if held {
			heldUntil = at
		}
		return at, true, heldUntil
	}
	if len(g.parked) > 0 {
		return g.checkRetryAt, true, time.Time{}
	}
	return time.Time{}, false, time.Time{}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// batch is everything waiting for a group's services, taken for one
// attempt: a rolled-back batch (rewrite: its files are written again
// first) and every change since.
type batch struct {
	arrivals []arrival
	merged   []*sinks.Change
	affected []*service
	rewrite  bool
}

// take takes everything waiting, or returns nil when nothing does.
func (g *group) take() *batch {
	g.mu.Lock()
	arrivals := append(slices.Clone(g.parked), g.pending...)
	changes := slices.Clone(g.parkedChanges)
	for _, a := range g.pending {
		changes = append(changes, a.change)
	}
	rewrite := len(g.parkedChanges) > 0
	g.parked, g.parkedChanges, g.pending = nil, nil, nil
	g.mu.Unlock()
	if len(arrivals) == 0 {
		return nil
	}
	return &batch{arrivals: arrivals, merged: sinks.Merge(changes...), affected: g.affected(arrivals), rewrite: rewrite}
}

// info describes b for the log line of the reloads it leads to.
func (b *batch) info() *batchInfo {
	first := b.arrivals[0].at
	for _, a := range b.arrivals {
		first = minTime(first, a.at)
	}
	return &batchInfo{first: first, sources: sources(b.arrivals), changes: len(b.arrivals)}
}

// rewriteError is a rolled-back batch that could not be written again.
type rewriteError struct{ err error }

func (e *rewriteError) Error() string { return "writing the batch's files again: " + e.err.Error() }
func (e *rewriteError) Unwrap() error { return e.err }

// check writes a rolled-back batch again, then runs every affected
// service's check: all must pass before any is reloaded. It returns the
// service that failed, and why.
func (g *group) check(ctx context.Context, b *batch) (*service, error) {
	if b.rewrite {
		for _, c := range b.merged {
			if err := g.m.files.Reapply(c); err != nil {
				return b.affected[0], &rewriteError{err}
			}
		}
		g.m.log.Info("wrote the rolled-back files again to retry the check", "services", names(b.affected), "sources", sources(b.arrivals),
			"files", strings.Join(paths(b.merged), ","))
	}
	for _, s := range b.affected {
		if s.cfg.Check == nil {
			continue
		}
		if err := runHook(ctx, s.cfg.Check, s.cfg.Timeout, hook{service: s.cfg.Name, changes: append(slices.Clone(s.loaded), b.notices(s)...)}); err != nil {
			return s, fmt.Errorf("check failed: %w", err)
		}
	}
	g.mu.Lock()
	g.checkFailures = 0
	g.mu.Unlock()
	return nil, nil
}

// attempt handles a batch for the group's loop: a failed check is
// retried with backoff, a failed reload too.
func (g *group) attempt(ctx context.Context) {
	b := g.take()
	if b == nil {
		return
	}
	if s, err := g.check(ctx, b); err != nil {
		var rw *rewriteError
		if ctx.Err() != nil && !errors.As(err, &rw) {
			// Shutting down mid-check: put everything back for Flush.
			g.requeue(b)
			return
		}
		rolledBack, delay, err := g.rollBack(err, b)
		g.m.log.Error("check failed; rolled back the batch's files, so the running server keeps the ones it has, and will retry",
			"service", s.cfg.Name, "error", err, "rolled_back", strings.Join(rolledBack, ","), "sources", sources(b.arrivals), "retry_in", delay.Round(time.Millisecond).String())
		g.checkFailedStatus(s, err, g.checkRetryAt)
		return
	}
	info := b.info()
	for _, s := range b.affected {
		s.needReload, s.retryAt = true, g.m.now()
		s.loaded = append(s.loaded, b.notices(s)...)
		b.untest(s)
		g.reload(ctx, s, info)
	}
}

// untest adds the batch's trust bundle changes that s reads to what its
// canary must accept.
func (b *batch) untest(s *service) {
	if s.cfg.Verify == nil || s.cfg.Verify.ClientCertificate == "" {
		return
	}
	for _, a := range b.arrivals {
		if a.bundle != "" && slices.Contains(a.services, s.cfg.Name) {
			s.untested = append(s.untested, a)
		}
	}
}

// flush handles whatever waits, now and once, for one-shot commands,
// shutdown and Hold: a failed check rolls its batch back; a failed
// reload is retried at once, a few times. With loop, the group's loop
// retries both later (and status says when); without, nothing does.
func (g *group) flush(ctx context.Context, loop bool) []Outcome {
	var out []Outcome
	if b := g.take(); b != nil {
		if s, err := g.check(ctx, b); err != nil {
			rolledBack, _, err := g.rollBack(err, b)
			g.m.log.Error("check failed; rolled back the batch's files, so the running server keeps the ones it has",
				"service", s.cfg.Name, "error", err, "rolled_back", strings.Join(rolledBack, ","), "sources", sources(b.arrivals))
			next := time.Time{}
			if loop {
				next = g.checkRetryAt
			}
			g.checkFailedStatus(s, err, next)
			out = append(out, Outcome{Service: s.cfg.Name, Result: ResultCheckFailed, Err: err, RolledBack: sources(b.arrivals)})
		} else {
			info := b.info()
			for _, s := range b.affected {
				s.needReload, s.retryAt = true, g.m.now()
				s.loaded = append(s.loaded, b.notices(s)...)
				b.untest(s)
				out = append(out, g.reloadNow(ctx, s, info, loop))
			}
		}
	}
	for _, s := range g.services {
		if !s.needReload || slices.ContainsFunc(out, func(o Outcome) bool { return o.Service == s.cfg.Name }) {
			continue
		}
		out = append(out, g.reloadNow(ctx, s, nil, loop))
	}
	return out
}

// requeue puts a batch back as it was, for a later attempt.
func (g *group) requeue(b *batch) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b.rewrite {
		g.parked = append(b.arrivals, g.parked...)
		g.parkedChanges = append(b.merged, g.parkedChanges...)
		return
	}
	g.pending = append(b.arrivals, g.pending...)
}

// rollBack asks the file sets' owner to roll back every change of the
// batch, and any that arrived while the check ran (they sit on top of it
// and were never checked either), so the files are again those the
// running server loaded. The batch is parked, to be written and checked
// again after a backoff. It returns the files rolled back, the backoff,
// and the check's error joined with any rollback error.
func (g *group) rollBack(cause error, b *batch) (rolledBack []string, delay time.Duration, err error) {
	g.mu.Lock()
	late := g.pending
	g.pending = nil
	g.mu.Unlock()
	arrivals := b.arrivals
	all := slices.Clone(b.merged)
	for _, a := range late {
		all = append(all, a.change)
		arrivals = append(arrivals, a)
	}
	all = sinks.Merge(all...)
	var rollbackErrs []error
	for _, c := range all {
		if err := g.m.files.Rollback(c); err != nil {
			rollbackErrs = append(rollbackErrs, err)
		}
	}
	g.mu.Lock()
	g.parked, g.parkedChanges = arrivals, all
	g.checkFailures++
	delay = g.m.retryDelay(g.checkFailures)
	g.checkRetryAt = g.m.now().Add(delay)
	g.mu.Unlock()
	b.arrivals = arrivals
	err = cause
	if len(rollbackErrs) > 0 {
		err = errors.Join(cause, fmt.Errorf("and rolling back failed, files may hold the new set: %w", errors.Join(rollbackErrs...)))
	}
	return paths(all), delay, err
}

// checkFailedStatus records a failed check of s; next is when it is
// tried again (zero: not by this process's loop).
func (g *group) checkFailedStatus(s *service, err error, next time.Time) {
	g.m.observe(s.cfg.Name, ResultCheckFailed)
	g.m.update(s.cfg.Name, func(st *Status) {
		st.State = StateCheckFailed
		st.LastError = oneLine(err)
		st.Failures = g.checkFailures
		st.NextAttempt = next
	})
}

// batchInfo describes the batch a reload follows, for the log.
type batchInfo struct {
	first   time.Time
	sources []string
	changes int
}

// reload makes s load the files on disk and, if configured, confirms it
// serves them, for the group's loop: a failure is retried by the loop
// with backoff.
func (g *group) reload(ctx context.Context, s *service, batch *batchInfo) {
	res, served, err := g.reloadOnce(ctx, s)
	if ctx.Err() != nil {
		return // shutting down: Flush reloads what is still owed
	}
	if err == nil {
		s.needReload, s.failures = false, 0
		g.reported(s, res, served, batch)
		return
	}
	if res == ResultClientsRefused {
		g.refused(ctx, s, err, true)
		return
	}
	s.failures++
	delay := g.m.retryDelay(s.failures)
	s.needReload, s.retryAt = true, g.m.now().Add(delay)
	g.failed(s, res, served, err, delay)
}

// reloadNow is reload for Flush: a failure is retried at once, up to
// flushReloadAttempts times, then left to the loop if there is one.
func (g *group) reloadNow(ctx context.Context, s *service, batch *batchInfo, loop bool) Outcome {
	for attempt := 1; ; attempt++ {
		res, served, err := g.reloadOnce(ctx, s)
		if err == nil {
			s.needReload, s.failures = false, 0
			g.reported(s, res, served, batch)
			return Outcome{Service: s.cfg.Name, Result: res}
		}
		if res == ResultClientsRefused {
			// With the loop (a once request to a running daemon), the
			// keeper writes the bundle again after the backoff.
			g.refused(ctx, s, err, loop)
			return Outcome{Service: s.cfg.Name, Result: res, Err: err}
		}
		s.failures++
		delay := g.m.retryDelay(s.failures)
		if attempt < flushReloadAttempts {
			g.m.log.Warn("reload failed, retrying", "service", s.cfg.Name, "error", err, "result", res)
			t := time.NewTimer(time.Second)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
			}
		}
		s.needReload, s.retryAt = true, g.m.now().Add(delay)
		if !loop {
			delay = 0
		}
		g.failed(s, res, served, err, delay)
		return Outcome{Service: s.cfg.Name, Result: res, Err: err}
	}
}

// reloadOnce reloads and verifies s once, and runs its canary when trust
// files it has not yet accepted are loaded.
func (g *group) reloadOnce(ctx context.Context, s *service) (result, served string, err error) {
	var loaded []expected
	if s.cfg.Verify != nil {
		// What the server is about to load; unreadable files make verify
		// fail below with the reason.
		loaded, _ = expectedLeaves(g.m.cfg, s.cfg.Name)
	}
	s.mark = g.markNow()
	ran, err := reloadService(ctx, s.cfg, hook{service: s.cfg.Name, changes: s.loaded})
	if err != nil {
		return ResultReloadFailed, "", fmt.Errorf("reload failed: %w", err)
	}
	if !ran {
		// Nothing runs the old files; the server reads these at start.
		s.untested = nil
		return ResultNotRunning, "", nil
	}
	s.lastReload = g.m.now()
	if s.cfg.Verify == nil {
		return ResultOK, "", nil
	}
	served, err = g.m.verify(ctx, s.cfg, loaded)
	g.m.servedMatches(s.cfg.Name, err == nil)
	if err != nil {
		return ResultNotServed, served, fmt.Errorf("written but not served: %w", err)
	}
	if len(s.untested) == 0 {
		return ResultOK, served, nil
	}
	switch err := g.m.canary(ctx, s.cfg); {
	case err == nil:
		g.m.log.Info("a valid client still gets in with the new trust files", "service", s.cfg.Name,
			"client_certificate", s.cfg.Verify.ClientCertificate, "sources", sources(s.untested))
	case errors.As(err, new(*canarySkipped)):
		g.m.log.Warn("cannot prove that valid clients still get in: the canary certificate is not valid by the new trust files itself; the files stay", "service", s.cfg.Name,
			"client_certificate", s.cfg.Verify.ClientCertificate, "reason", err)
	case errors.As(err, new(*refusedError)):
		return ResultClientsRefused, served, err
	default:
		// The server did not answer: not a verdict on the files.
		return ResultNotServed, served, fmt.Errorf("checking that valid clients still get in: %w", err)
	}
	s.untested = nil
	g.mu.Lock()
	g.canaryFailures = 0
	g.mu.Unlock()
	return ResultOK, served, nil
}

// refused handles a canary refusal of s: the trust bundle changes s
// loaded and its canary refused (and any that arrived meanwhile for the
// same bundles, which sit on top of them) are rolled back as sets; every
// service that reads them is reloaded onto the previous files; s shows
// clients_refused; and the bundles are held until a backoff passes
// (BundleRefused), when the trust keeper writes them again and the canary
// tries again. retry says whether anything will (false under Flush).
func (g *group) refused(ctx context.Context, s *service, cause error, retry bool) {
	bundles := map[string]bool{}
	for _, a := range s.untested {
		bundles[a.bundle] = true
	}
	g.mu.Lock()
	arrivals := slices.Clone(s.untested)
	g.pending = slices.DeleteFunc(g.pending, func(a arrival) bool {
		if bundles[a.bundle] {
			arrivals = append(arrivals, a)
			return true
		}
		return false
	})
	gone := map[uint64]bool{}
	for _, a := range arrivals {
		gone[a.seq] = true
	}
	// Rolled back for good: the keeper writes them anew, as new changes.
	g.owed = slices.DeleteFunc(g.owed, func(o *owed) bool { return gone[o.seq] })
	g.canaryFailures++
	delay := g.m.retryDelay(g.canaryFailures)
	g.mu.Unlock()
	retryAt := g.m.now().Add(delay)

	var changes []*sinks.Change
	for _, a := range arrivals {
		changes = append(changes, a.change)
	}
	merged := sinks.Merge(changes...)
	var errs []error
	for _, c := range merged {
		if err := g.m.files.Rollback(c); err != nil {
			errs = append(errs, err)
		}
	}
	err := cause
	if len(errs) > 0 {
		err = errors.Join(cause, fmt.Errorf("and rolling back failed, files may hold the new set: %w", errors.Join(errs...)))
	}
	attrs := []any{"service", s.cfg.Name, "error", err, "client_certificate", s.cfg.Verify.ClientCertificate,
		"rolled_back", strings.Join(paths(merged), ","), "sources", sources(arrivals)}
	if retry {
		attrs = append(attrs, "retry_in", delay.Round(time.Millisecond).String())
	}
	g.m.log.Error("a valid client is refused with the new trust files; rolled them back and reloading onto the previous ones", attrs...)
	g.m.observe(s.cfg.Name, ResultClientsRefused)

	// Every service that loaded the refused files goes back to the
	// previous ones, s too.
	for _, other := range g.services {
		if !slices.ContainsFunc(arrivals, func(a arrival) bool { return slices.Contains(a.services, other.cfg.Name) }) {
			continue
		}
		other.untested = slices.DeleteFunc(other.untested, func(a arrival) bool { return gone[a.seq] })
		if _, _, rerr := g.reloadOnce(ctx, other); rerr != nil {
			other.failures++
			other.needReload, other.retryAt = true, g.m.now().Add(g.m.retryDelay(other.failures))
			g.m.log.Error("reloading onto the previous trust files failed; will retry", "service", other.cfg.Name, "error", rerr)
		} else {
			other.needReload, other.failures = false, 0
			// What else the batch changed (a certificate) is loaded now.
			g.deliver(other, other.mark)
		}
	}
	if g.m.bundleRefused != nil && retry {
		for b := range bundles {
			g.m.bundleRefused(b, retryAt, cause)
		}
	}
	next := retryAt
	if !retry {
		next = time.Time{}
	}
	g.mu.Lock()
	failures := g.canaryFailures
	g.mu.Unlock()
	g.m.update(s.cfg.Name, func(st *Status) {
		st.State = StateClientsRefused
		st.LastError = oneLine(err)
		st.Failures = failures
		st.NextAttempt = next
	})
}

func (g *group) reported(s *service, res, served string, batch *batchInfo) {
	g.deliver(s, s.mark)
	g.m.observe(s.cfg.Name, res)
	reason, urgent := leadingReason(s.loaded)
	if res != ResultNotRunning && g.m.observer != nil {
		g.m.observer.ReloadReason(s.cfg.Name, reason, urgent)
	}
	s.loaded = nil
	log := g.m.log.With("service", s.cfg.Name)
	if batch != nil {
		log = log.With("sources", batch.sources, "changes", batch.changes, "since_change", g.m.now().Sub(batch.first).Round(time.Millisecond).String())
	}
	log = log.With("reason", reason, "urgent", urgent)
	now := g.m.now()
	pending := g.hasPending(s.cfg.Name)
	switch res {
	case ResultNotRunning:
		log.Info("service is not running; it will read the new files when it starts")
	default:
		if served != "" {
			log = log.With("served_serial", served)
		}
		log.Info("service reloaded")
	}
	g.m.update(s.cfg.Name, func(st *Status) {
		st.State = StateOK
		if res == ResultNotRunning {
			st.State = StateNotRunning
		} else {
			st.Reloads++
			st.LastReload = now
		}
		st.Pending = pending
		st.LastError, st.Failures, st.NextAttempt = "", 0, time.Time{}
		st.Served = served
	})
}

// failed records a failed reload of s; retryIn is when the loop tries
// again (zero: it does not, Flush gave up).
func (g *group) failed(s *service, res, served string, err error, retryIn time.Duration) {
	g.m.observe(s.cfg.Name, res)
	msg, retry := "reload failed", "; will retry"
	if res == ResultNotServed {
		msg, retry = "service reloaded but does not serve the certificate on disk (written but not served)", "; will reload again"
	}
	attrs := []any{"service", s.cfg.Name, "error", err, "failures", s.failures}
	if retryIn > 0 {
		msg += retry
		attrs = append(attrs, "retry_in", retryIn.Round(time.Millisecond).String())
	}
	g.m.log.Error(msg, attrs...)
	g.m.update(s.cfg.Name, func(st *Status) {
		st.State = StateReloadFailed
		if res == ResultNotServed {
			st.State = StateNotServed
		}
		st.LastError = oneLine(err)
		st.Failures = s.failures
		st.NextAttempt = s.retryAt
		if retryIn == 0 {
			st.NextAttempt = time.Time{}
		}
		st.Served = served
	})
}

// hasPending says whether changes for the service wait for a later batch.
func (g *group) hasPending(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.ContainsFunc(append(slices.Clone(g.pending), g.parked...), func(a arrival) bool { return slices.Contains(a.services, name) })
}

// affected lists, in config order, the services the arrivals notify.
func (g *group) affected(arrivals []arrival) []*service {
	var out []*service
	for _, s := range g.services {
		if slices.ContainsFunc(arrivals, func(a arrival) bool { return slices.Contains(a.services, s.cfg.Name) }) {
			out = append(out, s)
		}
	}
	return out
}

func names(ss []*service) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.cfg.Name)
	}
	return out
}

func sources(arrivals []arrival) []string {
	var out []string
	for _, a := range arrivals {
		if !slices.Contains(out, a.source) {
			out = append(out, a.source)
		}
	}
	return out
}

func paths(changes []*sinks.Change) []string {
	var out []string
	for _, c := range changes {
		out = append(out, c.Written...)
	}
	return out
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func (m *Manager) observe(service, result string) {
	if m.observer != nil {
		m.observer.ServiceReloaded(service, result)
	}
}

func (m *Manager) servedMatches(service string, ok bool) {
	if m.observer != nil {
		m.observer.ServedMatches(service, ok)
	}
}
