package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestUnplacedUntilObtained: a certificate Vault cannot sign is not in
// place however many passes fail, and is once it is written; the other
// one is in place from its first pass.
func TestUnplacedUntilObtained(t *testing.T) {
	cfg := testConfig(t, "web", "api")
	fv := newFakeVault(t)
	fv.failFor["web.example.internal"] = errors.New("vault is unreachable")
	a := New(Options{Config: cfg, Issuer: fv})
	if got := names(a.Unplaced(100).Listed); len(got) != 2 {
		t.Fatalf("before any pass Unplaced = %v, want both", got)
	}
	for range 3 {
		a.pass(t.Context(), "web")
	}
	a.pass(t.Context(), "api")
	if got := names(a.Unplaced(100).Listed); len(got) != 1 || got[0] != "web" {
		t.Fatalf("Unplaced = %v, want [web]", got)
	}
	if st := a.Unplaced(100).Listed[0]; st.LastError == "" {
		t.Errorf("no reason for web: %+v", st)
	}
	if _, err := os.Stat(cfg.Certificates[0].Files.Cert); err == nil {
		t.Fatal("web's certificate exists although Vault never signed it")
	}
	fv.mu.Lock()
	delete(fv.failFor, "web.example.internal")
	fv.mu.Unlock()
	a.pass(t.Context(), "web")
	if got := a.Unplaced(100).Listed; len(got) != 0 {
		t.Errorf("Unplaced = %v after web was written", names(got))
	}
}

// TestDueButUnreachableIsPlaced: a certificate past its renewal point but
// valid, whose renewal fails, is in place once its files are right: when
// Vault cannot be reached, the pass restores a deleted file from the
// certificate held, so servers can start while Vault is away.
func TestDueButUnreachableIsPlaced(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	now := time.Now()
	clock := func() time.Time { return now }
	a := New(Options{Config: cfg, Issuer: fv, Now: clock})
	if _, err := a.ensure(t.Context(), cfg.Certificates[0], false); err != nil {
		t.Fatal(err)
	}
	// A new process, 50 minutes into a one-hour certificate (due at about
	// 40), with Vault down and the fullchain file deleted.
	now = now.Add(50 * time.Minute)
	fv.failFor["web.example.internal"] = errors.New("vault is unreachable")
	full := cfg.Certificates[0].Files.Fullchain
	if err := os.Remove(full); err != nil {
		t.Fatal(err)
	}
	b := New(Options{Config: cfg, Issuer: fv, Now: clock})
	b.pass(context.Background(), "web")
	if st := b.Statuses()[0]; st.Failures != 1 {
		t.Fatalf("the renewal should have failed: %+v", st)
	}
	if _, err := os.Stat(full); err != nil {
		t.Errorf("the held certificate's files were not restored when Vault failed: %v", err)
	}
	if got := b.Unplaced(100).Listed; len(got) != 0 {
		t.Errorf("Unplaced = %v: a valid certificate on disk holds READY back", names(got))
	}
	// Expired: no longer in place, whatever was written.
	now = now.Add(time.Hour)
	if got := names(b.Unplaced(100).Listed); len(got) != 1 {
		t.Errorf("Unplaced = %v for an expired certificate", got)
	}
}

func names(sts []Status) []string {
	var out []string
	for _, st := range sts {
		out = append(out, st.Name)
	}
	return out
}

// TestUnplacedListsFailuresFirstWithinTheLimit: with more certificates
// out of place than the limit, those whose attempt failed are listed
// first (the ones an operator must act on), the rest are only counted,
// and the counts cover everything not in place.
func TestUnplacedListsFailuresFirstWithinTheLimit(t *testing.T) {
	cfg := testConfig(t, "a", "b", "c", "d", "e")
	fv := newFakeVault(t)
	fv.failFor["d.example.internal"] = errors.New("vault is unreachable")
	fv.failFor["e.example.internal"] = errors.New("vault is unreachable")
	a := New(Options{Config: cfg, Issuer: fv})
	a.pass(t.Context(), "a")
	a.pass(t.Context(), "d")
	a.pass(t.Context(), "e")
	r := a.Unplaced(2)
	if got := names(r.Listed); len(got) != 2 || got[0] != "d" || got[1] != "e" {
		t.Errorf("listed %v, want the failing [d e] first", got)
	}
	if r.Total != 4 || r.Failing != 2 {
		t.Errorf("Total %d, Failing %d; want 4 (b c d e) and 2", r.Total, r.Failing)
	}
	r = a.Unplaced(3)
	if got := names(r.Listed); len(got) != 3 || got[2] != "b" {
		t.Errorf("listed %v, want [d e b]", got)
	}
}

// BenchmarkReadinessCheck: what the daemon's check after every pass costs
// with 10,000 certificates, half of them in place: every status built and
// sorted (how it was asked first), a look at every certificate for a
// bounded list (how it was asked next), and Unplaced, kept up to date
// change by change (readiness).
//
//	go test -run '^$' -bench ReadinessCheck -benchmem ./agent/
func BenchmarkReadinessCheck(b *testing.B) {
	names := make([]string, 10_000)
	for i := range names {
		names[i] = fmt.Sprintf("c%05d", i)
	}
	cfg := testConfig(b, names...)
	a := New(Options{Config: cfg, Issuer: newFakeVault(b)})
	for _, n := range names[:5_000] {
		a.status[n] = &Status{Name: n, NotAfter: time.Now().Add(time.Hour)}
		a.placed[n] = true
	}
	a.mu.Lock()
	a.rebuildReadiness(time.Now())
	a.mu.Unlock()
	b.Run("all statuses", func(b *testing.B) {
		for b.Loop() {
			var n int
			for _, st := range a.Statuses() {
				if !a.placed[st.Name] {
					n++
				}
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			a.unplacedByScan(10)
		}
	})
	b.Run("unplaced", func(b *testing.B) {
		for b.Loop() {
			a.Unplaced(10)
		}
	})
}
