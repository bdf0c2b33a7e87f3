package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/trust"
)

// TestGroupStopsInReverse: parts stop last started first, each after its
// run returned, and a second stop does nothing.
func TestGroupStopsInReverse(t *testing.T) {
	var g group
	var order []string
	for _, name := range []string{"telemetry", "live", "services"} {
		g.start(t.Context(), func(ctx context.Context) { <-ctx.Done() }, func() { order = append(order, name) })
	}
	g.add(func() { order = append(order, "pprof") })
	g.stop()
	g.stop()
	if want := []string{"pprof", "services", "live", "telemetry"}; !slices.Equal(order, want) {
		t.Errorf("stopped %v, want %v", order, want)
	}
}

// TestAwaitReady: READY=1 waits while anything is not in place, however
// many passes end, says what it waits for once per change, and is never
// sent when ctx ends first.
func TestAwaitReady(t *testing.T) {
	var mu sync.Mutex
	missing := []string{"certificate web: vault is unreachable"}
	unplaced := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(missing)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	// A start's first attempts under way are not news.
	if awaitReady(canceled(t), make(chan struct{}), func() []string { return []string{"certificate web" + firstAttempt} }, log) || logs.Len() > 0 {
		t.Errorf("ready, or logged at info, with only first attempts under way:\n%s", logs.String())
	}
	wake := make(chan struct{})
	done := make(chan bool)
	go func() { done <- awaitReady(t.Context(), wake, unplaced, log) }()
	for range 3 {
		wake <- struct{}{} // a pass ended, web still failing
	}
	select {
	case <-done:
		t.Fatal("ready while web is not in place")
	default:
	}
	mu.Lock()
	missing = nil
	mu.Unlock()
	// awaitReady may already have looked again after the last pass and
	// seen everything in place; otherwise the next pass tells it.
	var ready bool
	select {
	case wake <- struct{}{}:
		ready = <-done
	case ready = <-done:
	}
	if !ready {
		t.Error("not ready with everything in place")
	}
	if n := strings.Count(logs.String(), "not ready yet"); n != 1 {
		t.Errorf("%d log lines for one unchanged reason, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "certificate web: vault is unreachable") {
		t.Errorf("the log does not say what READY waits for:\n%s", logs.String())
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if awaitReady(ctx, make(chan struct{}), func() []string { return []string{"x"} }, log) {
		t.Error("ready although ctx ended")
	}
}

func canceled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

// TestUnplacedLines: past the listed certificates the rest are counted,
// and the count says when some of them fail, so a start with thousands
// of certificates still logs at info when one the list leaves out fails.
func TestUnplacedLines(t *testing.T) {
	listed := []agent.Status{{Name: "web", LastResult: "failed", LastError: "vault is unreachable"}, {Name: "api", LastResult: "pending"}}
	for _, tc := range []struct {
		report agent.UnplacedReport
		want   []string
	}{
		{agent.UnplacedReport{Listed: listed, Total: 2, Failing: 1},
			[]string{"certificate web: vault is unreachable", "certificate api" + firstAttempt}},
		{agent.UnplacedReport{Listed: listed, Total: 9, Failing: 1},
			[]string{"certificate web: vault is unreachable", "certificate api" + firstAttempt, "7 more certificates" + firstAttempt}},
		{agent.UnplacedReport{Listed: listed[:1], Total: 9, Failing: 4},
			[]string{"certificate web: vault is unreachable", "8 more certificates: 3 of them failing"}},
	} {
		got := unplacedLines(tc.report, []trust.Status{{Name: "clients", State: trust.StateMissing}})
		want := append(tc.want, "trust_bundle clients"+firstAttempt)
		if !slices.Equal(got, want) {
			t.Errorf("unplacedLines(%+v) =\n%q\nwant\n%q", tc.report, got, want)
		}
	}
}
