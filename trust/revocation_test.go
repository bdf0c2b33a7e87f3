package trust

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/test/cktest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestUnchangedCRLCostsA304: the second refresh asks for each CRL only if
// it changed (Vault answers 304, no body) and does not list the issuers
// again within issuersTTL; after it, they are listed again.
func TestUnchangedCRLCostsA304(t *testing.T) {
	f, _, inter := twoTier(t)
	cfg, _ := bundleConfig(t, "pki_int", "pki")
	clk := &clock{t: time.Now()}
	k := New(Options{Config: cfg, Source: f, Now: clk.now})
	for i := range 3 {
		if out := k.Once(t.Context()); out[0].Err != nil {
			t.Fatalf("refresh %d: %v", i, out[0].Err)
		}
		clk.add(time.Minute)
	}
	if got := f.count("issuers pki_int"); got != 1 {
		t.Errorf("issuers of pki_int listed %d times in 3 minutes, want 1", got)
	}
	if got := f.count("304 pki_int"); got != 2 {
		t.Errorf("%d of 3 CRL fetches of pki_int answered 304, want the last 2", got)
	}
	// A revocation changes the CRL: the conditional fetch gets it whole.
	inter.revoke(99)
	if out := k.Once(t.Context()); out[0].Err != nil || len(out[0].Result.Written) != 1 {
		t.Fatalf("refresh after a revocation: %+v", out[0])
	}
	clk.add(issuersTTL)
	k.Once(t.Context())
	if got := f.count("issuers pki_int"); got != 2 {
		t.Errorf("issuers of pki_int listed %d times after %v, want 2", got, issuersTTL)
	}
}

// TestCRLNearExpiryIsRebuilt: with auto_rebuild off Vault never rebuilds
// a CRL by itself. Past this host's point in its life, certkeeper asks
// Vault to (crl/rotate) and writes the new one; before that point it does
// not; when Vault refuses, it warns and keeps the current one.
func TestCRLNearExpiryIsRebuilt(t *testing.T) {
	f, _, inter := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	logs := &cktest.SyncBuffer{}
	k := New(Options{Config: cfg, Source: f, Log: slog.New(slog.NewTextHandler(logs, nil)), Rand: func() float64 { return 0.5 }})
	if k.rotateAt < 0.849 || k.rotateAt > 0.851 {
		t.Fatalf("rotateAt = %v, want 0.85 for a draw of 0.5", k.rotateAt)
	}
	inter.age, inter.crlLife = 50*time.Hour, 22*time.Hour // 70% of 72h
	if out := k.Once(t.Context()); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	if f.count("rotate pki_int") != 0 {
		t.Fatal("asked vault to rebuild a CRL at 70% of its life")
	}

	inter.age, inter.crlLife, inter.cached = 63*time.Hour, 9*time.Hour, nil // 88%
	if out := k.Once(t.Context()); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	if got := f.count("rotate pki_int"); got != 1 {
		t.Fatalf("rotate asked %d times, want 1", got)
	}
	if f.count("rotate pki") != 0 {
		t.Error("the root's CRL, young, was rebuilt too")
	}
	crl := parseCRLs(readFile(t, tb.CRLFile))[0]
	if time.Since(crl.ThisUpdate) > 5*time.Minute {
		t.Errorf("the written CRL is from %s, not the rebuilt one", crl.ThisUpdate)
	}
	if !strings.Contains(logs.String(), "asked vault to rebuild a CRL near its expiry, and got the new one") {
		t.Errorf("no log of the rebuild:\n%s", logs)
	}

	f.rotateErr = errors.New("permission denied")
	inter.age, inter.crlLife, inter.cached = 65*time.Hour, 7*time.Hour, nil
	if out := k.Once(t.Context()); out[0].Err != nil {
		t.Fatalf("a refused rebuild failed the refresh: %v", out[0].Err)
	}
	if !strings.Contains(logs.String(), "asking vault to rebuild it failed") || !strings.Contains(logs.String(), "pki_int/crl/rotate") {
		t.Errorf("no warning naming the path to grant:\n%s", logs)
	}
}

// TestSameRevocationsDoNotReload: a Vault that rebuilds its CRLs often
// (auto_rebuild with a short grace) serves new dates with the same
// revocations; servers are not reloaded for that until the CRL on disk is
// two thirds through its life.
func TestSameRevocationsDoNotReload(t *testing.T) {
	f, _, inter := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	n := &notified{}
	clk := &clock{t: time.Now()}
	k := New(Options{Config: cfg, Source: f, Notifier: n, Now: clk.now})
	k.Once(t.Context())
	before := string(readFile(t, tb.CRLFile))
	inter.number += 5
	inter.rebuild()
	clk.add(time.Hour)
	if out := k.Once(t.Context()); out[0].Err != nil || len(out[0].Result.Written) != 0 || n.count() != 1 {
		t.Fatalf("a rebuilt CRL with the same revocations was written: %+v, %d notifications", out[0], n.count())
	}
	if string(readFile(t, tb.CRLFile)) != before {
		t.Fatal("CRL file changed")
	}
	clk.add(48 * time.Hour)
	if out := k.Once(t.Context()); out[0].Err != nil || len(out[0].Result.Written) != 1 || n.count() != 2 {
		t.Errorf("past two thirds of its life the CRL on disk was kept: %+v, %d notifications", out[0], n.count())
	}
}

