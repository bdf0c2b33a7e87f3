package renewal

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func mustWindow(t *testing.T, cron string, length time.Duration, loc *time.Location) Window {
	t.Helper()
	w, err := NewWindow(cron, length, loc)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestWindowsOpen(t *testing.T) {
	// 2026-01-05 is a Monday.
	mon := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	weeknights := mustWindow(t, "0 2 * * 1-5", 3*time.Hour, time.UTC)
	lateFriday := mustWindow(t, "0 22 * * 5", 4*time.Hour, time.UTC) // Fri 22:00 to Sat 02:00
	tests := []struct {
		name       string
		ws         Windows
		at         time.Time
		start, end time.Time
	}{
		{"before the window on the same day", Windows{weeknights}, mon.Add(time.Hour), mon.Add(2 * time.Hour), mon.Add(5 * time.Hour)},
		{"inside the window", Windows{weeknights}, mon.Add(3 * time.Hour), mon.Add(2 * time.Hour), mon.Add(5 * time.Hour)},
		{"at the very start", Windows{weeknights}, mon.Add(2 * time.Hour), mon.Add(2 * time.Hour), mon.Add(5 * time.Hour)},
		{"at the end it is closed: the next day's", Windows{weeknights}, mon.Add(5 * time.Hour), mon.Add(26 * time.Hour), mon.Add(29 * time.Hour)},
		{"Friday after the window: Monday's", Windows{weeknights}, mon.Add(4*24*time.Hour + 6*time.Hour), mon.Add(7*24*time.Hour + 2*time.Hour), mon.Add(7*24*time.Hour + 5*time.Hour)},
		{"a window across midnight, seen from Saturday 01:00", Windows{lateFriday}, mon.Add(5*24*time.Hour + time.Hour), mon.Add(4*24*time.Hour + 22*time.Hour), mon.Add(5*24*time.Hour + 2*time.Hour)},
		{"the earliest of two windows", Windows{lateFriday, weeknights}, mon.Add(4*24*time.Hour + 6*time.Hour), mon.Add(4*24*time.Hour + 22*time.Hour), mon.Add(5*24*time.Hour + 2*time.Hour)},
		{"windows that overlap join", Windows{mustWindow(t, "0 1 * * *", 2*time.Hour, time.UTC), mustWindow(t, "0 2 * * *", 2*time.Hour, time.UTC)}, mon, mon.Add(time.Hour), mon.Add(4 * time.Hour)},
		{"windows that touch join", Windows{mustWindow(t, "0 1 * * *", time.Hour, time.UTC), mustWindow(t, "0 2 * * *", time.Hour, time.UTC)}, mon, mon.Add(time.Hour), mon.Add(3 * time.Hour)},
		{"a window longer than its period never closes", Windows{mustWindow(t, "0 * * * *", 2*time.Hour, time.UTC)}, mon.Add(30 * time.Minute), mon.Add(-time.Hour), farFuture},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end, ok := tt.ws.Open(tt.at)
			if !ok || !start.Equal(tt.start) || !end.Equal(tt.end) {
				t.Errorf("Open(%v) = [%v, %v) %v, want [%v, %v)", tt.at, start.UTC(), end.UTC(), ok, tt.start, tt.end)
			}
		})
	}
	never := Windows{mustWindow(t, "0 2 31 2 *", time.Hour, time.UTC)} // 31 February
	if _, _, ok := never.Open(mon); ok {
		t.Error("a window on 31 February opened")
	}
}

// TestWindowTimeZone: the expression is read in its zone, DST included:
// 02:30 does not exist in Berlin on 2027-03-28, so that night has no
// window, and the next one is 02:30 CEST (00:30 UTC) on the 29th.
func TestWindowTimeZone(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	w := Windows{mustWindow(t, "30 2 * * *", time.Hour, berlin)}
	start, _, _ := w.Open(time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC))
	if want := time.Date(2027, 1, 11, 1, 30, 0, 0, time.UTC); !start.Equal(want) {
		t.Errorf("winter: opens %v, want %v (02:30 CET)", start.UTC(), want)
	}
	start, _, _ = w.Open(time.Date(2027, 3, 27, 12, 0, 0, 0, time.UTC))
	if want := time.Date(2027, 3, 29, 0, 30, 0, 0, time.UTC); !start.Equal(want) {
		t.Errorf("over the spring change: opens %v, want %v (02:30 CEST the day after)", start.UTC(), want)
	}
}

