package agent

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"

	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/vault"
)

// crlOf makes a CRL that fv's CA signs, listing serials.
func crlOf(t *testing.T, fv *fakeVault, serials ...*big.Int) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(7), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Unix(1764500000, 0)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, fv.caCert, fv.caKey)
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := x509.ParseRevocationList(der)
	return crl
}

func heldLeaf(a *Agent, name string) *x509.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h := a.held[name]; h != nil {
		return h.bundle.Leaf
	}
	return nil
}

// runAgent runs a until the test ends and returns once every
// certificate's first pass is done.
func runAgent(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan struct{}), make(chan struct{})
	go func() {
		// passed is called from Run's goroutines, after every pass.
		var mu sync.Mutex
		seen, want, closed := map[string]bool{}, len(a.config().Certificates), false
		a.Run(ctx, func(name string) {
			mu.Lock()
			defer mu.Unlock()
			seen[name] = true
			if len(seen) == want && !closed {
				closed = true
				close(ready)
			}
		})
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-ready
}

// TestRevokedCertificateIsReplaced: a CRL from the certificate's issuer
// that lists it marks it revoked (status, log with serial and time) and
// has it replaced at once; a CRL of another CA that lists the same serial
// number changes nothing.
func TestRevokedCertificateIsReplaced(t *testing.T) {
	cfg := testConfig(t, "web", "api")
	fv := newFakeVault(t)
	logs := &cktest.SyncBuffer{}
	a := New(Options{Config: cfg, Issuer: fv, Log: slog.New(slog.NewTextHandler(logs, nil)), Rand: func() float64 { return 0 }})
	runAgent(t, a)
	web := heldLeaf(a, "web")

	if got := a.HeldIssuers(); len(got) != 2 || !got[0].CA.Equal(fv.caCert) || got[0].Mount != "pki_int" {
		t.Fatalf("held issuers = %+v", got)
	}
	stranger := newFakeVault(t)
	a.CheckCRL(stranger.caCert, crlOf(t, stranger, web.SerialNumber))
	time.Sleep(100 * time.Millisecond)
	if fv.count("web.example.internal") != 1 {
		t.Fatal("a CRL of another CA listing the same serial number replaced the certificate")
	}

	// Held but not yet replaced: the status says revoked.
	fv.mu.Lock()
	fv.failFor["web.example.internal"] = errors.New("vault is down")
	fv.mu.Unlock()
	a.CheckCRL(fv.caCert, crlOf(t, fv, web.SerialNumber))
	waitUntil(t, "a replacement attempt", func() bool { return fv.count("web.example.internal") == 2 })
	st := statusOf(a, "web")
	if st.State != StateRevoked || !st.RevokedAt.Equal(time.Unix(1764500000, 0)) {
		t.Errorf("status while the replacement fails = %+v", st)
	}
	if !strings.Contains(logs.String(), `msg="the certificate on disk was revoked in vault; replacing it" cert=web serial=`+pki.Serial(web)+` revoked_at=2025-11-30T10:53:20Z`) {
		t.Errorf("no log line with the serial and revocation time:\n%s", logs)
	}
	fv.mu.Lock()
	delete(fv.failFor, "web.example.internal")
	fv.mu.Unlock()
	a.queue.Set("web", time.Time{})
	waitUntil(t, "the revoked certificate to be replaced", func() bool {
		l := heldLeaf(a, "web")
		return l != nil && !l.Equal(web)
	})
	waitUntil(t, "the status to clear", func() bool { return statusOf(a, "web").State == StateValid })
	if fv.count("api.example.internal") != 1 {
		t.Error("api, not revoked, was replaced too")
	}
	if !strings.Contains(logs.String(), `reason="the certificate was revoked in vault at 2025-11-30T10:53:20Z"`) {
		t.Errorf("no issuance log naming the revocation:\n%s", logs)
	}
	// The same CRL again does not touch the new certificate.
	a.CheckCRL(fv.caCert, crlOf(t, fv, web.SerialNumber))
	time.Sleep(100 * time.Millisecond)
	if n := fv.count("web.example.internal"); n != 3 {
		t.Errorf("%d issuances, want 3", n)
	}
}

