package schedule

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a wall clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func TestNextReturnsInTimeOrder(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: base.Add(time.Hour)}
	q := New(clock.Now)
	q.Set("c", base.Add(3*time.Minute))
	q.Set("a", base.Add(1*time.Minute))
	q.Set("b", base.Add(2*time.Minute))
	q.Set("a", base.Add(4*time.Minute)) // rescheduling moves it, not duplicates it

	ctx := context.Background()
	var got []string
	for range 3 {
		k, err := q.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, k)
	}
	if want := []string{"b", "c", "a"}; !equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
	if q.Len() != 0 {
		t.Errorf("%d items left", q.Len())
	}
}

func TestRemove(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	q := New(clock.Now)
	q.Set("a", time.Unix(10, 0))
	q.Set("b", time.Unix(20, 0))
	q.Remove("a")
	k, _ := q.Next(context.Background())
	if k != "b" {
		t.Errorf("got %q after removing a", k)
	}
	if _, ok := q.When("a"); ok {
		t.Error("removed key still scheduled")
	}
}

func TestNextWakesForEarlierItem(t *testing.T) {
	q := New(nil)
	q.Set("later", time.Now().Add(time.Hour))
	got := make(chan string)
	go func() {
		k, _ := q.Next(context.Background())
		got <- k
	}()
	time.Sleep(20 * time.Millisecond)
	q.Set("now", time.Now())
	select {
	case k := <-got:
		if k != "now" {
			t.Errorf("got %q", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not wake for an item due now")
	}
}

// TestWallClockJump: when the wall clock jumps past a due time (a VM
// resumed from suspend), the item is returned on the next check, not after
// the monotonic timer it was sleeping on.
func TestWallClockJump(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: base}
	q := New(clock.Now)
	q.Set("cert", base.Add(48*time.Hour))
	got := make(chan string)
	go func() {
		k, _ := q.Next(context.Background())
		got <- k
	}()
	time.Sleep(20 * time.Millisecond)
	clock.Set(base.Add(72 * time.Hour))
	q.poke() // stands in for the MaxSleep timer firing
	select {
	case k := <-got:
		if k != "cert" {
			t.Errorf("got %q", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("item past due after a clock jump was not returned")
	}
}

func TestNextHonoursContext(t *testing.T) {
	q := New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Next(ctx); err == nil {
		t.Error("Next on a cancelled context returned no error")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
