package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/vault"
)

// caKey is a CA certificate and its key.
type caKey struct {
	ref  string
	cert *x509.Certificate
	key  crypto.Signer
}

func newIntermediate(t *testing.T, ref string, root caKey, notAfter time.Time) caKey {
	t.Helper()
	key, _ := pki.GenerateKey("ec", 256)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "intermediate " + ref}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.cert, key.Public(), root.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return caKey{ref: ref, cert: cert, key: key}
}

// rotatingVault is a PKI mount with a root and intermediates, one of
// them the default, that honours (or, for a test, ignores) the issuer a
// request names.
type rotatingVault struct {
	mu        sync.Mutex
	root      caKey
	issuers   []caKey
	def       string
	ignorePin bool
	clock     func() time.Time
	life      time.Duration
	requests  []vault.CertRequest
	lists     int
}

var (
	_ Issuer       = (*rotatingVault)(nil)
	_ IssuerLister = (*rotatingVault)(nil)
)

func newRotatingVault(t *testing.T, clock func() time.Time) *rotatingVault {
	t.Helper()
	rc, rk := testCA(t, "root", time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour))
	root := caKey{ref: "root", cert: rc, key: rk}
	v := &rotatingVault{root: root, clock: clock, life: 72 * time.Hour}
	v.issuers = []caKey{newIntermediate(t, "int-1", root, time.Now().Add(365*24*time.Hour))}
	v.def = "int-1"
	return v
}

func (v *rotatingVault) add(t *testing.T, ref string, notAfter time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.issuers = append(v.issuers, newIntermediate(t, ref, v.root, notAfter))
}

func (v *rotatingVault) setDefault(ref string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.def = ref
}

func (v *rotatingVault) issuer(ref string) caKey {
	for _, is := range v.issuers {
		if is.ref == ref {
			return is
		}
	}
	panic("no issuer " + ref)
}

func (v *rotatingVault) ListIssuers(_ context.Context, mount string) ([]vault.IssuerInfo, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lists++
	var out []vault.IssuerInfo
	for _, is := range v.issuers {
		out = append(out, vault.IssuerInfo{Ref: is.ref, Default: is.ref == v.def, HasKey: true})
	}
	return out, nil
}

func (v *rotatingVault) IssuerCertificate(_ context.Context, _, ref string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return string(pki.EncodeCerts(v.issuer(ref).cert)), nil
}

func (v *rotatingVault) Obtain(_ context.Context, r vault.CertRequest) (*vault.Issued, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.requests = append(v.requests, r)
	ref := v.def
	if r.IssuerRef != "" && !v.ignorePin {
		ref = r.IssuerRef
	}
	is := v.issuer(ref)
	block, _ := pem.Decode(r.CSR)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	now := v.clock()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: r.CommonName}, DNSNames: r.AltNames,
		NotBefore: now.Add(-30 * time.Second), NotAfter: now.Add(v.life)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.cert, csr.PublicKey, is.key)
	if err != nil {
		return nil, err
	}
	inter := string(pki.EncodeCerts(is.cert))
	return &vault.Issued{
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		IssuingCA:   inter, CAChain: []string{inter, string(pki.EncodeCerts(v.root.cert))},
	}, nil
}

func (v *rotatingVault) last() vault.CertRequest {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.requests[len(v.requests)-1]
}

// fakeTrust answers TrustedSince from a table by CA serial; a mount not
// in covered is one no bundle takes.
type fakeTrust struct {
	mu      sync.Mutex
	since   map[string]time.Time
	covered bool
	// changed are the mounts IssuersChanged was told of.
	changed []string
}

func (f *fakeTrust) TrustedSince(_ string, ca *x509.Certificate) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.since[pki.Serial(ca)], f.covered
}

func (f *fakeTrust) IssuersChanged(mount string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changed = append(f.changed, mount)
}

func (f *fakeTrust) trust(ca *x509.Certificate, since time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.since[pki.Serial(ca)] = since
}

// caRotation is an agent over one 72-hour certificate of a mount whose
// default issuer the test rotates, with ca_soak 24h, on a clock the test
// moves.
type caRotation struct {
	a     *Agent
	v     *rotatingVault
	tr    *fakeTrust
	cfg   *config.Config
	c     config.Certificate
	n     *noticed
	mu    sync.Mutex
	now   time.Time
	start time.Time
}

func newRotation(t *testing.T, covered bool) *caRotation {
	t.Helper()
	r := &caRotation{start: time.Now(), n: &noticed{}, tr: &fakeTrust{since: map[string]time.Time{}, covered: covered}}
	r.now = r.start
	r.cfg = testConfig(t, "web")
	r.cfg.CASoak, r.cfg.IssuerCheck = 24*time.Hour, 10*time.Minute
	r.c = r.cfg.Certificates[0]
	r.v = newRotatingVault(t, r.clock)
	r.a = New(Options{Config: r.cfg, Issuer: r.v, Trust: r.tr, Notifier: r.n, Now: r.clock})
	return r
}