func TestSchedule(t *testing.T) {
	// A 100-hour certificate from Monday 2026-01-05 00:00 UTC; policy
	// 0.66 without jitter: renewal point Wednesday 18:00 (+66h), safe
	// margin NotAfter - 17h = Thursday 11:00 (+83h).
	nb := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	times := Times{NotBefore: nb, NotAfter: nb.Add(100 * time.Hour)}
	p := Policy{Fraction: 0.66}
	h := func(n float64) time.Time { return nb.Add(time.Duration(n * float64(time.Hour))) }
	nightly := Windows{mustWindow(t, "0 2 * * *", 3*time.Hour, time.UTC)}       // 02:00-05:00
	evenings := Windows{mustWindow(t, "0 17 * * *", 2*time.Hour, time.UTC)}     // 17:00-19:00
	sundays := Windows{mustWindow(t, "0 2 * * 0", 3*time.Hour, time.UTC)}       // Sunday 02:00
	lateThursday := Windows{mustWindow(t, "0 10 * * 4", 4*time.Hour, time.UTC)} // Thu 10:00-14:00

	tests := []struct {
		name    string
		p       Policy
		ws      Windows
		u       Units
		now     time.Time
		at      time.Time
		outside bool
		window  time.Time // start of the window used, zero for none
	}{
		{"no windows: the renewal point", p, nil, Units{Window: 0.5}, nb, h(66), false, time.Time{}},
		{"the point falls in a window: kept", p, evenings, Units{Window: 0.9}, nb, h(66), false, h(65)},
		{"the next window, at its start (u=0)", p, nightly, Units{}, nb, h(74), false, h(74)},
		{"the next window, half way (u=0.5)", p, nightly, Units{Window: 0.5}, nb, h(75.5), false, h(74)},
		{"no window before the safe margin: at the point, outside", p, sundays, Units{Window: 0.5}, nb, h(66), true, time.Time{}},
		{"a window that opens before the margin is cut at it", p, lateThursday, Units{Window: 0.5}, nb, h(82.5), false, h(82)},
		{"renew_before is a hard floor: the margin moves with it", Policy{Fraction: 0.66, Before: 30 * time.Hour}, nightly, Units{Window: 0.5}, nb, h(66), true, time.Time{}},
		{"renew_before cuts the window short", Policy{Fraction: 0.6, Before: 24 * time.Hour}, nightly, Units{Window: 0.5}, nb, h(75), false, h(74)},
		{"without renew_before the window is used further", Policy{Fraction: 0.6}, nightly, Units{Window: 0.5}, nb, h(75.5), false, h(74)},
		{"daemon down over the only window in time: at once, outside", p, nightly, Units{Window: 0.5}, h(78), time.Time{}, true, time.Time{}},
		{"daemon down, the margin allows the next window", Policy{Fraction: 0.4}, nightly, Units{Window: 0.5}, h(40), h(51.5), false, h(50)},
		{"inside a window after the point: now-ish", p, nightly, Units{}, h(75), h(74), false, h(74)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Schedule(times, tt.p, tt.ws, tt.u, tt.now)
			if tt.outside {
				// Outside: the renewal point, whatever now says.
				if !plan.Outside || !plan.At.Equal(plan.Due) {
					t.Errorf("plan %+v, want outside at the renewal point", plan)
				}
				return
			}
			if !plan.At.Equal(tt.at) || plan.Outside {
				t.Errorf("renewal at +%v (outside %v), want +%v", plan.At.Sub(nb), plan.Outside, tt.at.Sub(nb))
			}
			if !plan.WindowStart.Equal(tt.window) {
				t.Errorf("window starts +%v, want +%v", plan.WindowStart.Sub(nb), tt.window.Sub(nb))
			}
			if plan.At.After(plan.Latest) {
				t.Errorf("renewal at +%v is past the safe margin +%v", plan.At.Sub(nb), plan.Latest.Sub(nb))
			}
		})
	}
	if plan := Schedule(times, p, nil, Units{}, nb); plan.Latest.Round(time.Millisecond) != h(83) {
		t.Errorf("safe margin at +%v, want +83h (NotAfter - (1-0.66)/2 of the life)", plan.Latest.Sub(nb))
	}
}

