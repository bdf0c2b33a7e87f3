package renewal

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/backoff"
)

// The fleet simulation: 10,000 hosts whose certificates (24h, the usual
// role TTL) were all issued in the same minute, each renewing at the point
// At picks from its random serial, retrying failures with backoff.Default.
// It counts requests to Vault per minute. Run it with
//
//	go test -run TestFleetRenewalSpread -v ./internal/renewal/
//
// to see the histograms.

const (
	fleetSize = 10_000
	fleetLife = 24 * time.Hour
)

type fleetScenario struct {
	name   string
	policy Policy
	// fails says whether a request at t fails (Vault unavailable), given
	// a uniform draw for random failures.
	fails func(t time.Time, u float64) bool
}

type fleetResult struct {
	perMinute  map[int]int // minute offset from the first issuance -> requests
	first, end int         // first and last minute with requests
	requests   int
	expired    int // hosts whose certificate expired before a renewal succeeded
	maxLeft    time.Duration
}

// simulate runs one scenario with a fixed seed, so every run (and every
// scenario in a run) sees the same fleet.
func simulate(sc fleetScenario, seed uint64) fleetResult {
	rng := rand.New(rand.NewPCG(seed, 1))
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	q := &eventQueue{}
	notAfter := make([]time.Time, fleetSize)
	for h := range fleetSize {
		issued := t0.Add(time.Duration(rng.Float64() * float64(time.Minute)))
		times := Times{NotBefore: issued.Add(-30 * time.Second), NotAfter: issued.Add(fleetLife), Issued: issued}
		notAfter[h] = times.NotAfter
		at, _ := At(times, sc.policy, UnitFromSerial("web", randomSerial(rng)))
		heap.Push(q, event{at: at, host: h})
	}
	res := fleetResult{perMinute: map[int]int{}, first: 1 << 30}
	for q.Len() > 0 {
		ev := heap.Pop(q).(event)
		min := int(ev.at.Sub(t0) / time.Minute)
		res.perMinute[min]++
		res.requests++
		res.first, res.end = minInt(res.first, min), max(res.end, min)
		if !sc.fails(ev.at, rng.Float64()) {
			if ev.at.After(notAfter[ev.host]) {
				res.expired++
			}
			continue
		}
		ev.at = ev.at.Add(backoff.Default.Delay(ev.attempt, rng.Float64()))
		ev.attempt++
		heap.Push(q, ev)
	}
	return res
}

// randomSerial is a Vault-style serial: 20 random bytes, colon-separated.
func randomSerial(rng *rand.Rand) string {
	parts := make([]string, 20)
	for i := range parts {
		parts[i] = fmt.Sprintf("%02x", rng.IntN(256))
	}
	return strings.Join(parts, ":")
}

func (r fleetResult) peak() (minute, n int) {
	for m, c := range r.perMinute {
		if c > n || (c == n && m < minute) {
			minute, n = m, c
		}
	}
	return minute, n
}

// histogram renders per-minute counts from minute from to to, one row per
// step minutes (the row shows the busiest minute in it), bars scaled to 60
// characters at scale.
func (r fleetResult) histogram(from, to, step, scale int) string {
	var b strings.Builder
	for m := from; m <= to; m += step {
		top := 0
		for i := m; i < m+step; i++ {
			top = max(top, r.perMinute[i])
		}
		bar := strings.Repeat("#", min(60, (top*60+scale-1)/max(scale, 1)))
		fmt.Fprintf(&b, "  t+%2dh%02dm %6d %s\n", m/60, m%60, top, bar)
	}
	return b.String()
}

