package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
)

// rotation is the state forced renewals need: which certificates must be
// renewed even if valid, and which have a pass in flight, so a rotation
// requested during a pass neither runs beside it nor gets lost.
type rotation struct {
	mu sync.Mutex
	// forced maps a certificate to the request that forced it, so a pass
	// that started before a second request does not clear that one.
	forced   map[string]int
	seq      int
	inflight map[string]bool
	again    map[string]time.Time // asked for while in flight
	// at is when each forced rotation was to start, as saved in
	// state_dir (pendingrotations.go); resume holds those taken up at
	// start whose time has not come, so the passes before it are
	// ordinary ones.
	at     map[string]time.Time
	resume map[string]time.Time
	// saveMu keeps the saves of the pending rotations in order.
	saveMu sync.Mutex
}

// Scheduled is when a forced renewal of a certificate will start.
type Scheduled struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// Rotate renews the named certificates (every one when names is empty)
// even though they are valid, each at a random point within spread from
// now, so a fleet rotating at once spreads its load on Vault. A rotation
// only ever brings a pass forward: a point drawn beyond rotateBy is
// clamped to it. The running agent (Run) does the work; Rotate only
// schedules it.
func (a *Agent) Rotate(names []string, spread time.Duration) ([]Scheduled, error) {
	certs, err := a.pick(names)
	if err != nil {
		return nil, err
	}
	now := a.now()
	// Deadlines first: rotateBy may read the certificate from disk, which
	// must not happen under the rotation lock that every pass takes.
	by := make([]time.Time, len(certs))
	for i, c := range certs {
		by[i] = a.rotateBy(c, now)
	}
	r := &a.rot
	r.mu.Lock()
	defer func() {
		r.mu.Unlock()
		a.saveRotations()
	}()
	r.init()
	var out []Scheduled
	for i, c := range certs {
		at := now.Add(time.Duration(a.rand() * float64(spread)))
		if at.After(by[i]) {
			at = by[i]
		}
		r.seq++
		r.forced[c.Name] = r.seq
		r.at[c.Name] = at
		delete(r.resume, c.Name)
		if r.inflight[c.Name] {
			if prev, ok := r.again[c.Name]; !ok || at.Before(prev) {
				r.again[c.Name] = at
			}
		} else {
			a.queue.Set(c.Name, at)
		}
		out = append(out, Scheduled{Name: c.Name, At: at})
	}
	return out, nil
}

// rotateMargin is the share of a certificate's lifetime before NotAfter
// that a forced rotation never reaches, whatever the renewal policy says:
// a rotation that starts that late has no room left for a retry.
const rotateMargin = 0.10

// rotateBy is the latest a forced rotation of c may start. A spread exists
// to spare Vault, never to delay a renewal: the rotation starts no later
// than the pass already queued (the certificate's own renewal point, or a
// retry after a failure), nor than the renewal point of the certificate
// held, nor than its expiry minus rotateMargin of its life. A certificate
// that is missing or no longer fits the config is due now. Three 2-minute
// certificates rotated with -spread 1h all expired before this existed.
func (a *Agent) rotateBy(c config.Certificate, now time.Time) time.Time {
	by := now.Add(maxDuration)
	take := func(t time.Time) {
		if t.Before(by) {
			by = t
		}
	}
	if at, queued := a.queue.When(c.Name); queued {
		take(at)
	}
	h, _, _ := a.current(c, now)
	if h == nil {
		take(now)
		return by
	}
	at, _ := renewAt(c, h, now)
	take(at)
	leaf := h.bundle.Leaf
	take(leaf.NotAfter.Add(-time.Duration(float64(leaf.NotAfter.Sub(leaf.NotBefore)) * rotateMargin)))
	return by
}

// maxDuration is the longest time.Duration, about 292 years.
const maxDuration = time.Duration(1<<63 - 1)

func (r *rotation) init() {
	if r.forced == nil {
		r.forced, r.inflight, r.again = map[string]int{}, map[string]bool{}, map[string]time.Time{}
		r.at, r.resume = map[string]time.Time{}, map[string]time.Time{}
	}
}

