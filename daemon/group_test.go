package daemon

import (
	"context"
	"slices"
	"testing"
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

// TestAwaitReady: ready only once both the certificates and the trust
// bundles are in place; never when ctx ends first.
func TestAwaitReady(t *testing.T) {
	certs, bundles := make(chan struct{}), make(chan struct{})
	close(certs)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if awaitReady(ctx, certs, bundles) {
		t.Error("ready without the trust bundles")
	}
	close(bundles)
	if !awaitReady(t.Context(), certs, bundles) {
		t.Error("not ready with both in place")
	}
}
