package schedule

import (
	"context"
	"strings"
	"testing"
	"time"
)

// fakeTimers stands in for Go's runtime timers. Those run on the monotonic
// clock, which on Linux (CLOCK_MONOTONIC) stands still while a VM is
// suspended: a one-hour timer set before a three-day suspend still has most
// of its hour to go after resume. The test controls when a timer fires and
// sees how long each asked to sleep.
type fakeTimers struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newFakeTimers() *fakeTimers {
	return &fakeTimers{asked: make(chan time.Duration, 16), fire: make(chan time.Time)}
}

func (f *fakeTimers) newTimer(d time.Duration) (<-chan time.Time, func() bool) {
	f.asked <- d
	return f.fire, func() bool { return true }
}

// TestSuspendPastRenewalPoint: a certificate due in two days, a VM that
// sleeps through it. The queue never trusts a timer for longer than
// MaxSleep, so the first wake after resume compares the wall clock with
// the due time (which the agent computed from the certificate's NotAfter)
// and hands the certificate out at once, however long the suspend was.
func TestSuspendPastRenewalPoint(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: base}
	timers := newFakeTimers()
	q := New(clock.Now)
	q.newTimer = timers.newTimer
	q.Set("web", base.Add(48*time.Hour))
	drainWake(q)

	got := make(chan string, 1)
	go func() {
		k, _ := q.Next(context.Background())
		got <- k
	}()
	if d := <-timers.asked; d != MaxSleep {
		t.Fatalf("slept for %v with the item two days away, want the %v cap", d, MaxSleep)
	}
	// Suspended for three days; on resume the capped timer fires (at most
	// MaxSleep of awake time later).
	clock.Set(base.Add(72 * time.Hour))
	timers.fire <- clock.Now()
	select {
	case k := <-got:
		if k != "web" {
			t.Fatalf("got %q", k)
		}
	case d := <-timers.asked:
		t.Fatalf("after resume the queue went back to sleep for %v instead of handing out the overdue certificate", d)
	case <-time.After(5 * time.Second):
		t.Fatal("overdue certificate not handed out after resume")
	}
}

// TestClockJumpBackwardWaits: the wall clock stepping back (NTP fixing a
// clock that ran fast) must not renew early; the item waits for its time.
func TestClockJumpBackwardWaits(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: base}
	timers := newFakeTimers()
	q := New(clock.Now)
	q.newTimer = timers.newTimer
	q.Set("web", base.Add(30*time.Second))
	drainWake(q)
	go q.Next(context.Background())
	if d := <-timers.asked; d != 30*time.Second {
		t.Fatalf("first sleep %v, want 30s", d)
	}
	clock.Set(base.Add(-time.Hour))
	timers.fire <- clock.Now()
	if d := <-timers.asked; d != MaxSleep {
		t.Fatalf("after the clock stepped back an hour the queue slept %v, want %v and no early renewal", d, MaxSleep)
	}
}

// TestSetDropsMonotonicReading: times made from time.Now() carry a
// monotonic reading, and Sub between two of them ignores wall-clock jumps.
// A retry scheduled as now+delay must be compared on the wall clock, or a
// suspend would not count towards its delay.
func TestSetDropsMonotonicReading(t *testing.T) {
	q := New(nil)
	at := time.Now().Add(time.Minute)
	if !strings.Contains(at.String(), "m=+") {
		t.Skip("this platform's time.Now has no monotonic reading")
	}
	q.Set("retry", at)
	got, _ := q.When("retry")
	if strings.Contains(got.String(), "m=+") {
		t.Errorf("scheduled time kept its monotonic reading: %s", got)
	}
	if !got.Equal(at) {
		t.Errorf("scheduled %v, want %v", got, at)
	}
}

// drainWake drops the wake-up Set leaves for a sleeping Next, so the test
// sees only the timers it fires.
func drainWake(q *Queue) {
	select {
	case <-q.wake:
	default:
	}
}