// heldIssuers stands in for the agent.
type heldIssuers struct {
	mu      sync.Mutex
	held    []HeldIssuer
	checked []string // subject CN of each CRL's CA
}

func (h *heldIssuers) HeldIssuers() []HeldIssuer {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.held)
}

func (h *heldIssuers) CheckCRL(ca *x509.Certificate, crl *x509.RevocationList) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checked = append(h.checked, ca.Subject.CommonName)
}

func (h *heldIssuers) count(cn string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.checked {
		if c == cn {
			n++
		}
	}
	return n
}

var _ Revocations = (*heldIssuers)(nil)

// TestWatchFetchesIssuersNoBundleCovers: the CRL of the issuer of a
// certificate held is fetched on the certificate's own schedule when no
// bundle fetches it, and handed on; a CA a bundle covers is handed on at
// the bundle's refresh and not fetched twice.
func TestWatchFetchesIssuersNoBundleCovers(t *testing.T) {
	f, root, inter := twoTier(t)
	servers := newCA(t, "test server intermediate", root, time.Now().Add(time.Hour*24*365))
	f.mounts["pki_servers"] = []fakeIssuer{{ref: "srv", ca: servers, hasKey: true}, {ref: "root-in-srv", ca: root}}
	cfg, _ := bundleConfig(t, "pki_int", "pki")
	cfg.TrustBundles[0].CRLRefresh = time.Hour
	cfg.Certificates = []config.Certificate{{Name: "web", RevocationCheck: 50 * time.Millisecond}}
	h := &heldIssuers{held: []HeldIssuer{
		{Mount: "pki_servers", CA: servers.cert, Every: 50 * time.Millisecond},
		{Mount: "pki_int", CA: inter.cert, Every: 50 * time.Millisecond},
	}}
	k := New(Options{Config: cfg, Source: f, Revocations: h})
	go k.Run(t.Context(), nil)
	cktest.WaitFor(t, "the server CA's CRL to be checked three times", 10*time.Second, func() bool { return h.count(servers.cert.Subject.CommonName) >= 3 })
	if got := h.count(inter.cert.Subject.CommonName); got != 1 {
		t.Errorf("the bundle's intermediate was handed on %d times, want 1 (its hourly refresh)", got)
	}
	if got := f.count("crl pki_int"); got != 1 {
		t.Errorf("%d fetches of pki_int's CRL, want 1: the bundle covers it", got)
	}
	if got := f.count("issuers pki_servers"); got != 1 {
		t.Errorf("issuers of pki_servers listed %d times, want 1 (cached)", got)
	}
}

// TestRefusedHoldsTheBundle: after servers refused valid clients with a
// bundle's new files, it is not refreshed before the services' retry
// time, and its status says why.
func TestRefusedHoldsTheBundle(t *testing.T) {
	f, _, _ := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	n := &notified{}
	k := New(Options{Config: cfg, Source: f, Notifier: n})
	ready := make(chan struct{})
	go k.Run(t.Context(), func() { close(ready) })
	<-ready
	retry := time.Now().Add(3 * time.Hour)
	k.Refused(tb.Name, retry, errors.New("nginx answered 400"))
	if at, ok := k.queue.When(tb.Name); !ok || !at.Equal(retry.Round(0)) {
		t.Errorf("bundle due at %v, want %v", at, retry)
	}
	st := k.Statuses()[0]
	if st.State != StateFailing || !strings.Contains(st.LastError, "refused valid clients") || !strings.Contains(st.LastError, "nginx answered 400") || !st.NextRefresh.Equal(retry) {
		t.Errorf("status = %+v", st)
	}
	if saved := DiskStatus(cfg, time.Now())[0]; !strings.Contains(saved.LastError, "refused valid clients") {
		t.Errorf("saved status = %+v", saved)
	}
	// The next refresh finds what is on disk (the rolled-back files):
	// the services hear that it settled, once.
	k.Once(t.Context())
	k.Once(t.Context())
	n.mu.Lock()
	defer n.mu.Unlock()
	if !slices.Equal(n.sources, []string{"trust_bundle clients->nginx", "settled clients"}) {
		t.Errorf("notifications = %v", n.sources)
	}
}
