package agent

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRotateRenewsValidCertificate: the running agent renews a valid
// certificate on request, once, and leaves the others alone.
func TestRotateRenewsValidCertificate(t *testing.T) {
	cfg := testConfig(t, "web", "api")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	passed, ready := whenPlaced(a)
	go func() {
		a.Run(ctx, passed)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	<-ready
	first := readCertSerial(t, a, "web")

	sched, err := a.Rotate([]string{"web"}, 0)
	if err != nil || len(sched) != 1 || sched[0].Name != "web" {
		t.Fatalf("Rotate = %v, %v", sched, err)
	}
	waitUntil(t, "web to be re-issued", func() bool { return fv.count("web.example.internal") == 2 })
	waitUntil(t, "the new serial to be held", func() bool { return readCertSerial(t, a, "web") != first })
	time.Sleep(100 * time.Millisecond)
	if n := fv.count("web.example.internal"); n != 2 {
		t.Errorf("web was issued %d times, want 2 (one rotation)", n)
	}
	if n := fv.count("api.example.internal"); n != 1 {
		t.Errorf("api was issued %d times, want 1 (not asked to rotate)", n)
	}
	if st := a.Statuses()[1]; st.Name != "web" || st.LastResult != string(Issued) {
		t.Errorf("status = %+v", st)
	}
}

// whenPlaced is a passed hook for Run and a channel closed once every
// certificate is in place.
func whenPlaced(a *Agent) (func(string), <-chan struct{}) {
	ready := make(chan struct{})
	var once sync.Once
	return func(string) {
		if len(a.Unplaced(100).Listed) == 0 {
			once.Do(func() { close(ready) })
		}
	}, ready
}

func readCertSerial(t *testing.T, a *Agent, name string) string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if h := a.held[name]; h != nil {
		return h.record.Serial
	}
	return ""
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRotateUnknownName(t *testing.T) {
	a := New(Options{Config: testConfig(t, "web", "api"), Issuer: newFakeVault(t)})
	_, err := a.Rotate([]string{"web", "wbe"}, 0)
	if err == nil || err.Error() != "no certificate named wbe (configured: web, api)" {
		t.Errorf("err = %v", err)
	}
	if a.queue.Len() != 0 {
		t.Error("a failed request scheduled something")
	}
}

// TestRotateSpread: with a spread, start times are drawn uniformly over
// the window: every quarter of it gets its share.
func TestRotateSpread(t *testing.T) {
	var names []string
	for i := range 200 {
		names = append(names, "c"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	now := time.Now()
	r := rand.New(rand.NewPCG(1, 2))
	// Two-day certificates renew a day from now: the whole window is
	// before their renewal points, so nothing clamps it.
	fv := newFakeVault(t)
	fv.life = 48 * time.Hour
	a := New(Options{Config: testConfig(t, names...), Issuer: fv, Now: func() time.Time { return now }, Rand: r.Float64})
	a.Once(t.Context())
	sched, err := a.Rotate(nil, time.Hour)
	if err != nil || len(sched) != 200 {
		t.Fatalf("Rotate(all) = %d, %v", len(sched), err)
	}
	var quarters [4]int
	for _, s := range sched {
		d := s.At.Sub(now)
		if d < 0 || d >= time.Hour {
			t.Fatalf("%s scheduled %v from now, outside the 1h spread", s.Name, d)
		}
		quarters[d/(15*time.Minute)]++
		if at, ok := a.queue.When(s.Name); !ok || !at.Equal(s.At) {
			t.Errorf("%s is not queued at its scheduled time", s.Name)
		}
	}
	for i, n := range quarters {
		if n < 30 || n > 70 {
			t.Errorf("quarter %d of the window got %d of 200 starts; want about 50 (%v)", i, n, quarters)
		}
	}
}

// TestRotateDuringPass: a rotation asked for while a pass runs is neither
// run beside it nor overwritten by the schedule that pass sets.
func TestRotateDuringPass(t *testing.T) {
	now := time.Now()
	a := New(Options{Config: testConfig(t, "web"), Issuer: newFakeVault(t), Now: func() time.Time { return now }, Rand: func() float64 { return 0 }})
	if !a.begin("web") {
		t.Fatal("begin refused an idle certificate")
	}
	if _, err := a.Rotate([]string{"web"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, queued := a.queue.When("web"); queued {
		t.Error("rotation queued a second pass beside the running one")
	}
	if a.begin("web") {
		t.Error("a second pass could begin while one is in flight")
	}
	a.end("web", now.Add(48*time.Hour), true)
	if at, ok := a.queue.When("web"); !ok || at.After(now) {
		t.Errorf("after the pass, web is due at %v; want now (the rotation)", at)
	}
	req := a.forced("web")
	if req == 0 {
		t.Fatal("the rotation request was lost")
	}
	// A second request while the forced pass runs survives that pass.
	a.Rotate([]string{"web"}, 0)
	a.rotated("web", req)
	if a.forced("web") == 0 {
		t.Error("a pass for an earlier request cleared a newer one")
	}
}

// TestRotateOnce: without a running agent, a valid certificate is renewed
// at once, and only the named one.
func TestRotateOnce(t *testing.T) {
	cfg := testConfig(t, "web", "api")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	a.Once(t.Context())
	out, err := New(Options{Config: cfg, Issuer: fv}).RotateOnce(t.Context(), []string{"api"}, 0)
	if err != nil || len(out) != 1 || out[0].Err != nil || out[0].Result.Action != Issued || !strings.Contains(out[0].Result.Reason, "rotation requested") {
		t.Fatalf("RotateOnce = %+v, %v", out, err)
	}
	if fv.count("api.example.internal") != 2 || fv.count("web.example.internal") != 1 {
		t.Errorf("issued web %d, api %d times; want 1 and 2", fv.count("web.example.internal"), fv.count("api.example.internal"))
	}
}

// TestRotateSpreadNeverDelaysRenewal: a spread may only bring a pass
// forward. Three 2-minute certificates rotated through the running agent
// with a one-hour spread (and a draw near its end) must all still start no
// later than their own renewal points, and well before expiry; before this
// was fixed they were scheduled an hour out and expired.
func TestRotateSpreadNeverDelaysRenewal(t *testing.T) {
	cfg := testConfig(t, "a", "b", "c")
	fv := newFakeVault(t)
	fv.life = 2 * time.Minute
	var draw atomic.Value
	draw.Store(0.5)
	a := New(Options{Config: cfg, Issuer: fv, Rand: func() float64 { return draw.Load().(float64) }})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	passed, ready := whenPlaced(a)
	go func() {
		a.Run(ctx, passed)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	<-ready
	draw.Store(0.99)
	sched, err := a.Rotate(nil, time.Hour)
	if err != nil || len(sched) != 3 {
		t.Fatalf("Rotate = %v, %v", sched, err)
	}
	for _, s := range sched {
		var st Status
		for _, x := range a.Statuses() {
			if x.Name == s.Name {
				st = x
			}
		}
		if st.RenewAt.IsZero() {
			t.Fatalf("%s has no renewal point: %+v", s.Name, st)
		}
		if s.At.After(st.RenewAt) {
			t.Errorf("%s: rotation at %s, after its own renewal point %s (expiry %s)", s.Name, s.At.Format(time.TimeOnly), st.RenewAt.Format(time.TimeOnly), st.NotAfter.Format(time.TimeOnly))
		}
		margin := time.Duration(float64(st.NotAfter.Sub(st.NotBefore)) * rotateMargin)
		if s.At.After(st.NotAfter.Add(-margin)) {
			t.Errorf("%s: rotation at %s, within %s of expiry %s", s.Name, s.At.Format(time.TimeOnly), margin, st.NotAfter.Format(time.TimeOnly))
		}
	}
}

// TestRotateOnceSpreadNeverDelaysRenewal: without a daemon, the random
// wait is clamped the same way: a certificate whose renewal point is a
// moment away is rotated then, not after most of an hour.
func TestRotateOnceSpreadNeverDelaysRenewal(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	fv.life = 3 * time.Second
	a := New(Options{Config: cfg, Issuer: fv})
	if out := a.Once(t.Context()); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := New(Options{Config: cfg, Issuer: fv, Rand: func() float64 { return 0.99 }}).RotateOnce(ctx, nil, time.Hour)
	if err != nil || len(out) != 1 || out[0].Err != nil {
		t.Fatalf("RotateOnce with -spread 1h on a certificate due in seconds = %+v, %v", out, err)
	}
	if fv.count("web.example.internal") != 2 {
		t.Errorf("web issued %d times, want 2", fv.count("web.example.internal"))
	}
}
