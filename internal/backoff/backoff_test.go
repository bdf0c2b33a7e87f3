package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Base: 5 * time.Second, Max: 5 * time.Minute, Min: time.Second}
	tests := []struct {
		attempt int
		u       float64
		want    time.Duration
	}{
		{0, 0.999999, 5 * time.Second},
		{1, 0.999999, 10 * time.Second},
		{3, 0.5, 20 * time.Second},
		{10, 0.999999, 5 * time.Minute}, // capped
		{1000, 0.5, 150 * time.Second},  // no overflow for huge attempts
		{0, 0, time.Second},             // never a tight loop
	}
	for _, tt := range tests {
		if got := b.Delay(tt.attempt, tt.u); got.Round(time.Millisecond) != tt.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tt.attempt, tt.u, got, tt.want)
		}
	}
}

func TestBackoffIsFullJitter(t *testing.T) {
	// Retries from many hosts after one outage must not arrive together: the
	// delays for one attempt spread over the whole [Min, ceiling) range.
	b := Default
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Hour, time.Duration(0)
	for range 1000 {
		d := b.Delay(4, r.Float64())
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo > 5*time.Second || hi < 70*time.Second || hi > 80*time.Second {
		t.Errorf("delays for attempt 4 span [%v, %v], want about [1s, 80s)", lo, hi)
	}
}

// TestRetry: a failing try is made exactly Attempts times, each wait is
// the backoff's (raised to AtLeast), and success stops the loop at once.
func TestRetry(t *testing.T) {
	r := Retry{Attempts: 3, Backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond, Min: time.Millisecond}}
	boom := errors.New("boom")
	var waits []time.Duration
	tries := 0
	err := r.Do(t.Context(), Hooks{
		Rand:     func() float64 { return 0 },
		AtLeast:  func(error) time.Duration { return 2 * time.Millisecond },
		Retrying: func(_ error, d time.Duration) { waits = append(waits, d) },
	}, func() error { tries++; return boom })
	if !errors.Is(err, boom) || tries != 3 {
		t.Errorf("Do = %v after %d tries, want boom after 3", err, tries)
	}
	if len(waits) != 2 || waits[0] != 2*time.Millisecond || waits[1] != 2*time.Millisecond {
		t.Errorf("waits = %v, want two of 2ms (AtLeast over the 1ms backoff)", waits)
	}

	tries = 0
	err = r.Do(t.Context(), Hooks{}, func() error {
		tries++
		if tries < 2 {
			return boom
		}
		return nil
	})
	if err != nil || tries != 2 {
		t.Errorf("Do = %v after %d tries, want success after 2", err, tries)
	}
}

// TestRetryStopsWithContext: once ctx has ended, a failed try is the last.
func TestRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	r := Retry{Attempts: 5, Backoff: Backoff{Base: time.Hour, Max: time.Hour, Min: time.Hour}}
	tries := 0
	err := r.Do(ctx, Hooks{Retrying: func(error, time.Duration) { cancel() }}, func() error {
		tries++
		return errors.New("boom")
	})
	if err == nil || tries != 2 {
		t.Errorf("Do = %v after %d tries, want an error after 2 (the wait cut short, then one last try)", err, tries)
	}
}

// TestPollStaysInTheLastQuarter: a periodic check waits between 3/4 of
// its period and the period, spread over all of it, never longer.
func TestPollStaysInTheLastQuarter(t *testing.T) {
	for _, c := range []struct {
		u    float64
		want time.Duration
	}{{0, time.Minute}, {0.5, 52500 * time.Millisecond}, {0.999999, 45*time.Second + 15*time.Microsecond}} {
		if got := Poll(time.Minute, c.u); got.Round(time.Millisecond) != c.want.Round(time.Millisecond) {
			t.Errorf("Poll(1m, %v) = %v, want %v", c.u, got, c.want)
		}
	}
}
