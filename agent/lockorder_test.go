package agent

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
)

// TestIssuerWatchLockOrder: a pass holds a.mu while it reads the issuer
// watch (record and ensure call caStepFor); the issuer loop's first
// listing loads the issuers' first-seen times. Run against each other
// they must not wait on each other: a.mu is taken before iw.mu, never
// after. (loadSeen read the config under iw.mu, and a restart hung
// forever, seen twice in 14 bench rounds.)
func TestIssuerWatchLockOrder(t *testing.T) {
	a := &Agent{cfg: &config.Config{StateDir: t.TempDir()}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan struct{})
	a.mu.Lock() // the pass, in record
	go func() {
		defer close(done)
		a.loadSeen() // the issuer loop's first listing
	}()
	// Give loadSeen the time to take iw.mu, as it did in the hang.
	time.Sleep(50 * time.Millisecond)
	got := make(chan struct{})
	go func() {
		a.iw.mount("pki_int") // caStepFor, still under a.mu
		close(got)
	}()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("a pass holding the agent's lock waits for the issuer watch forever while the issuer loop loads its state")
	}
	a.mu.Unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("loadSeen never finished")
	}
}
