package agent

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/sinks"
)

// failingCheck is the services as the agent sees them when every check
// fails: each change is rolled back at once through the set's owner, as
// services.Manager does after a failed check.
type failingCheck struct {
	mu      sync.Mutex
	changes []*sinks.Change
	t       *testing.T
}

func (f *failingCheck) Changed(_ config.Certificate, c *sinks.Change, _ notice.Notice) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := (sinks.Sets{}).Rollback(c); err != nil {
		f.t.Errorf("rollback: %v", err)
	}
	f.changes = append(f.changes, c)
}

// Reload: revoke_superseded is off here, so the agent never asks.
func (f *failingCheck) Reload(config.Certificate, *sinks.Change) {
	f.t.Error("Reload asked with revoke_superseded off")
}

// TestRolledBackFilesAreLeftToTheServices: when a service's check fails on
// a certificate's very first issue, the rollback removes its files. The
// agent must not put them back (the output watcher reports the deletions
// at once, and every such restore went unchecked and skipped the services'
// backoff): a pass leaves them absent, asks Vault nothing, and looks again
// within a minute. Once the services' retry writes them again, the agent
// keeps them. A config change is still written: it may be the fix.
func TestRolledBackFilesAreLeftToTheServices(t *testing.T) {
	cfg := testConfig(t, "web")
	c := cfg.Certificates[0]
	fv := newFakeVault(t)
	services := &failingCheck{t: t}
	now := time.Now()
	a := New(Options{Config: cfg, Issuer: fv, Notifier: services, Now: func() time.Time { return now }})
	next, _ := a.pass(t.Context(), "web")
	if len(services.changes) != 1 {
		t.Fatalf("the services heard of %d changes, want 1", len(services.changes))
	}
	for _, p := range []string{c.Files.Key, c.Files.Cert} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s survived the rollback", p)
		}
	}
	if d := next.Sub(now); d > time.Hour {
		t.Fatalf("next pass in %v after the first issue", d)
	}

	// The output watcher's report of the deletions, and the pass it asks for.
	if names := a.OutputsChanged([]string{c.Files.Key, c.Files.Cert}); len(names) > 0 {
		next, _ = a.pass(t.Context(), "web")
	}
	next, _ = a.pass(t.Context(), "web")
	for _, p := range []string{c.Files.Key, c.Files.Cert} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was restored behind the services' back", p)
		}
	}
	if len(services.changes) != 1 || fv.count("web.example.internal") != 1 {
		t.Errorf("after the rollback: %d changes, %d issuances; want 1 and 1", len(services.changes), fv.count("web.example.internal"))
	}
	if d := next.Sub(now); d <= 0 || d > rolledBackRecheck {
		t.Errorf("next look in %v, want within %v", d, rolledBackRecheck)
	}

	// The services' retry.
	if err := (sinks.Sets{}).Reapply(services.changes[0]); err != nil {
		t.Fatal(err)
	}
	want := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain)
	res, err := a.ensure(t.Context(), c, false)
	if err != nil || res.Action != Kept || len(res.Written) != 0 {
		t.Fatalf("after the retry wrote them: %+v, %v; want kept as they are", res, err)
	}
	if readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain) != want {
		t.Error("the files the retry wrote changed")
	}

	// Rolled back again; then the config changes this certificate.
	if err := (sinks.Sets{}).Rollback(services.changes[0]); err != nil {
		t.Fatal(err)
	}
	changed := *cfg
	changed.Certificates = []config.Certificate{c}
	changed.Certificates[0].CertMode = 0o640
	a.Reconfigure(&changed, nil)
	res, err = a.ensure(t.Context(), changed.Certificates[0], false)
	if err != nil || res.Action != Restored || len(services.changes) != 2 {
		t.Errorf("a config change while rolled back: %+v, %v, %d changes; want it written and told to the services", res, err, len(services.changes))
	}
}