func (r *caRotation) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *caRotation) at(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = r.start.Add(d)
}

func (r *caRotation) ensure(t *testing.T, force bool) *Result {
	t.Helper()
	res, err := r.a.ensure(t.Context(), r.c, force)
	if err != nil {
		t.Fatal(err)
	}
	r.a.record(r.c, res, nil)
	return res
}

func (r *caRotation) servedIssuer(t *testing.T) string {
	t.Helper()
	return cktestLeafIssuer(t, r.c.Files.Cert)
}

func cktestLeafIssuer(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0].Issuer.CommonName
}

// TestLeavesStayWithTheirIssuerUntilTheSoak: the mount's default moves to
// a new intermediate. Until it has been in this host's trust bundles for
// ca_soak, renewals (even forced ones) name the old issuer; the status
// and the next pass show the soak; after it, the certificate is re-issued
// from the new issuer within a tenth of ca_soak, as a routine change.
func TestLeavesStayWithTheirIssuerUntilTheSoak(t *testing.T) {
	r := newRotation(t, true)
	r.ensure(t, false)
	if got := r.servedIssuer(t); got != "intermediate int-1" {
		t.Fatalf("first certificate from %s", got)
	}

	r.v.add(t, "int-2", time.Now().Add(365*24*time.Hour))
	r.v.setDefault("int-2")
	r.at(time.Hour)
	if changed, err := r.a.refreshMount(t.Context(), r.c.Mount); err != nil || !changed {
		t.Fatalf("refresh after the rotation: changed %v, %v", changed, err)
	}
	// Not in this host's bundles yet: pinned, soak not begun.
	res := r.ensure(t, true)
	if req := r.v.last(); req.IssuerRef != "int-1" || r.servedIssuer(t) != "intermediate int-1" {
		t.Fatalf("forced renewal before the new CA is trusted went to %q (%s)", req.IssuerRef, r.servedIssuer(t))
	}
	if st := r.a.Statuses()[0]; st.CARotation == nil || !st.CARotation.Pinned || !st.CARotation.TrustedSince.IsZero() ||
		st.CARotation.NewIssuer != "intermediate int-2" || !strings.Contains(st.CARotation.Note, "no trust bundle") {
		t.Errorf("status while not trusted: %+v", st.CARotation)
	}
	if want := r.clock().Add(r.cfg.IssuerCheck); res.NextPass.IsZero() || res.NextPass.After(want) {
		t.Errorf("next look at +%v, want by the next issuer check (+%v)", res.NextPass.Sub(r.start), want.Sub(r.start))
	}

	// The bundles take it in at +2h: the soak ends at +26h.
	trusted := r.start.Add(2 * time.Hour)
	r.tr.trust(r.v.issuer("int-2").cert, trusted)
	r.at(3 * time.Hour)
	res = r.ensure(t, true)
	if req := r.v.last(); req.IssuerRef != "int-1" || r.servedIssuer(t) != "intermediate int-1" {
		t.Fatalf("forced renewal during the soak went to %q", req.IssuerRef)
	}
	soakEnd := trusted.Add(24 * time.Hour)
	if st := r.a.Statuses()[0]; !st.CARotation.Pinned || !st.CARotation.SoakEnd.Equal(soakEnd) || !st.CARotation.TrustedSince.Equal(trusted) {
		t.Errorf("status during the soak: %+v", st.CARotation)
	}

	r.at(soakEnd.Sub(r.start) - time.Minute)
	res = r.ensure(t, false)
	if res.Action != Kept || res.NextPass.IsZero() || res.NextPass.After(soakEnd) {
		t.Fatalf("just before the soak ends: %s, next pass at +%v (soak ends +%v)", res.Action, res.NextPass.Sub(r.start), soakEnd.Sub(r.start))
	}

	r.at(soakEnd.Sub(r.start))
	res = r.ensure(t, false)
	st := r.a.Statuses()[0]
	moveAt := st.CARotation.MoveAt
	if res.Action != Kept || st.CARotation.Pinned || moveAt.Before(soakEnd) || moveAt.After(soakEnd.Add(r.cfg.CASoak/10)) || !res.NextPass.Equal(moveAt) {
		t.Fatalf("soak over: %s, status %+v; want kept with a move planned within a tenth of ca_soak after %v", res.Action, st.CARotation, soakEnd)
	}

	r.at(moveAt.Sub(r.start))
	res = r.ensure(t, false)
	n := r.n.last(t)
	if res.Action != Issued || n.Reason != notice.CAMove || n.Urgent || r.v.last().IssuerRef != "" || r.servedIssuer(t) != "intermediate int-2" {
		t.Fatalf("at the move: %s (%s), notice %s urgent %v, request to %q, issuer %s", res.Action, res.Reason, n.Reason, n.Urgent, r.v.last().IssuerRef, r.servedIssuer(t))
	}
	if st := r.a.Statuses()[0]; st.CARotation != nil {
		t.Errorf("after the move the status still shows a rotation: %+v", st.CARotation)
	}
}

