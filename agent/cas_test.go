package agent

import (
	"testing"
	"unsafe"
)

// TestCAsShared: certificates from the same CA share one parsed CA
// certificate and one copy of the chain text, fresh from Vault or read
// back from disk; another CA's certificates get their own.
func TestCAsShared(t *testing.T) {
	cfg := testConfig(t, "a", "b", "c")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	var held []*held
	for _, c := range cfg.Certificates[:2] {
		if _, err := a.ensure(t.Context(), c, false); err != nil {
			t.Fatal(err)
		}
		held = append(held, a.held[c.Name])
	}
	// A restart reads them back from disk.
	for _, c := range cfg.Certificates[:2] {
		h, err := loadHeld(cfg, c)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, h)
	}
	root := held[0].bundle.Roots[0]
	chain := unsafe.StringData(held[0].record.CAChain)
	for i, h := range held[1:] {
		if h.bundle.Roots[0] != root {
			t.Errorf("bundle %d holds its own copy of the CA", i+1)
		}
		if unsafe.StringData(h.record.CAChain) != chain {
			t.Errorf("record %d holds its own copy of the chain text", i+1)
		}
	}

	fv2 := newFakeVault(t)
	other := New(Options{Config: cfg, Issuer: fv2})
	c := cfg.Certificates[2]
	if _, err := other.ensure(t.Context(), c, false); err != nil {
		t.Fatal(err)
	}
	if got := other.held[c.Name].bundle.Roots[0]; got == root || !got.Equal(fv2.caCert) {
		t.Error("a certificate from another CA was given the first CA")
	}
}
