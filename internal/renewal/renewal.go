// Package renewal decides when a certificate is renewed. Everything here
// is a pure function of its inputs (certificate times, policy, renewal
// windows, uniform random numbers, and the time asked about): no clocks,
// no globals, so the timing a fleet depends on can be tested exactly.
package renewal

import (
	"hash/fnv"
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

// minShare is the earliest share of a certificate's remaining life (from
// its issuance) at which it may be renewed. It stops a policy that would
// renew at once (a short TTL, Vault backdating NotBefore by 30s, a
// renew_before longer than the whole life) from turning into an
// issue-renew loop against Vault.
const minShare = 0.10

// Times are the facts about one certificate that renewal depends on.
type Times struct {
	NotBefore, NotAfter time.Time
	// Issued is when certkeeper received the certificate; zero if unknown,
	// in which case NotBefore stands in for it.
	Issued time.Time
}

// At returns when a certificate should be renewed. u in [0,1) picks the
// point inside the jitter window. held is true when the policy asked for a
// point so early that it was held back to the minimum (10% of the life left
// at issuance): the caller should warn that the policy does not fit the
// certificate's lifetime.
func At(t Times, p Policy, u float64) (at time.Time, held bool) {
	life := t.NotAfter.Sub(t.NotBefore)
	if life <= 0 {
		return t.NotBefore, false
	}
	window := time.Duration(float64(life) * p.Jitter)
	jitter := time.Duration(u * float64(window))
	at = t.NotBefore.Add(time.Duration(float64(life)*p.Fraction) - jitter)
	// The floor moves the whole jitter window so it ends at NotAfter-Before:
	// a fleet with a floor still spreads out.
	if latest := t.NotAfter.Add(-p.Before); p.Before > 0 && at.After(latest) {
		at = latest.Add(-jitter)
	}
	start := t.Issued
	if start.IsZero() || start.Before(t.NotBefore) || start.After(t.NotAfter) {
		start = t.NotBefore
	}
	earliest := start.Add(time.Duration(float64(t.NotAfter.Sub(start)) * minShare))
	if at.Before(earliest) {
		return earliest, true
	}
	return at, false
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