// TestMoveSpreadsOverATenthOfTheSoak: a fleet whose soak ends together
// moves spread over the tenth of ca_soak after it, not all at once.
func TestMoveSpreadsOverATenthOfTheSoak(t *testing.T) {
	r := newRotation(t, true)
	r.ensure(t, false)
	h := r.a.heldNow("web")
	r.v.add(t, "int-2", time.Now().Add(365*24*time.Hour))
	r.v.setDefault("int-2")
	r.a.refreshMount(t.Context(), r.c.Mount)
	r.tr.trust(r.v.issuer("int-2").cert, r.start)
	soakEnd := r.start.Add(24 * time.Hour)
	const n, buckets = 4000, 8
	var counts [buckets]int
	spread := r.cfg.CASoak / 10
	for i := range n {
		hh := &held{bundle: h.bundle, record: h.record}
		hh.record.Serial = fmt.Sprintf("%d:%x", i, mrand.Uint64())
		step := r.a.caStepFor(r.cfg, r.c, hh, soakEnd)
		off := step.moveAt.Sub(soakEnd)
		if off < 0 || off >= spread {
			t.Fatalf("move at +%v after the soak, want within %v", off, spread)
		}
		counts[int(off*buckets/spread)]++
	}
	for i, c := range counts {
		if c < n/buckets*3/4 || c > n/buckets*5/4 {
			t.Errorf("eighth %d of the spread holds %d of %d moves: %v", i, c, n, counts)
		}
	}
}

// TestUncoveredMountSoaksFromFirstSeen: no trust bundle takes the mount
// (server certificates whose clients trust the root): the soak counts
// from when this host first saw the new issuer listed, which a restart
// remembers.
func TestUncoveredMountSoaksFromFirstSeen(t *testing.T) {
	r := newRotation(t, false)
	r.ensure(t, false)
	r.v.add(t, "int-2", time.Now().Add(365*24*time.Hour))
	r.v.setDefault("int-2")
	r.at(time.Hour)
	r.a.refreshMount(t.Context(), r.c.Mount)
	if st := r.a.caStepFor(r.cfg, r.c, r.a.heldNow("web"), r.clock()); st.pin != "int-1" || !st.trustedSince.Equal(r.start.Add(time.Hour)) {
		t.Fatalf("step %+v, want pinned with the soak from +1h", st)
	}
	// A new process (a restart) a day later.
	r.at(20 * time.Hour)
	a2 := New(Options{Config: r.cfg, Issuer: r.v, Notifier: r.n, Now: r.clock})
	a2.refreshMount(t.Context(), r.c.Mount)
	h, _, _ := a2.current(r.c, r.clock())
	if st := a2.caStepFor(r.cfg, r.c, h, r.clock()); !st.trustedSince.Equal(r.start.Add(time.Hour)) {
		t.Errorf("after a restart the soak began %v, want %v (when first seen)", st.trustedSince, r.start.Add(time.Hour))
	}
}

// TestPinnedIssuerExpiringMovesEarly: an old issuer that would expire
// before a new certificate from it is left at the next renewal, soak or
// not, with a warning; one that is gone from the mount too.
func TestPinnedIssuerExpiringMovesEarly(t *testing.T) {
	r := newRotation(t, true)
	r.v.issuers[0] = newIntermediate(t, "int-1", r.v.root, time.Now().Add(48*time.Hour)) // shorter than a 72h certificate
	r.ensure(t, false)
	r.v.add(t, "int-2", time.Now().Add(365*24*time.Hour))
	r.v.setDefault("int-2")
	r.a.refreshMount(t.Context(), r.c.Mount)
	r.at(time.Hour)
	r.ensure(t, true)
	if req := r.v.last(); req.IssuerRef != "" || r.servedIssuer(t) != "intermediate int-2" {
		t.Fatalf("renewal with an old issuer expiring first went to %q (%s)", req.IssuerRef, r.servedIssuer(t))
	}
}