// TestFleetRenewalSpread is the fleet-wide load check: with the default
// policy (renew between 56% and 66% of the life) the busiest minute must
// stay within 1.5x of a perfectly even spread of the fleet over the
// jitter window, retries of 2% random failures included. The same fleet
// without jitter is shown for comparison, and so is a 15-minute Vault
// outage in the busiest part of the window, after which every host must
// still renew before its certificate expires.
func TestFleetRenewalSpread(t *testing.T) {
	def := Policy{Fraction: 0.66, Jitter: 0.10}
	flaky := func(_ time.Time, u float64) bool { return u < 0.02 }
	window := time.Duration(def.Jitter * float64(fleetLife))
	even := float64(fleetSize) / window.Minutes()

	jit := simulate(fleetScenario{"jitter", def, flaky}, 42)
	_, peak := jit.peak()
	ratio := float64(peak) / even
	t.Logf("%d hosts, 24h certificates issued within one minute, policy %.2f-%.2f of the life, 2%% of requests failing and retried with the real backoff",
		fleetSize, def.Fraction-def.Jitter, def.Fraction)
	t.Logf("jitter window %v: an even spread is %.1f requests/minute", window, even)
	t.Logf("WITH jitter: %d requests over minutes %d-%d after issuance; busiest minute %d requests = %.2fx even", jit.requests, jit.first, jit.end, peak, ratio)
	t.Logf("requests per minute with jitter (every minute of the window):\n%s", jit.histogram(jit.first, jit.end, 1, peak))
	if ratio > 1.5 {
		t.Errorf("busiest minute is %.2fx an even spread, want at most 1.5x", ratio)
	}
	if jit.expired != 0 {
		t.Errorf("%d hosts renewed only after expiry", jit.expired)
	}

	flat := simulate(fleetScenario{"no jitter", Policy{Fraction: def.Fraction}, flaky}, 42)
	_, flatPeak := flat.peak()
	t.Logf("WITHOUT jitter: %d requests over minutes %d-%d; busiest minute %d requests = %.1fx even",
		flat.requests, flat.first, flat.end, flatPeak, float64(flatPeak)/even)
	t.Logf("requests per minute without jitter:\n%s", flat.histogram(flat.first, flat.end, 1, flatPeak))
	if float64(flatPeak) < 10*float64(peak) {
		t.Errorf("without jitter the peak (%d) should dwarf the jittered one (%d); the comparison shows nothing", flatPeak, peak)
	}

	// A 15-minute outage where renewals are densest.
	peakMin, _ := jit.peak()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	down, up := t0.Add(time.Duration(peakMin-7)*time.Minute), t0.Add(time.Duration(peakMin+8)*time.Minute)
	outage := simulate(fleetScenario{"outage", def, func(at time.Time, u float64) bool {
		return (!at.Before(down) && at.Before(up)) || u < 0.02
	}}, 42)
	_, outPeak := outage.peak()
	from, to := int(down.Sub(t0)/time.Minute)-5, int(up.Sub(t0)/time.Minute)+10
	t.Logf("WITH a 15-minute outage (minutes %d-%d): %d requests in all (%d more than without); busiest minute %d = %.2fx even",
		from+5, to-10, outage.requests, outage.requests-jit.requests, outPeak, float64(outPeak)/even)
	t.Logf("requests per minute around the outage:\n%s", outage.histogram(from, to, 1, outPeak))
	if outage.expired != 0 {
		t.Errorf("%d hosts' certificates expired before they could renew after the outage", outage.expired)
	}
	// Capped backoff (5 minutes at most) spreads the backlog over a few
	// minutes after Vault returns instead of one burst: bound that burst by
	// the backlog itself, and check it is not all in one minute.
	if outPeak >= int(15*even) {
		t.Errorf("after the outage %d requests arrived in one minute: the backlog came back at once", outPeak)
	}
}

// BenchmarkFleetSimulation times one simulated fleet, for `go test -bench`.
func BenchmarkFleetSimulation(b *testing.B) {
	def := Policy{Fraction: 0.66, Jitter: 0.10}
	for i := 0; i < b.N; i++ {
		r := simulate(fleetScenario{"jitter", def, func(time.Time, float64) bool { return false }}, uint64(i))
		_, peak := r.peak()
		b.ReportMetric(float64(peak)/(float64(fleetSize)/(def.Jitter*fleetLife.Minutes())), "peak/even")
	}
}

type event struct {
	at      time.Time
	host    int
	attempt int
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].host < q[j].host
	}
	return q[i].at.Before(q[j].at)
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}
