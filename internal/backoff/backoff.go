// Package backoff spaces retries: one capped exponential backoff with full
// jitter, and one bounded retry loop built on it. Renewals, Vault logins,
// service reloads, trust bundle refreshes and the one-shot commands all
// wait through these, so a fleet recovering from one outage never retries
// in step.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is capped exponential backoff with full jitter.
type Backoff struct {
	Base time.Duration // first ceiling
	Max  time.Duration // cap of the ceiling
	Min  time.Duration // never retry sooner than this, however small u is
}

// Default is used for renewals, logins, reloads and refreshes: first retry
// within 5s, settling at up to 5 minutes between tries, so a down Vault
// sees a trickle, not a storm.
var Default = Backoff{Base: 5 * time.Second, Max: 5 * time.Minute, Min: time.Second}

// Delay is the wait before retry number attempt (0 for the first retry),
// with u in [0,1) drawing it uniformly below the exponential ceiling.
func (b Backoff) Delay(attempt int, u float64) time.Duration {
	ceiling := float64(b.Max)
	if attempt < 62 {
		ceiling = math.Min(ceiling, float64(b.Base)*math.Pow(2, float64(attempt)))
	}
	d := time.Duration(u * ceiling)
	if d < b.Min {
		d = b.Min
	}
	return d
}

// Retry is a bounded retry: at most Attempts tries, spaced by Backoff.
type Retry struct {
	Attempts int
	Backoff  Backoff
}

// OneShot keeps the one-shot commands (`once`, `rotate` without a daemon)
// short enough for config management while riding out a brief Vault
// hiccup.
var OneShot = Retry{Attempts: 3, Backoff: Backoff{Base: time.Second, Max: 5 * time.Second, Min: 500 * time.Millisecond}}

// Hooks let a caller of Do shape and hear about the waits.
type Hooks struct {
	// Rand draws the jitter; nil means math/rand.
	Rand func() float64
	// AtLeast, when not nil, is the least wait after err (a server's
	// Retry-After).
	AtLeast func(err error) time.Duration
	// Retrying, when not nil, hears each failure that will be retried and
	// the wait before the retry (to log it).
	Retrying func(err error, wait time.Duration)
}

// Do calls try until it succeeds, r.Attempts tries are spent, or ctx has
// ended after a try, and returns try's last error. A wait cut short by ctx
// is followed by one last try, which sees the ended ctx itself.
func (r Retry) Do(ctx context.Context, h Hooks, try func() error) error {
	u := h.Rand
	if u == nil {
		u = rand.Float64
	}
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil || attempt >= r.Attempts || ctx.Err() != nil {
			return err
		}
		d := r.Backoff.Delay(attempt-1, u())
		if h.AtLeast != nil {
			d = max(d, h.AtLeast(err))
		}
		if h.Retrying != nil {
			h.Retrying(err, d)
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// Poll is the wait before the next of a periodic check meant to run every
// period, with u in [0,1): uniform in the last quarter of the period, so
// never later than the period promises. A fleet started together (a
// deploy, a mass reboot) would otherwise poll Vault in the same second of
// every period for good: 200 daemons' per-minute CRL checks made a peak
// of 148 requests per second at the 3-node Vault of make fleet-bench
// against a mean of 3.3. Drawn afresh each time, the hosts' phases drift
// apart within a few periods, at 14% more checks on average.
func Poll(period time.Duration, u float64) time.Duration {
	return period - time.Duration(u*float64(period)/4)
}
