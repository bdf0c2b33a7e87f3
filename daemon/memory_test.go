package daemon

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestReleaseAfterBursts: memory is handed back once after ready settles,
// once after each burst of at least min passes has settled, never in the
// middle of one, and not for a few passes.
func TestReleaseAfterBursts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		wake := make(chan struct{})
		var released atomic.Int32
		go releaseAfterBursts(ctx, wake, time.Second, 10, func() { released.Add(1) })
		passes := func(n int, gap time.Duration) {
			for range n {
				wake <- struct{}{}
				time.Sleep(gap)
			}
		}

		// What ready and the work after it allocated is released once
		// it settles.
		time.Sleep(2 * time.Second)
		if got := released.Load(); got != 1 {
			t.Fatalf("released %d times after ready settled, want once", got)
		}
		released.Store(0)

		passes(5, 100*time.Millisecond)
		time.Sleep(2 * time.Second)
		if got := released.Load(); got != 0 {
			t.Fatalf("released %d times after 5 passes, want none", got)
		}

		// 30 passes 0.5 s apart: the burst goes on past settle's length
		// in all, but never pauses that long.
		passes(30, 500*time.Millisecond)
		synctest.Wait()
		if got := released.Load(); got != 0 {
			t.Fatalf("released %d times during a burst, want none", got)
		}
		time.Sleep(2 * time.Second)
		if got := released.Load(); got != 1 {
			t.Fatalf("released %d times after a burst of 30, want once", got)
		}
		time.Sleep(time.Minute)
		if got := released.Load(); got != 1 {
			t.Fatalf("released %d times, want once: an idle daemon must not keep collecting", got)
		}
	})
}