// TestMassRevocationIsSpread: certificates revoked together are replaced
// at random points within revokedSpread, not all at once.
func TestMassRevocationIsSpread(t *testing.T) {
	cfg := testConfig(t, "a", "b", "c")
	fv := newFakeVault(t)
	draws := []float64{0, 0.5, 0.99}
	var mu sync.Mutex
	a := New(Options{Config: cfg, Issuer: fv, Rand: func() float64 {
		mu.Lock()
		defer mu.Unlock()
		if len(draws) == 0 {
			return 0.3
		}
		d := draws[0]
		draws = draws[1:]
		return d
	}})
	for _, c := range cfg.Certificates {
		if _, err := a.ensure(t.Context(), c, false); err != nil {
			t.Fatal(err)
		}
	}
	var serials []*big.Int
	for _, c := range cfg.Certificates {
		serials = append(serials, heldLeaf(a, c.Name).SerialNumber)
	}
	mu.Lock()
	draws = []float64{0, 0.5, 0.99}
	mu.Unlock()
	before := time.Now()
	a.CheckCRL(fv.caCert, crlOf(t, fv, serials...))
	for i, c := range cfg.Certificates {
		at, ok := a.queue.When(c.Name)
		want := []time.Duration{0, revokedSpread / 2, revokedSpread * 99 / 100}[i]
		if !ok || at.Sub(before) < want-time.Second || at.Sub(before) > want+time.Second {
			t.Errorf("%s due in %v, want about %v", c.Name, at.Sub(before), want)
		}
	}
}

func statusOf(a *Agent, name string) Status {
	for _, st := range a.Statuses() {
		if st.Name == name {
			return st
		}
	}
	return Status{}
}

// fakeServices stands in for services.Manager: it records changes and
// reload requests, and the test delivers them.
type fakeServices struct {
	mu      sync.Mutex
	changes []*sinks.Change
	reloads []*sinks.Change
}

func (f *fakeServices) Changed(_ config.Certificate, c *sinks.Change, _ notice.Notice) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes = append(f.changes, c)
}

func (f *fakeServices) Reload(_ config.Certificate, token *sinks.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads = append(f.reloads, token)
}

func (f *fakeServices) last() *sinks.Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changes[len(f.changes)-1]
}

var _ Notifier = (*fakeServices)(nil)

// fakeRevoker records revocations, as Vault would answer them.
type fakeRevoker struct {
	mu      sync.Mutex
	revoked map[string]time.Time // serial -> when
	calls   int
	fail    error
	lookups int
}

func (f *fakeRevoker) RevokeWithKey(_ context.Context, mount, certPEM, keyPEM string) (*vault.Revoked, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		return nil, f.fail
	}
	certs, err := pki.ParseCertificates([]byte(certPEM))
	if err != nil {
		return nil, err
	}
	key, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		return nil, err
	}
	if err := pki.Check(pki.NewBundle(certs[0], key, nil), pki.Want{}, time.Now()); err != nil && strings.Contains(err.Error(), "does not match") {
		return nil, &vault.RevokeRefusedError{Path: mount + "/revoke-with-key", Err: err}
	}
	if f.revoked == nil {
		f.revoked = map[string]time.Time{}
	}
	s := pki.Serial(certs[0])
	if _, ok := f.revoked[s]; !ok {
		f.revoked[s] = time.Now()
	}
	return &vault.Revoked{At: f.revoked[s]}, nil
}

func (f *fakeRevoker) RevocationTime(_ context.Context, _, serial string) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	return f.revoked[serial], nil
}

func (f *fakeRevoker) has(serial string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.revoked[serial]
	return ok
}

// supersedeFixture is an agent whose certificate web has
// revoke_superseded, with a settable clock.
type supersedeFixture struct {
	cfg *config.Config
	fv  *fakeVault
	svc *fakeServices
	rv  *fakeRevoker
	clk *stepClock
	a   *Agent
}