// pick returns the configured certificates with the given names, in
// config order, or all of them.
func (a *Agent) pick(names []string) ([]config.Certificate, error) {
	cfg := a.config()
	if len(names) == 0 {
		return cfg.Certificates, nil
	}
	var unknown []string
	for _, n := range names {
		if _, ok := cfg.Certificate(n); !ok {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		var known []string
		for _, c := range cfg.Certificates {
			known = append(known, c.Name)
		}
		return nil, fmt.Errorf("no certificate named %s (configured: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	var out []config.Certificate
	for _, c := range cfg.Certificates {
		if slices.Contains(names, c.Name) {
			out = append(out, c)
		}
	}
	return out, nil
}

// begin marks a pass for name as in flight; false means one already is,
// and the caller must not start another (end reschedules it).
func (a *Agent) begin(name string) bool {
	r := &a.rot
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	if r.inflight[name] {
		if _, ok := r.again[name]; !ok {
			r.again[name] = a.now()
		}
		return false
	}
	r.inflight[name] = true
	return true
}

// beginWait is begin for a pass outside Run's loop: it waits, while ctx
// allows, for a pass in flight to end instead of asking for another one.
func (a *Agent) beginWait(ctx context.Context, name string) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		r := &a.rot
		r.mu.Lock()
		r.init()
		free := !r.inflight[name]
		if free {
			r.inflight[name] = true
		}
		r.mu.Unlock()
		if free {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// end closes a pass begun with begin and schedules the next one: at next,
// or sooner if a rotation was asked for meanwhile. Scheduling happens
// under the same lock as Rotate, so a rotation is never overwritten by the
// pass that was running when it came.
func (a *Agent) end(name string, next time.Time, schedule bool) {
	r := &a.rot
	r.mu.Lock()
	delete(r.inflight, name)
	at, asked := r.again[name]
	delete(r.again, name)
	r.mu.Unlock()
	if !schedule {
		return
	}
	if asked && at.Before(next) {
		next = at
	}
	// reschedule keeps an earlier time set meanwhile (an output changed)
	// and forgets a certificate a reload removed.
	a.reschedule(name, next)
}

// forced says whether the next pass for name must get a new certificate:
// non-zero identifies the request that asked for it.
func (a *Agent) forced(name string) int {
	r := &a.rot
	r.mu.Lock()
	defer r.mu.Unlock()
	if at, ok := r.resume[name]; ok && a.now().Before(at) {
		// Taken up at start and not due yet: this pass is an ordinary
		// one, and the one after it comes at the rotation's time.
		if prev, asked := r.again[name]; !asked || at.Before(prev) {
			r.again[name] = at
		}
		return 0
	}
	return r.forced[name]
}

// rotated clears the forced mark once a new certificate is written,
// unless a newer request came in meanwhile, and forgets it in state_dir.
func (a *Agent) rotated(name string, req int) {
	r := &a.rot
	r.mu.Lock()
	done := r.forced[name] == req
	if done {
		delete(r.forced, name)
		delete(r.at, name)
		delete(r.resume, name)
	}
	r.mu.Unlock()
	if done {
		a.saveRotations()
	}
}

// RotateOnce is Rotate without a running agent, for `certkeeper rotate`
// when no daemon answers: it renews the named certificates (or all) now,
// each after a random wait within spread (never past rotateBy), and
// returns one outcome per certificate, in config order.
func (a *Agent) RotateOnce(ctx context.Context, names []string, spread time.Duration) ([]Outcome, error) {
	certs, err := a.pick(names)
	if err != nil {
		return nil, err
	}
	a.refreshMounts(ctx)
	a.resumeSuperseded()
	a.RevokeDue(ctx)
	out := make([]Outcome, len(certs))
	sem := make(chan struct{}, a.config().Vault.MaxParallel)
	var wg sync.WaitGroup
	for i, c := range certs {
		now := a.now()
		wait := min(time.Duration(a.rand()*float64(spread)), max(0, a.rotateBy(c, now).Sub(now)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if wait > 0 {
				a.log.Info("waiting before rotating", "cert", c.Name, "wait", wait.Round(time.Second).String())
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
			}
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = a.rotateOne(ctx, c)
		}()
	}
	wg.Wait()
	return out, nil
}

func (a *Agent) rotateOne(ctx context.Context, c config.Certificate) Outcome {
	var res *Result
	// A wait within spread cut short by ctx: no attempt at all.
	err := ctx.Err()
	if err == nil {
		err = backoff.OneShot.Do(ctx, a.oneShot(c), func() (err error) {
			res, err = a.ensure(ctx, c, true)
			return err
		})
	}
	st := a.record(c, res, err)
	return Outcome{Result: res, Err: err, Status: st}
}
