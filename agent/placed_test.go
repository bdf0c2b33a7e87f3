package agent

import (
	"context"
	"errors"
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
	if got := names(a.Unplaced()); len(got) != 2 {
		t.Fatalf("before any pass Unplaced = %v, want both", got)
	}
	for range 3 {
		a.pass(t.Context(), "web")
	}
	a.pass(t.Context(), "api")
	if got := names(a.Unplaced()); len(got) != 1 || got[0] != "web" {
		t.Fatalf("Unplaced = %v, want [web]", got)
	}
	if st := a.Unplaced()[0]; st.LastError == "" {
		t.Errorf("no reason for web: %+v", st)
	}
	if _, err := os.Stat(cfg.Certificates[0].Files.Cert); err == nil {
		t.Fatal("web's certificate exists although Vault never signed it")
	}
	fv.mu.Lock()
	delete(fv.failFor, "web.example.internal")
	fv.mu.Unlock()
	a.pass(t.Context(), "web")
	if got := a.Unplaced(); len(got) != 0 {
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
	if got := b.Unplaced(); len(got) != 0 {
		t.Errorf("Unplaced = %v: a valid certificate on disk holds READY back", names(got))
	}
	// Expired: no longer in place, whatever was written.
	now = now.Add(time.Hour)
	if got := names(b.Unplaced()); len(got) != 1 {
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
