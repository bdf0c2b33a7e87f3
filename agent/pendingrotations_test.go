package agent

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/statedir"
)

// TestAcceptedRotationSurvivesRestart: a rotation the daemon accepted
// and had not done when it stopped is done by the next daemon on the same
// state_dir, once, and then forgotten.
func TestAcceptedRotationSurvivesRestart(t *testing.T) {
	cfg := testConfig(t, "web", "api")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	for _, c := range cfg.Certificates {
		if _, err := a.ensure(t.Context(), c, false); err != nil {
			t.Fatal(err)
		}
	}
	// Accepted, then the daemon stops before the pass.
	if _, err := a.Rotate([]string{"web"}, 0); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(statedir.Dir(cfg.StateDir).PendingRotations())
	if err != nil || !strings.Contains(string(data), `"name": "web"`) || strings.Contains(string(data), `"api"`) {
		t.Fatalf("pending rotations on disk: %v\n%s", err, data)
	}

	b := New(Options{Config: cfg, Issuer: fv})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { b.Run(ctx, nil); close(done) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, "web to be rotated by the next daemon", func() bool { return fv.count("web.example.internal") == 2 })
	waitUntil(t, "the rotation to be forgotten", func() bool {
		data, _ := os.ReadFile(statedir.Dir(cfg.StateDir).PendingRotations())
		return strings.Contains(string(data), `"rotations": []`)
	})
	time.Sleep(100 * time.Millisecond)
	if n := fv.count("web.example.internal"); n != 2 {
		t.Errorf("web issued %d times, want 2 (one rotation)", n)
	}
	if n := fv.count("api.example.internal"); n != 1 {
		t.Errorf("api issued %d times, want 1", n)
	}
}

// TestRestoredRotationKeepsItsTime: a rotation taken up at start whose
// time (within its spread) has not come leaves the first pass an ordinary
// one, so the files are checked and READY=1 need not wait, and comes at
// its time.
func TestRestoredRotationKeepsItsTime(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := New(Options{Config: cfg, Issuer: fv, Now: clock, Rand: func() float64 { return 0.5 }})
	if _, err := a.ensure(t.Context(), cfg.Certificates[0], false); err != nil {
		t.Fatal(err)
	}
	sched, err := a.Rotate(nil, 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	at := sched[0].At
	if d := at.Sub(now); d != 10*time.Minute {
		t.Fatalf("rotation at +%v, want +10m", d)
	}

	b := New(Options{Config: cfg, Issuer: fv, Now: clock})
	b.loadRotations()
	if req := b.forced("web"); req != 0 {
		t.Error("the first pass after the restart would rotate at once, 10 minutes early")
	}
	b.pass(t.Context(), "web")
	b.end("web", now.Add(time.Hour), true)
	if n := fv.count("web.example.internal"); n != 1 {
		t.Errorf("web issued %d times before its rotation time", n)
	}
	if when, ok := b.queue.When("web"); !ok || !when.Equal(at) {
		t.Errorf("next pass at %v (%v), want the rotation's %v", when, ok, at)
	}
	mu.Lock()
	now = at
	mu.Unlock()
	if b.forced("web") == 0 {
		t.Error("at its time, the pass is not forced")
	}
}