// TestVaultIgnoringThePinIsRefused: a certificate that comes back from
// another issuer than the one named is not written (Vault ignores an
// issuer named in the body; a proxy could drop the path form).
func TestVaultIgnoringThePinIsRefused(t *testing.T) {
	r := newRotation(t, true)
	r.ensure(t, false)
	before := readAll(t, r.c.Files.Cert, r.c.Files.Key)
	r.v.add(t, "int-2", time.Now().Add(365*24*time.Hour))
	r.v.setDefault("int-2")
	r.a.refreshMount(t.Context(), r.c.Mount)
	r.v.ignorePin = true
	_, err := r.a.ensure(t.Context(), r.c, true)
	var rej *RejectedError
	if !errors.As(err, &rej) || !strings.Contains(err.Error(), `asked of issuer "intermediate int-1"`) {
		t.Fatalf("err = %v, want a rejection naming the pinned issuer", err)
	}
	if after := readAll(t, r.c.Files.Cert, r.c.Files.Key); after != before {
		t.Error("the certificate from the wrong issuer was written")
	}
}

// TestOutlivesIssuerIsReported: a certificate that expires after its
// issuer shows in status.
func TestOutlivesIssuerIsReported(t *testing.T) {
	r := newRotation(t, true)
	r.v.issuers[0] = newIntermediate(t, "int-1", r.v.root, time.Now().Add(24*time.Hour))
	r.ensure(t, false)
	st := r.a.Statuses()[0]
	if !st.OutlivesIssuer || !st.IssuerNotAfter.Equal(r.v.issuer("int-1").cert.NotAfter) {
		t.Errorf("status: outlives %v, issuer not after %v", st.OutlivesIssuer, st.IssuerNotAfter)
	}
	if ds := DiskStatus(r.cfg, r.clock())[0]; !ds.OutlivesIssuer {
		t.Error("disk status does not report it")
	}
}

// TestIssuerListingLooksAgainOnlyWhereItMatters: a listing that finds the
// default unchanged for a certificate (the first listing after a start)
// asks for no pass; one that finds a new default asks for one.
func TestIssuerListingLooksAgainOnlyWhereItMatters(t *testing.T) {
	r := newRotation(t, true)
	r.ensure(t, false)
	if _, err := r.a.refreshMount(t.Context(), r.c.Mount); err != nil {
		t.Fatal(err)
	}
	r.a.lookAgain(r.cfg, r.c.Mount)
	if _, queued := r.a.queue.When("web"); queued {
		t.Error("a certificate from the default issuer was queued for another pass")
	}
	if len(r.tr.changed) != 0 {
		t.Errorf("the trust bundles were told of a change of %v when nothing changed", r.tr.changed)
	}
	r.v.add(t, "int-2", time.Now().Add(365*24*time.Hour))
	r.v.setDefault("int-2")
	if changed, _ := r.a.refreshMount(t.Context(), r.c.Mount); !changed {
		t.Fatal("the new default was not noticed")
	}
	// Trust first: the bundles that take the mount list it again now.
	if !slices.Equal(r.tr.changed, []string{r.c.Mount}) {
		t.Errorf("the trust bundles were told of changes of %v, want %s", r.tr.changed, r.c.Mount)
	}
	r.a.lookAgain(r.cfg, r.c.Mount)
	if at, queued := r.a.queue.When("web"); !queued || !at.IsZero() {
		t.Errorf("after the default changed: queued %v at %v, want a pass now", queued, at)
	}
}

// TestIssuerFollowsTheRenewal: the issuer of a held certificate is found
// once and kept (issuerOf), so it must belong to that certificate and not
// outlive it. Vault replaces the intermediate with one of the same name
// and a new key that expires sooner; after the renewal, status and the
// revocation check follow the new intermediate, not what was found for
// the certificate before it.
func TestIssuerFollowsTheRenewal(t *testing.T) {
	r := newRotation(t, true)
	r.ensure(t, false)
	old := r.v.issuer("int-1").cert
	if st := r.a.Statuses()[0]; !st.IssuerNotAfter.Equal(old.NotAfter) || st.OutlivesIssuer {
		t.Fatalf("status before: issuer not after %v, outlives %v; want %v, false", st.IssuerNotAfter, st.OutlivesIssuer, old.NotAfter)
	}
	r.v.mu.Lock()
	r.v.issuers[0] = newIntermediate(t, "int-1", r.v.root, time.Now().Add(24*time.Hour))
	r.v.mu.Unlock()
	renewed := r.v.issuer("int-1").cert
	if !bytes.Equal(renewed.RawSubject, old.RawSubject) {
		t.Fatal("the replacement intermediate must have the same name")
	}
	r.ensure(t, true)
	st := r.a.Statuses()[0]
	if !st.IssuerNotAfter.Equal(renewed.NotAfter) || !st.OutlivesIssuer {
		t.Errorf("status after the renewal: issuer not after %v, outlives %v; want the new intermediate's %v, true",
			st.IssuerNotAfter, st.OutlivesIssuer, renewed.NotAfter)
	}
	if hi := r.a.HeldIssuers(); len(hi) != 1 || !hi[0].CA.Equal(renewed) {
		t.Errorf("the revocation check follows %v, want the new intermediate", hi)
	}
}
