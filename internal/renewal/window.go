package renewal

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/cronexpr"
)

// Window is a recurring stretch of time in which routine renewals may
// happen: it opens at every match of a cron expression (in a time zone)
// and stays open for a fixed length.
type Window struct {
	length time.Duration
	loc    *time.Location
	// mu guards expr: cronexpr's Next caches the days of the month it is
	// looking at inside the Expression, so two passes asking at once race.
	mu   *sync.Mutex
	expr *cronexpr.Expression
}

// NewWindow makes a window from a 5-field cron expression (minute, hour,
// day of month, month, day of week), its length, and the time zone the
// expression is read in.
func NewWindow(cron string, length time.Duration, loc *time.Location) (Window, error) {
	expr, err := cronexpr.Parse(cron)
	if err != nil {
		return Window{}, fmt.Errorf("cron expression %q: %w", cron, err)
	}
	if length <= 0 {
		return Window{}, fmt.Errorf("window length %s must be positive", length)
	}
	if loc == nil {
		loc = time.UTC
	}
	return Window{length: length, loc: loc, mu: &sync.Mutex{}, expr: expr}, nil
}

// next is the first opening strictly after t, or zero when the
// expression never matches again.
func (w Window) next(t time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.expr.Next(t.In(w.loc))
}

// open returns the opening of w that contains t, or else the next one.
func (w Window) open(t time.Time) (start, end time.Time, ok bool) {
	// The first opening after t-length is either still open at t or the
	// next one to come.
	s := w.next(t.Add(-w.length))
	if s.IsZero() {
		return time.Time{}, time.Time{}, false
	}
	return s, s.Add(w.length), true
}

// Windows are the windows a certificate may be renewed in; any of them
// will do.
type Windows []Window

// maxMerge bounds how many overlapping openings Open joins into one: a
// window longer than its period is open all the time.
const maxMerge = 1000

// Open returns the stretch of time, made of one or more overlapping or
// touching openings, that contains t or else comes next. ok is false when
// no window ever opens again.
func (ws Windows) Open(t time.Time) (start, end time.Time, ok bool) {
	for _, w := range ws {
		s, e, found := w.open(t)
		if found && (!ok || s.Before(start)) {
			start, end, ok = s, e, true
		}
	}
	if !ok {
		return
	}
	// Openings that begin before this one ends extend it.
	for range maxMerge {
		grown := false
		for _, w := range ws {
			if s, e, found := w.open(end); found && !s.After(end) && e.After(end) {
				end, grown = e, true
			}
		}
		if !grown {
			return start, end, true
		}
	}
	return start, farFuture, true
}

// farFuture stands for a window that never closes.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// safetyShare is the share of the life that the policy leaves after its
// renewal point (1 - Fraction) that a window may use to delay a renewal:
// half. With the default renew_fraction 0.66 a renewal may wait for a
// window until 17% of the lifetime is left, never later.
const safetyShare = 0.5

// Units are the random numbers in [0,1) a certificate's timing depends
// on: one places the renewal point in the jitter window, the other places
// a renewal that waits inside the renewal window it waits for.
type Units struct {
	Due, Window float64
}

// UnitsFromSerial derives both units from the certificate's configured
// name and serial (UnitFromSerial), independently of each other.
func UnitsFromSerial(name, serial string) Units {
	return Units{Due: UnitFromSerial(name, serial), Window: UnitFromSerial(name+"\x00window", serial)}
}

// Plan is when a certificate is renewed, and why then.
type Plan struct {
	// At is when the renewal happens.
	At time.Time
	// Due is the renewal point the policy gives (At of the old rule:
	// fraction, jitter, renew_before), before any window.
	Due time.Time
	// Latest is the safe margin: a window may delay the renewal to this
	// point and no further. It is NotAfter minus the larger of
	// renew_before and half the life the policy leaves after Fraction.
	Latest time.Time
	// WindowStart and WindowEnd are the window At falls in; zero without
	// windows, or when none opens in time.
	WindowStart, WindowEnd time.Time
	// Held: the policy was held back to the minimum (see At).
	Held bool
	// Outside: windows are set, but none opens between the renewal point
	// and the safe margin, so the renewal happens at the renewal point,
	// outside any window.
	Outside bool
}

// Schedule is At with renewal windows: a routine renewal happens at the
// policy's renewal point if that falls in a window, else at a point of the
// next window drawn with u.Window, as long as that window opens before
// the safe margin (Plan.Latest); when none does, at the renewal point
// anyway (Plan.Outside). renew_before stays a hard floor: Latest is never
// after NotAfter-Before.
//
// now matters only once the renewal point has passed (a daemon that was
// stopped over its window): the search for a window then starts at now,
// so a missed window is not taken as a reason to renew outside one. For
// any now before the point returned, the result is the same.
func Schedule(t Times, p Policy, ws Windows, u Units, now time.Time) Plan {
	due, held := At(t, p, u.Due)
	life := t.NotAfter.Sub(t.NotBefore)
	margin := max(p.Before, time.Duration(float64(life)*(1-p.Fraction)*safetyShare))
	latest := t.NotAfter.Add(-margin)
	if latest.Before(due) {
		// A renewal point already past the margin (a held-back policy) is
		// never moved later.
		latest = due
	}
	return Place(due, latest, ws, u.Window, now, held)
}

// Place puts a routine change that is due at due, and must happen by
// latest, into the windows ws (see Schedule); uWindow in [0,1) picks the
// point inside the window. Without windows it is due.
func Place(due, latest time.Time, ws Windows, uWindow float64, now time.Time, held bool) Plan {
	plan := Plan{At: due, Due: due, Latest: latest, Held: held}
	if len(ws) == 0 {
		return plan
	}
	from := due
	if now.After(from) {
		from = now
	}
	start, end, ok := ws.Open(from)
	if !ok || (start.After(from) && !start.Before(latest)) {
		plan.Outside = true
		return plan
	}
	plan.WindowStart, plan.WindowEnd = start, end
	if !start.After(due) {
		// The renewal point itself falls in the window.
		return plan
	}
	stop := end
	if latest.Before(stop) {
		stop = latest
	}
	plan.At = start.Add(time.Duration(uWindow * float64(stop.Sub(start))))
	return plan
}
