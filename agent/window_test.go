package agent

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/sinks"
)

// noticed records what the agent tells the services.
type noticed struct {
	mu  sync.Mutex
	got []notice.Notice
}

var _ Notifier = (*noticed)(nil)

func (n *noticed) Changed(_ config.Certificate, _ *sinks.Change, note notice.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, note)
}

func (n *noticed) Reload(config.Certificate, *sinks.Change) {}

func (n *noticed) last(t *testing.T) notice.Notice {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.got) == 0 {
		t.Fatal("the services heard of no change")
	}
	return n.got[len(n.got)-1]
}

// windowed is an agent over one 100-hour certificate issued on Monday
// 2026-01-05 00:00 UTC, renewed at 66% without jitter (Wednesday 18:00,
// +66h; safe margin +83h), with the given windows, on a clock the test
// moves.
type windowed struct {
	a     *Agent
	fv    *fakeVault
	c     config.Certificate
	n     *noticed
	mu    sync.Mutex
	now   time.Time
	start time.Time
}

func newWindowed(t *testing.T, windows ...string) *windowed {
	t.Helper()
	w := &windowed{start: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC), n: &noticed{}}
	w.now = w.start
	cfg := testConfig(t, "web")
	cfg.Certificates[0].RenewJitter = 0
	for _, s := range windows {
		rw, err := config.ParseRenewWindow(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates[0].RenewWindows = append(cfg.Certificates[0].RenewWindows, rw)
	}
	w.c = cfg.Certificates[0]
	w.fv = newFakeVault(t)
	w.fv.caCert, w.fv.caKey = testCA(t, "fake CA", w.start.Add(-time.Hour), w.start.Add(30*24*time.Hour))
	w.fv.life = 100*time.Hour + 30*time.Second // NotBefore is backdated 30s
	w.fv.clock = w.clock
	w.a = New(Options{Config: cfg, Issuer: w.fv, Notifier: w.n, Now: w.clock})
	return w
}

func (w *windowed) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *windowed) at(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.start.Add(d)
}

func (w *windowed) pass(t *testing.T) *Result {
	t.Helper()
	res, err := w.a.ensure(t.Context(), w.c, false)
	if err != nil {
		t.Fatal(err)
	}
	w.a.record(w.c, res, nil)
	return res
}

func hours(h float64) time.Duration { return time.Duration(h * float64(time.Hour)) }

// TestRenewalWaitsForItsWindow: the renewal point (Wednesday 18:00) is
// outside Mon-Fri 02:00-05:00, so the renewal waits for Thursday's
// window, keeps the certificate until then without asking Vault, and
// then renews as a routine change whose deadline is the old
// certificate's safe margin; status shows the window and the plan.
func TestRenewalWaitsForItsWindow(t *testing.T) {
	w := newWindowed(t, "Mon-Fri 02:00-05:00 UTC")
	first := w.pass(t)
	if first.Action != Issued || w.n.last(t).Reason != notice.Issued || !w.n.last(t).Urgent {
		t.Fatalf("first pass: %+v, notice %+v", first, w.n.last(t))
	}
	planned := first.RenewAt
	if planned.Before(w.start.Add(74*time.Hour)) || !planned.Before(w.start.Add(77*time.Hour)) {
		t.Fatalf("renewal planned at +%v, want in Thursday's window (+74h to +77h)", planned.Sub(w.start))
	}

	w.at(70 * time.Hour) // past the renewal point, before the window
	if res := w.pass(t); res.Action != Kept || !res.RenewAt.Equal(planned) {
		t.Fatalf("before the window: %s, renew at +%v; want kept until +%v", res.Action, res.RenewAt.Sub(w.start), planned.Sub(w.start))
	}
	if n := w.fv.count(w.c.CommonName); n != 1 {
		t.Fatalf("vault asked %d times before the window", n)
	}
	st := w.a.Statuses()[0]
	if st.Window == nil || !st.Window.NextStart.Equal(w.start.Add(74*time.Hour)) || st.Window.Due.Sub(w.start).Round(time.Minute) != 66*time.Hour ||
		st.Window.Outside || !st.RenewAt.Equal(planned) || st.State != StateValid {
		t.Errorf("status: %+v window %+v", st, st.Window)
	}
	latest := st.Window.Latest

	w.at(planned.Sub(w.start) + time.Minute)
	res := w.pass(t)
	n := w.n.last(t)
	if res.Action != Issued || n.Reason != notice.Renewal || n.Urgent || n.PreviousSerial != first.Serial || !n.Deadline.Equal(latest) {
		t.Fatalf("in the window: %s (%s), notice %+v; want a routine renewal with deadline %v", res.Action, res.Reason, n, latest)
	}
	if n.Serial != res.Serial || len(n.Names) == 0 || n.Names[0] != w.c.CommonName || n.Outputs["cert_file"] != w.c.Files.Cert {
		t.Errorf("notice lacks the certificate's facts: %+v", n)
	}
}

// TestUrgentChangesDoNotWaitForWindows: outside the window a config
// change the certificate no longer fits, and a forced rotation, renew at
// once and say they are urgent.
func TestUrgentChangesDoNotWaitForWindows(t *testing.T) {
	w := newWindowed(t, "Sun 02:00-03:00 UTC")
	w.pass(t)
	w.at(10 * time.Hour)
	w.c.AltNames = append(w.c.AltNames, "new.example.internal")
	if res := w.pass(t); res.Action != Issued || w.n.last(t).Reason != notice.Config || !w.n.last(t).Urgent {
		t.Errorf("config change: %s, notice %+v", res.Action, w.n.last(t))
	}
	w.at(11 * time.Hour)
	res, err := w.a.ensure(t.Context(), w.c, true)
	if err != nil || res.Action != Issued || w.n.last(t).Reason != notice.Rotation || !w.n.last(t).Urgent {
		t.Errorf("forced rotation: %+v %v, notice %+v", res, err, w.n.last(t))
	}
}

// TestNoWindowInTimeRenewsAndSaysWhy: the only window (Sundays) opens
// after the safe margin: the renewal happens at its point, and status,
// the reason and the notice say why.
func TestNoWindowInTimeRenewsAndSaysWhy(t *testing.T) {
	w := newWindowed(t, "Sun 02:00-03:00 UTC")
	first := w.pass(t)
	if first.RenewAt.Sub(w.start).Round(time.Minute) != 66*time.Hour {
		t.Fatalf("renewal planned at +%v, want the renewal point +66h", first.RenewAt.Sub(w.start))
	}
	st := w.a.Statuses()[0]
	if st.Window == nil || !st.Window.Outside || !strings.Contains(st.Window.Note, "no renewal window opens") {
		t.Errorf("status window: %+v", st.Window)
	}
	w.at(first.RenewAt.Sub(w.start) + time.Second)
	res := w.pass(t)
	if res.Action != Issued || !strings.Contains(res.Reason, "renewal is due; no renewal window opens") || w.n.last(t).Reason != notice.Renewal {
		t.Errorf("renewal: %s %q", res.Action, res.Reason)
	}
}

// testCA is a self-signed CA valid from notBefore to notAfter.
func testCA(t *testing.T, cn string, notBefore, notAfter time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := pki.GenerateKey("ec", 256)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}
