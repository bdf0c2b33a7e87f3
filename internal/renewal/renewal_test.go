package renewal

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestAt(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name        string
		life        time.Duration
		p           Policy
		u           float64
		want        time.Duration // after notBefore
		wantFloored bool
	}{
		{"no jitter: exactly the fraction", 90 * day, Policy{Fraction: 0.66}, 0.5, time.Duration(0.66 * float64(90*day)), false},
		{"jitter u=0 is the latest point", 100 * time.Hour, Policy{Fraction: 0.66, Jitter: 0.1}, 0, 66 * time.Hour, false},
		{"jitter u near 1 is the earliest point", 100 * time.Hour, Policy{Fraction: 0.66, Jitter: 0.1}, 0.999999, 56*time.Hour + 36*time.Millisecond, false},
		{"floor not reached", 100 * time.Hour, Policy{Fraction: 0.5, Before: 10 * time.Hour}, 0, 50 * time.Hour, false},
		{"floor pulls renewal earlier", 90 * day, Policy{Fraction: 0.66, Before: 45 * day}, 0, 45 * day, false},
		{"floor keeps the jitter window", 100 * time.Hour, Policy{Fraction: 0.66, Jitter: 0.1, Before: 50 * time.Hour}, 0.5, 45 * time.Hour, false},
		{"floor longer than life is held back and reported", time.Hour, Policy{Fraction: 0.66, Before: 24 * time.Hour}, 0, 6 * time.Minute, true},
		{"a tiny fraction is held back, not a loop", 100 * time.Second, Policy{Fraction: 0.01}, 0, 10 * time.Second, true},
		{"zero lifetime renews at once", 0, Policy{Fraction: 0.66}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, floored := At(Times{NotBefore: t0, NotAfter: t0.Add(tt.life)}, tt.p, tt.u)
			if d := got.Sub(t0); d.Round(time.Millisecond) != tt.want.Round(time.Millisecond) {
				t.Errorf("renewal at +%v, want +%v", d, tt.want)
			}
			if floored != tt.wantFloored {
				t.Errorf("floored = %v, want %v", floored, tt.wantFloored)
			}
		})
	}
}

// TestJitterSpreadsOverWholeWindow is the test consul-template's pkiCert
// lacked: 10,000 certificates issued in the same second must renew spread
// evenly over the jitter window, not bunched at one point.
func TestJitterSpreadsOverWholeWindow(t *testing.T) {
	const n = 10000
	const buckets = 10
	life := 72 * time.Hour
	p := Policy{Fraction: 0.66, Jitter: 0.10}
	windowStart := t0.Add(time.Duration(float64(life) * (p.Fraction - p.Jitter)))
	window := time.Duration(float64(life) * p.Jitter)

	var counts [buckets]int
	for i := range n {
		serial := fmt.Sprintf("%x", rand.Uint64())
		at, _ := At(Times{NotBefore: t0, NotAfter: t0.Add(life)}, p, UnitFromSerial("web", serial))
		off := at.Sub(windowStart)
		if off < 0 || off > window {
			t.Fatalf("draw %d: renewal %v outside the window [%v, %v]", i, at, windowStart, windowStart.Add(window))
		}
		b := int(float64(off) / float64(window) * buckets)
		if b == buckets {
			b--
		}
		counts[b]++
	}
	// Each tenth of the window must hold close to a tenth of the fleet
	// (binomial sd is about 30 here; 25% slack is over 8 sd).
	for i, c := range counts {
		if c < n/buckets*3/4 || c > n/buckets*5/4 {
			t.Errorf("bucket %d of the jitter window holds %d of %d renewals, want about %d: %v", i, c, n, n/buckets, counts)
		}
	}
}

// TestBackdatedShortCertificate is the loop found against a real Vault: it
// backdates NotBefore by 30s, so a 2-minute certificate with
// renew_fraction 0.2 was "due" the moment it arrived, and was re-issued in a
// tight loop. The renewal point must stay after the issuance.
func TestBackdatedShortCertificate(t *testing.T) {
	issued := t0.Add(30 * time.Second)
	times := Times{NotBefore: t0, NotAfter: issued.Add(2 * time.Minute), Issued: issued}
	for _, u := range []float64{0, 0.5, 0.99} {
		at, held := At(times, Policy{Fraction: 0.2, Jitter: 0.05}, u)
		if want := issued.Add(12 * time.Second); !at.Equal(want) || !held {
			t.Errorf("u=%v: renewal at %v (held %v), want %v held", u, at.Sub(issued), held, want.Sub(issued))
		}
	}
	// Without knowing the issuance time, NotBefore stands in.
	at, _ := At(Times{NotBefore: t0, NotAfter: t0.Add(150 * time.Second)}, Policy{Fraction: 0.01}, 0)
	if want := t0.Add(15 * time.Second); !at.Equal(want) {
		t.Errorf("unknown issuance: %v, want %v", at, want)
	}
}

func TestUnitFromSerialIsStableAndNameDependent(t *testing.T) {
	a := UnitFromSerial("web", "1a:2b")
	if b := UnitFromSerial("web", "1a:2b"); a != b {
		t.Errorf("same input gave %v and %v", a, b)
	}
	if c := UnitFromSerial("api", "1a:2b"); c == a {
		t.Errorf("different names gave the same unit %v", a)
	}
	if a < 0 || a >= 1 {
		t.Errorf("unit %v outside [0,1)", a)
	}
}
