package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/vault"
)

// Run keeps every certificate fresh until ctx ends. passed, if not nil, is
// called after every pass, whatever its outcome, with the certificate's
// name; Placed then says whether its files are in place (the daemon's
// READY=1 waits on that). On return no write is in flight.
func (a *Agent) Run(ctx context.Context, passed func(name string)) error {
	q := a.queue
	cfg := a.config()
	for _, c := range cfg.Certificates {
		q.Set(c.Name, time.Time{})
	}
	a.loadRotations()

	sem := make(chan struct{}, cfg.Vault.MaxParallel)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	// Passes a once request runs beside the loop end before Run does.
	defer a.oneShots.Wait()
	// The mounts' issuers, for CA rotation (carotation.go).
	inflight.Go(func() { a.issuerLoop(ctx) })
	// Replaced certificates a previous process left waiting for their
	// revocation (superseded.go), then the revocations as they fall due.
	a.resumeSuperseded()
	inflight.Go(func() { a.revokeLoop(ctx) })
	for {
		name, err := q.Next(ctx)
		if err != nil {
			return nil
		}
		if !a.begin(name) {
			continue // a pass is in flight; it reschedules name when done
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			next, ok := a.pass(ctx, name)
			a.end(name, next, ok && ctx.Err() == nil)
			if passed != nil && ctx.Err() == nil {
				passed(name)
			}
		}()
	}
}

// pass runs one attempt for the named certificate and returns when the
// next one is due. ok is false when the certificate is no longer
// configured.
func (a *Agent) pass(ctx context.Context, name string) (next time.Time, ok bool) {
	c, ok := a.config().Certificate(name)
	if !ok {
		a.forget(name)
		return time.Time{}, false
	}
	req := a.forced(name)
	res, err := a.ensure(ctx, c, req != 0)
	if err == nil && req != 0 {
		a.rotated(name, req)
	}
	if ctx.Err() != nil {
		// Shutting down: an interrupted request is not a failure to report.
		return time.Time{}, false
	}
	st := a.record(c, res, err)
	a.observe(st, res, err)
	if err != nil {
		a.logFailure(name, err, st)
		return st.NextAttempt, true
	}
	a.logResult(res, st)
	at := res.RenewAt
	for _, t := range []time.Time{res.recheck, res.NextPass} {
		if !t.IsZero() && t.Before(at) {
			at = t
		}
	}
	return at, true
}

func (a *Agent) logResult(res *Result, st Status) {
	log := a.log.With("cert", res.Name, "serial", res.Serial, "not_after", st.NotAfter.Format(time.RFC3339), "renew_at", res.RenewAt.Format(time.RFC3339))
	switch res.Action {
	case Issued:
		log.Info("certificate issued and written", "reason", res.Reason)
	case Restored:
		log.Info("certificate files restored", "files", res.Written)
	default:
		log.Debug("certificate on disk is good; nothing asked of vault")
	}
}

// retryDelay is how long to wait after the failures-th consecutive failure.
func (a *Agent) retryDelay(b backoff.Backoff, failures int, err error) time.Duration {
	return max(b.Delay(failures-1, a.rand()), retryAfter(err))
}

// retryAfter is the wait Vault asked for (429 with Retry-After), if any.
func retryAfter(err error) time.Duration {
	var ve *vault.Error
	if errors.As(err, &ve) {
		return ve.RetryAfter
	}
	return 0
}

// oneShot are the retry hooks of the one-shot commands for c.
func (a *Agent) oneShot(c config.Certificate) backoff.Hooks {
	return backoff.Hooks{Rand: a.rand, AtLeast: retryAfter, Retrying: func(err error, d time.Duration) {
		a.log.Warn("attempt failed, retrying", "cert", c.Name, "error", err, "retry_in", d.String())
	}}
}

// Outcome is what Once did for one certificate.
type Outcome struct {
	Result *Result // nil on failure
	Err    error
	Status Status
}

// Once makes every certificate valid and written, then returns one outcome
// per certificate, in config order.
func (a *Agent) Once(ctx context.Context) []Outcome {
	cfg := a.config()
	a.refreshMounts(ctx)
	a.resumeSuperseded()
	a.RevokeDue(ctx)
	out := make([]Outcome, len(cfg.Certificates))
	sem := make(chan struct{}, cfg.Vault.MaxParallel)
	var wg sync.WaitGroup
	for i, c := range cfg.Certificates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = a.onceOne(ctx, c, false)
		}()
	}
	wg.Wait()
	return out
}

// OnceRunning is Once inside a running agent (a `once` request to the
// daemon): each certificate's pass waits for one the loop has in flight,
// runs with the one-shot retries, and schedules the next pass as the loop
// would. Every certificate configured now gets one, in config order.
func (a *Agent) OnceRunning(ctx context.Context) []Outcome {
	cfg := a.config()
	out := make([]Outcome, len(cfg.Certificates))
	sem := make(chan struct{}, cfg.Vault.MaxParallel)
	var wg sync.WaitGroup
	for i, c := range cfg.Certificates {
		wg.Add(1)
		a.oneShots.Add(1)
		go func() {
			defer wg.Done()
			defer a.oneShots.Done()
			if !a.beginWait(ctx, c.Name) {
				out[i] = Outcome{Err: ctx.Err(), Status: Status{Name: c.Name, LastError: "stopped before its pass: " + ctx.Err().Error()}}
				return
			}
			sem <- struct{}{}
			out[i] = a.onceOne(ctx, c, true)
			<-sem
			next := out[i].Status.NextAttempt
			if out[i].Result != nil {
				next = out[i].Result.RenewAt
			}
			a.end(c.Name, next, ctx.Err() == nil)
		}()
	}
	wg.Wait()
	return out
}

// onceOne is one certificate's pass with the one-shot retries; retrying
// says whether a daemon tries again later (a once request to it) or the
// process exits after (once alone).
func (a *Agent) onceOne(ctx context.Context, c config.Certificate, retrying bool) Outcome {
	var res *Result
	err := backoff.OneShot.Do(ctx, a.oneShot(c), func() (err error) {
		res, err = a.ensure(ctx, c, false)
		return err
	})
	st := a.record(c, res, err)
	a.observe(st, res, err)
	if err != nil {
		a.log.Error(failedMsg(st, retrying), "cert", c.Name, "error", err,
			"failures", st.Failures, "current_not_after", formatTime(st.NotAfter))
	} else {
		a.logResult(res, st)
	}
	return Outcome{Result: res, Err: err, Status: st}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.Format(time.RFC3339)
}