type stepClock struct {
	mu sync.Mutex
	d  time.Duration
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.d)
}

func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.d += d
}

func newSupersedeFixture(t *testing.T) *supersedeFixture {
	cfg := testConfig(t, "web")
	cfg.Certificates[0].RevokeSuperseded = true
	cfg.Certificates[0].RevokeGrace = 10 * time.Minute
	cfg.Certificates[0].Notify = []string{"nginx"}
	f := &supersedeFixture{cfg: cfg, fv: newFakeVault(t), svc: &fakeServices{}, rv: &fakeRevoker{}, clk: &stepClock{}}
	f.fv.life = 24 * time.Hour
	f.a = f.newAgent()
	return f
}

func (f *supersedeFixture) newAgent() *Agent {
	return New(Options{Config: f.cfg, Issuer: f.fv, Notifier: f.svc, Revoker: f.rv, Now: f.clk.now, Rand: func() float64 { return 0 }})
}

func (f *supersedeFixture) records(t *testing.T) []string {
	t.Helper()
	entries, _ := os.ReadDir(statedir.Dir(f.cfg.StateDir).Superseded())
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestSupersededRevokedOnlyOutOfServiceAndAfterGrace: a rotation keeps
// the old certificate and key (0600) and revokes nothing until the
// services have loaded the new one; then only after the grace period,
// with the old key; then the record and key are gone.
func TestSupersededRevokedOnlyOutOfServiceAndAfterGrace(t *testing.T) {
	f := newSupersedeFixture(t)
	c := f.cfg.Certificates[0]
	if _, err := f.a.ensure(t.Context(), c, false); err != nil {
		t.Fatal(err)
	}
	old := heldLeaf(f.a, "web")
	if _, err := f.a.ensure(t.Context(), c, true); err != nil {
		t.Fatal(err)
	}
	recs := f.records(t)
	if len(recs) != 1 {
		t.Fatalf("records = %v, want the old certificate's", recs)
	}
	path := statedir.Dir(f.cfg.StateDir).SupersededCertificate("web", pki.Serial(old))
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("record %s: %v %v, want mode 0600", path, info, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go f.a.revokeLoop(ctx)

	f.clk.add(time.Hour)
	f.a.RevokeDue(t.Context())
	if f.rv.has(pki.Serial(old)) {
		t.Fatal("revoked before the services loaded the new certificate")
	}
	f.a.Delivered(f.svc.last())
	f.clk.add(9 * time.Minute)
	f.a.RevokeDue(t.Context())
	if f.rv.has(pki.Serial(old)) {
		t.Fatal("revoked within the grace period")
	}
	f.clk.add(2 * time.Minute)
	f.a.RevokeDue(t.Context())
	if !f.rv.has(pki.Serial(old)) {
		t.Fatal("not revoked after the grace period")
	}
	if recs := f.records(t); len(recs) != 0 {
		t.Errorf("records left after the revocation: %v", recs)
	}
	if f.rv.has(pki.Serial(heldLeaf(f.a, "web"))) {
		t.Error("the new certificate was revoked")
	}
}

// TestSupersededAcrossRestart: a record that was out of service is
// revoked by the next process; one that was not yet is taken out of
// service by one more reload; one whose certificate is on disk again is
// dropped, never revoked; an attempt that may have reached Vault is
// looked up first, not sent twice.
func TestSupersededAcrossRestart(t *testing.T) {
	t.Run("out of service", func(t *testing.T) {
		f := newSupersedeFixture(t)
		c := f.cfg.Certificates[0]
		f.a.ensure(t.Context(), c, false)
		old := heldLeaf(f.a, "web")
		f.a.ensure(t.Context(), c, true)
		f.a.Delivered(f.svc.last())
		f.clk.add(11 * time.Minute)
		next := f.newAgent()
		next.Once(t.Context())
		if !f.rv.has(pki.Serial(old)) || len(f.records(t)) != 0 {
			t.Errorf("after a restart: revoked %v, records %v", f.rv.has(pki.Serial(old)), f.records(t))
		}
	})
	t.Run("not yet out of service", func(t *testing.T) {
		f := newSupersedeFixture(t)
		c := f.cfg.Certificates[0]
		f.a.ensure(t.Context(), c, false)
		old := heldLeaf(f.a, "web")
		f.a.ensure(t.Context(), c, true)
		next := f.newAgent()
		next.Once(t.Context())
		if len(f.svc.reloads) != 1 {
			t.Fatalf("%d reload requests after the restart, want 1", len(f.svc.reloads))
		}
		next.Delivered(f.svc.reloads[0])
		f.clk.add(11 * time.Minute)
		next.RevokeDue(t.Context())
		if !f.rv.has(pki.Serial(old)) {
			t.Error("not revoked once the reload after the restart was delivered")
		}
	})
	t.Run("in service again", func(t *testing.T) {
		f := newSupersedeFixture(t)
		c := f.cfg.Certificates[0]
		f.a.ensure(t.Context(), c, false)
		old := heldLeaf(f.a, "web")
		// A crash before the new set reached the disk: the record exists,
		// the files are the old certificate's.
		next := heldFrom(t, f.a, c)
		f.a.supersede(c, next)
		if len(f.records(t)) != 1 {
			t.Fatal("no record")
		}
		restarted := f.newAgent()
		restarted.resumeSuperseded()
		f.clk.add(2 * time.Hour)
		restarted.RevokeDue(t.Context())
		if f.rv.has(pki.Serial(old)) || len(f.records(t)) != 0 || len(f.svc.reloads) != 0 {
			t.Errorf("a certificate still in service: revoked %v, records %v, reloads %d", f.rv.has(pki.Serial(old)), f.records(t), len(f.svc.reloads))
		}
	})
	t.Run("attempted before a crash", func(t *testing.T) {
		f := newSupersedeFixture(t)
		c := f.cfg.Certificates[0]
		f.a.ensure(t.Context(), c, false)
		old := heldLeaf(f.a, "web")
		f.a.ensure(t.Context(), c, true)
		f.a.Delivered(f.svc.last())
		// Vault revoked it, then the process died before removing the
		// record.
		f.rv.RevokeWithKey(t.Context(), "pki_int", string(pki.EncodeCerts(old)), keyPEMOf(t, f, old))
		rec := f.readRecord(t, old)
		rec.Attempted = true
		f.a.saveSuperseded(rec)
		f.clk.add(11 * time.Minute)
		f.newAgent().Once(t.Context())
		if f.rv.calls != 1 || f.rv.lookups != 1 || len(f.records(t)) != 0 {
			t.Errorf("revoke calls %d (want 1), lookups %d (want 1), records %v", f.rv.calls, f.rv.lookups, f.records(t))
		}
	})
}

// TestSupersededRevokeFailures: a Vault outage is retried; a revocation
// Vault refuses as such is not, and its record goes at the old
// certificate's expiry.
func TestSupersededRevokeFailures(t *testing.T) {
	f := newSupersedeFixture(t)
	c := f.cfg.Certificates[0]
	f.a.ensure(t.Context(), c, false)
	old := heldLeaf(f.a, "web")
	f.a.ensure(t.Context(), c, true)
	f.a.Delivered(f.svc.last())
	f.rv.fail = &vault.Error{Status: 503, Err: errors.New("vault is sealed")}
	f.clk.add(11 * time.Minute)
	f.a.RevokeDue(t.Context())
	id := supersededID("web", pki.Serial(old))
	at, ok := f.a.sup.queue.When(id)
	if !ok || at.Sub(f.clk.now()) <= 0 || len(f.records(t)) != 1 {
		t.Fatalf("after a failed attempt: queued %v at %v, records %v", ok, at, f.records(t))
	}
	f.rv.fail = &vault.RevokeRefusedError{Path: "pki_int/revoke-with-key", Err: errors.New("unable to verify signature on presented cert")}
	f.clk.add(10 * time.Minute)
	f.a.RevokeDue(t.Context())
	at, ok = f.a.sup.queue.When(id)
	if !ok || !at.Equal(old.NotAfter) {
		t.Errorf("after a refusal the record is due at %v, want the certificate's expiry %v", at, old.NotAfter)
	}
	calls := f.rv.calls
	f.clk.add(time.Until(old.NotAfter) + time.Minute)
	f.a.RevokeDue(t.Context())
	if f.rv.calls != calls || len(f.records(t)) != 0 {
		t.Errorf("at expiry: %d more calls, records %v; want none and none", f.rv.calls-calls, f.records(t))
	}
}

func heldFrom(t *testing.T, a *Agent, c config.Certificate) *held {
	t.Helper()
	h, err := a.obtain(t.Context(), c, a.log, caStep{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (f *supersedeFixture) readRecord(t *testing.T, old *x509.Certificate) supersededRecord {
	t.Helper()
	rec, err := readSuperseded(statedir.Dir(f.cfg.StateDir).SupersededCertificate("web", pki.Serial(old)))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func keyPEMOf(t *testing.T, f *supersedeFixture, old *x509.Certificate) string {
	t.Helper()
	return f.readRecord(t, old).Key
}

// TestSupersededRecordsNotOursAreIgnored: a record of a replaced
// certificate is read back only if certkeeper wrote it (the privilege
// model's read-back rule, sinks.ReadState) and no one else can read its
// key; anything else is logged and never revoked from.
func TestSupersededRecordsNotOursAreIgnored(t *testing.T) {
	for _, tt := range []struct {
		name  string
		plant func(t *testing.T, record string)
	}{
		{"readable by others", func(t *testing.T, record string) {
			if err := os.Chmod(record, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"another user's", func(t *testing.T, record string) {
			if os.Geteuid() != 0 {
				t.Skip("changing a file's owner needs root")
			}
			if err := os.Chown(record, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}},
		{"in a directory others may write", func(t *testing.T, record string) {
			if err := os.Chmod(filepath.Dir(record), 0o777); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newSupersedeFixture(t)
			c := f.cfg.Certificates[0]
			f.a.ensure(t.Context(), c, false)
			old := heldLeaf(f.a, "web")
			f.a.ensure(t.Context(), c, true)
			f.a.Delivered(f.svc.last())
			tt.plant(t, statedir.Dir(f.cfg.StateDir).SupersededCertificate("web", pki.Serial(old)))
			f.clk.add(11 * time.Minute)
			f.newAgent().RevokeDue(t.Context())
			if f.rv.calls != 0 {
				t.Errorf("revoked from a record certkeeper did not write: %d calls", f.rv.calls)
			}
		})
	}
}

// TestRevokedReplacementIsUrgent: the replacement of a revoked
// certificate waits for no renewal window (one is configured, closed
// now), and tells the services it is urgent (notice.Revocation), so no
// reload budget holds it back either.
func TestRevokedReplacementIsUrgent(t *testing.T) {
	cfg := testConfig(t, "web")
	h := time.Now().UTC().Hour()
	rw, err := config.ParseRenewWindow(fmt.Sprintf("%02d:00-%02d:00 UTC", (h+6)%24, (h+7)%24))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates[0].RenewWindows = []config.RenewWindow{rw}
	fv := newFakeVault(t)
	n := &noticed{}
	a := New(Options{Config: cfg, Issuer: fv, Notifier: n, Rand: func() float64 { return 0 }})
	runAgent(t, a)
	web := heldLeaf(a, "web")
	a.CheckCRL(fv.caCert, crlOf(t, fv, web.SerialNumber))
	var got notice.Notice
	waitUntil(t, "the revoked certificate to be replaced", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		if len(n.got) == 0 {
			return false
		}
		got = n.got[len(n.got)-1]
		return got.Serial != pki.Serial(web)
	})
	if got.Reason != notice.Revocation || !got.Urgent || !got.Deadline.IsZero() || got.PreviousSerial != pki.Serial(web) {
		t.Errorf("the services were told %+v; want an urgent revocation replacing %s", got, pki.Serial(web))
	}
}
