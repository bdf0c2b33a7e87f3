// Package renewal decides when a certificate is renewed and how long a
// failed attempt waits. Everything here is a pure function of its inputs
// (certificate times, policy, a uniform random number): no clocks, no
// globals, so the timing a fleet depends on can be tested exactly.
package renewal

import (
	"hash/fnv"
	"math"
	"time"
)

// Policy is how early in a certificate's life it is renewed.
type Policy struct {
	// Fraction of the lifetime after which renewal is due (0.66: two thirds).
	Fraction float64
	// Jitter widens the due point into the window [Fraction-Jitter, Fraction]
	// of the lifetime, so certificates issued together do not renew together.
	Jitter float64
	// Before, when set, is a floor: renew no later than NotAfter-Before.
	Before time.Duration
}

// minShare is the earliest point of the lifetime a renewal may be placed, so
// a renew_before longer than the certificate's whole life (a role clamping
// the TTL) cannot turn into an issue-renew loop.
const minShare = 0.10

// At returns when a certificate valid from notBefore to notAfter should be
// renewed. u in [0,1) picks the point inside the jitter window. floored is
// true when the renew_before floor could not be honoured because the
// certificate lives too short a time for it: the caller should warn.
func At(notBefore, notAfter time.Time, p Policy, u float64) (at time.Time, floored bool) {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore, false
	}
	window := time.Duration(float64(life) * p.Jitter)
	at = notBefore.Add(time.Duration(float64(life)*p.Fraction) - time.Duration(u*float64(window)))
	if p.Before <= 0 {
		return at, false
	}
	// The floor moves the whole jitter window so it ends at NotAfter-Before:
	// a fleet with a floor still spreads out.
	latest := notAfter.Add(-p.Before)
	if !at.After(latest) {
		return at, false
	}
	earliest := notBefore.Add(time.Duration(float64(life) * minShare))
	floorAt := latest.Add(-time.Duration(u * float64(window)))
	if floorAt.Before(earliest) {
		return at, true
	}
	return floorAt, false
}

// UnitFromSerial maps a certificate serial (and the certificate's configured
// name) to a number in [0,1). Vault serials are random, so across a fleet
// the result is uniform; for one certificate it is stable, so a restart or
// `certkeeper status` finds the same renewal point the agent chose.
func UnitFromSerial(name, serial string) float64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(serial))
	// 53 bits: the precision of a float64 mantissa.
	return float64(h.Sum64()>>11) / (1 << 53)
}

// Backoff is capped exponential backoff with full jitter.
type Backoff struct {
	Base time.Duration // first ceiling
	Max  time.Duration // cap of the ceiling
	Min  time.Duration // never retry sooner than this, however small u is
}

// DefaultBackoff is used for renewals: first retry within 5s, settling at
// up to 5 minutes between tries, so a down Vault sees a trickle, not a storm.
var DefaultBackoff = Backoff{Base: 5 * time.Second, Max: 5 * time.Minute, Min: time.Second}

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