// TestScheduleIsStableBeforeItsPoint: the agent recomputes the plan at
// every pass and in status; any now before the planned point must give
// the same point, or a renewal would drift.
func TestScheduleIsStableBeforeItsPoint(t *testing.T) {
	nb := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	times := Times{NotBefore: nb, NotAfter: nb.Add(72 * time.Hour)}
	ws := Windows{mustWindow(t, "0 2 * * 1-5", 3*time.Hour, time.UTC)}
	p := Policy{Fraction: 0.66, Jitter: 0.1}
	for i := range 200 {
		u := UnitsFromSerial("web", fmt.Sprint(i))
		first := Schedule(times, p, ws, u, nb)
		for _, d := range []time.Duration{time.Hour, 30 * time.Hour, first.At.Sub(nb) - time.Second} {
			if again := Schedule(times, p, ws, u, nb.Add(d)); !again.At.Equal(first.At) {
				t.Fatalf("serial %d: at now=+%v the plan moved from +%v to +%v", i, d, first.At.Sub(nb), again.At.Sub(nb))
			}
		}
	}
}

// TestWindowSpreadsTheFleet: 10,000 certificates issued in the same
// minute whose renewal points fall outside the window must renew spread
// evenly over the whole window, not at its start.
func TestWindowSpreadsTheFleet(t *testing.T) {
	const n = 10000
	const buckets = 12 // one per 15 minutes of a 3-hour window
	nb := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	times := Times{NotBefore: nb, NotAfter: nb.Add(72 * time.Hour)}
	p := Policy{Fraction: 0.66, Jitter: 0.10} // points between +40.3h and +47.5h: Wednesday 01:19 to 08:31
	// The safe margin is +59.8h (Wednesday 20:45): Wednesday 10:00-13:00
	// is the one window in time.
	ws := Windows{mustWindow(t, "0 10 * * 3", 3*time.Hour, time.UTC)}
	wStart := time.Date(2026, 1, 7, 10, 0, 0, 0, time.UTC)
	var counts [buckets]int
	for range n {
		serial := fmt.Sprintf("%x", rand.Uint64())
		plan := Schedule(times, p, ws, UnitsFromSerial("web", serial), nb)
		off := plan.At.Sub(wStart)
		if plan.Outside || off < 0 || off >= 3*time.Hour {
			t.Fatalf("renewal at %v (outside %v), want inside Wednesday 10:00-13:00", plan.At, plan.Outside)
		}
		counts[int(off/(15*time.Minute))]++
	}
	// Each quarter hour holds close to a twelfth (binomial sd about 28;
	// 25% slack is about 7 sd).
	for i, c := range counts {
		if c < n/buckets*3/4 || c > n/buckets*5/4 {
			t.Errorf("quarter hour %d of the window holds %d of %d renewals, want about %d: %v", i, c, n, n/buckets, counts)
		}
	}
}

// TestWindowUnitIsIndependent: the point in the window must not follow
// from the point in the jitter window, or a fleet whose points cluster
// would cluster in the window too.
func TestWindowUnitIsIndependent(t *testing.T) {
	var low, lowHigh int
	for i := range 10000 {
		u := UnitsFromSerial("web", fmt.Sprint(i))
		if u.Due < 0.5 {
			low++
			if u.Window >= 0.5 {
				lowHigh++
			}
		}
	}
	if share := float64(lowHigh) / float64(low); share < 0.45 || share > 0.55 {
		t.Errorf("of the certificates with Due < 0.5, %.2f have Window >= 0.5, want about half", share)
	}
}

// TestWindowConcurrentUse: the agent plans many certificates at once with
// one shared Window (run with -race).
func TestWindowConcurrentUse(t *testing.T) {
	ws := Windows{mustWindow(t, "0 2 * * 1-5", 3*time.Hour, time.UTC)}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				ws.Open(time.Date(2026, time.Month(1+(i+j)%12), 1+j%28, 0, 0, 0, 0, time.UTC))
			}
		})
	}
	wg.Wait()
}
