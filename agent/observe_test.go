package agent

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/vault"
)

type passLog struct {
	mu    sync.Mutex
	calls []observed
}

type observed struct {
	st     Status
	action Action
	err    error
}

var _ Observer = (*passLog)(nil)

func (p *passLog) ObservePass(st Status, res *Result, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := observed{st: st, err: err}
	if res != nil {
		o.action = res.Action
	}
	p.calls = append(p.calls, o)
}

// The observer hears every pass of run and once, with the status as
// recorded, so metrics can count renewals and failures.
func TestObserverHearsEveryPass(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	obs := &passLog{}
	now := time.Now()
	clock := func() time.Time { return now }
	a := New(Options{Config: cfg, Issuer: fv, Observer: obs, Now: clock})
	for range 2 {
		if _, ok := a.pass(t.Context(), "web"); !ok {
			t.Fatal("pass lost the certificate")
		}
	}
	// Fifty minutes on, the one-hour certificate is due and Vault fails.
	now = now.Add(50 * time.Minute)
	fv.failFor["web.example.internal"] = &vault.Error{Status: 503, Err: errors.New("vault answered 503")}
	a.Once(t.Context())

	if len(obs.calls) != 3 {
		t.Fatalf("observer heard %d passes, want 3: %+v", len(obs.calls), obs.calls)
	}
	if c := obs.calls[0]; c.action != Issued || c.err != nil || c.st.Name != "web" || c.st.NotAfter.IsZero() {
		t.Errorf("first pass: %+v, want issued with a NotAfter", c)
	}
	if c := obs.calls[1]; c.action != Kept || c.err != nil {
		t.Errorf("second pass: %+v, want kept", c)
	}
	if c := obs.calls[2]; c.err == nil || c.st.Failures != 1 || c.st.State != StateFailing {
		t.Errorf("failed once: %+v, want the error and one failure recorded", c)
	}
}

// CAChain returns the held chain, intermediates first, and nothing for a
// certificate that is not held.
func TestCAChain(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	if got := a.CAChain("web"); got != nil {
		t.Errorf("chain before any pass: %v", got)
	}
	if _, err := a.ensure(t.Context(), cfg.Certificates[0], false); err != nil {
		t.Fatal(err)
	}
	chain := a.CAChain("web")
	if len(chain) != 1 || !chain[0].Equal(fv.caCert) {
		t.Errorf("chain = %v, want the fake CA", chain)
	}
	if got := a.CAChain("nope"); got != nil {
		t.Errorf("chain of an unknown certificate: %v", got)
	}
}

// After a restart, a certificate on disk that is due while Vault fails is
// still what servers use: status (and so metrics and /readyz) must show its
// expiry and say it is failing, not claim nothing is there.
func TestStatusShowsDiskCertificateWhileRenewalFails(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	if _, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), cfg.Certificates[0], false); err != nil {
		t.Fatal(err)
	}
	onDisk := DiskStatus(cfg, time.Now())[0]

	// Two hours later the one-hour certificate is expired; forty minutes
	// later it is due (renewal at 56-66% of its life) but valid.
	later := time.Now().Add(40 * time.Minute)
	fv.failFor["web.example.internal"] = &vault.Error{Status: 0, Err: errors.New("connection refused")}
	a := New(Options{Config: cfg, Issuer: fv, Now: func() time.Time { return later }})
	if _, ok := a.pass(t.Context(), "web"); !ok {
		t.Fatal("pass lost the certificate")
	}
	st := a.Statuses()[0]
	if st.State != StateFailing || st.Failures != 1 {
		t.Errorf("state %q failures %d, want failing/1", st.State, st.Failures)
	}
	if !st.NotAfter.Equal(onDisk.NotAfter) || st.Serial != onDisk.Serial {
		t.Errorf("status shows not_after %v serial %q, want the certificate on disk (%v, %q)", st.NotAfter, st.Serial, onDisk.NotAfter, onDisk.Serial)
	}
	if len(a.CAChain("web")) == 0 {
		t.Error("no CA chain for the certificate on disk")
	}
}
