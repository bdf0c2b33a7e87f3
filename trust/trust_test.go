package trust

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/vault"
)

func TestMain(m *testing.M) {
	// Failing refreshes in Once are retried; the tests need not wait
	// for the real backoff.
	onceRetry.Backoff = backoff.Backoff{Base: 10 * time.Millisecond, Max: 20 * time.Millisecond, Min: 5 * time.Millisecond}
	os.Exit(m.Run())
}

// testCA is a CA with its key and the serials it has revoked.
type testCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	revoked []*big.Int
	number  int64
	// life of the CRLs it signs; expired makes them already stale.
	crlLife time.Duration
	expired bool
	// age is how long ago its CRLs were issued (ThisUpdate); default 1m.
	age time.Duration
	// cached is the CRL Vault would serve until something is revoked.
	cached []byte
}

func (c *testCA) revoke(serial int64) {
	c.revoked = append(c.revoked, big.NewInt(serial))
	c.cached = nil
}

// rebuild makes the CRL anew, as crl/rotate does: new dates, same entries.
func (c *testCA) rebuild() {
	c.cached = nil
	c.age = 0
}

func newCA(t *testing.T, cn string, parent *testCA, notAfter time.Time) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	signer, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, crlLife: 72 * time.Hour}
}

// crlWith is a current CRL of c with one more extension.
func (c *testCA) crlWith(t *testing.T, ext pkix.Extension) []byte {
	t.Helper()
	c.number++
	tmpl := &x509.RevocationList{Number: big.NewInt(c.number), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour), ExtraExtensions: []pkix.Extension{ext}}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, c.cert, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func (c *testCA) crl(t *testing.T) []byte {
	t.Helper()
	if c.cached != nil {
		return c.cached
	}
	c.number++
	now := time.Now()
	age := c.age
	if age == 0 {
		age = time.Minute
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(c.number), ThisUpdate: now.Add(-age), NextUpdate: now.Add(c.crlLife)}
	if c.expired {
		tmpl.ThisUpdate, tmpl.NextUpdate = now.Add(-2*time.Hour), now.Add(-time.Hour)
	}
	for _, s := range c.revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, c.cert, c.key)
	if err != nil {
		t.Fatal(err)
	}
	c.cached = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	return c.cached
}

// fakeVault serves issuers and CRLs the way Vault's PKI does: an issuer
// imported without its key has no CRL.
type fakeVault struct {
	t      *testing.T
	mu     sync.Mutex
	mounts map[string][]fakeIssuer
	calls  map[string]int
	// crlOverride replaces the CRL served for a ref.
	crlOverride map[string][]byte
	// served is what each CRL answer held, for If-Modified-Since; date is
	// the Date every answer carries.
	served    map[string]string
	date      time.Time
	rotateErr error
	// failIssuers fails that many Issuers calls (then they work), and
	// every CRL request while any remain: a sealed Vault answers neither,
	// and the keeper lists issuers only every issuersTTL.
	failIssuers int
}

type fakeIssuer struct {
	ref    string
	ca     *testCA
	hasKey bool
}

var _ Source = (*fakeVault)(nil)

func (f *fakeVault) Issuers(_ context.Context, mount string) ([]vault.CAIssuer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["issuers "+mount]++
	if f.failIssuers > 0 {
		f.failIssuers--
		return nil, &vault.Error{Status: 503, Err: errors.New("vault is sealed")}
	}
	list, ok := f.mounts[mount]
	if !ok {
		return nil, &vault.Error{Status: 404, Err: errors.New("no handler for route " + mount)}
	}
	var out []vault.CAIssuer
	for _, is := range list {
		out = append(out, vault.CAIssuer{Mount: mount, Ref: is.ref, Certificate: string(pki.EncodeCerts(is.ca.cert)), HasKey: is.hasKey})
	}
	// Vault lists by random id; the bundle must not depend on it.
	slices.Reverse(f.mounts[mount])
	return out, nil
}

func (f *fakeVault) CRL(_ context.Context, mount, ref string, since time.Time) (*vault.CRLAnswer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["crl "+mount]++
	if f.failIssuers > 0 {
		return nil, &vault.Error{Status: 503, Err: errors.New("vault is sealed")}
	}
	data, err := f.crlLocked(mount, ref)
	if err != nil {
		return nil, err
	}
	// Vault's If-Modified-Since: the same bytes as at the last answer
	// (which carried date) are not modified.
	key := mount + " " + ref
	if !since.IsZero() && f.served[key] == string(data) {
		f.calls["304 "+mount]++
		return &vault.CRLAnswer{Date: f.date}, nil
	}
	if f.served == nil {
		f.served = map[string]string{}
	}
	f.served[key] = string(data)
	return &vault.CRLAnswer{Data: data, Date: f.date}, nil
}

func (f *fakeVault) crlLocked(mount, ref string) ([]byte, error) {
	if data, ok := f.crlOverride[ref]; ok {
		return data, nil
	}
	for _, is := range f.mounts[mount] {
		if is.ref == ref {
			if !is.hasKey {
				return nil, &vault.Error{Status: 500, Err: errors.New("unable to find CRL for issuer")}
			}
			return is.ca.crl(f.t), nil
		}
	}
	return nil, &vault.Error{Status: 404, Err: errors.New("no such issuer")}
}

func (f *fakeVault) RotateCRL(_ context.Context, mount string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["rotate "+mount]++
	if f.rotateErr != nil {
		return f.rotateErr
	}
	for _, is := range f.mounts[mount] {
		if is.hasKey {
			is.ca.rebuild()
		}
	}
	return nil
}

func (f *fakeVault) count(what string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[what]
}

// twoTier is Vault as test/vaulttest sets it up: a root in pki, and in
// pki_int the intermediate (with key) and the root (imported, no key).
func twoTier(t *testing.T) (*fakeVault, *testCA, *testCA) {
	root := newCA(t, "test root", nil, time.Now().Add(10*365*24*time.Hour))
	inter := newCA(t, "test intermediate", root, time.Now().Add(5*365*24*time.Hour))
	f := &fakeVault{t: t, calls: map[string]int{}, crlOverride: map[string][]byte{}, date: time.Now(), mounts: map[string][]fakeIssuer{
		"pki":     {{ref: "root-in-pki", ca: root, hasKey: true}},
		"pki_int": {{ref: "int", ca: inter, hasKey: true}, {ref: "root-in-int", ca: root}},
	}}
	return f, root, inter
}

type notified struct {
	mu      sync.Mutex
	sources []string
	notices []notice.Notice
}

func (n *notified) BundleChanged(tb config.TrustBundle, change *sinks.Change, note notice.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sources = append(n.sources, note.Source()+"->"+strings.Join(tb.Notify, ","))
	n.notices = append(n.notices, note)
}

func (n *notified) BundleSettled(tb config.TrustBundle) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sources = append(n.sources, "settled "+tb.Name)
}

func (n *notified) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.sources)
}

func bundleConfig(t *testing.T, mounts ...string) (*config.Config, config.TrustBundle) {
	dir := t.TempDir()
	tb := config.TrustBundle{
		Name: "clients", Mounts: mounts, CAFile: filepath.Join(dir, "clients-ca.pem"), CRLFile: filepath.Join(dir, "clients.crl.pem"),
		Notify: []string{"nginx"}, CRLRefresh: 5 * time.Minute, UID: -1, GID: -1, Mode: 0o644,
	}
	return &config.Config{StateDir: filepath.Join(dir, "state"), TrustBundles: []config.TrustBundle{tb}}, tb
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestEveryLevelHasItsCRL: a bundle over the intermediate's mount and the
// root's mount holds both CAs once, and a CRL for each, signed by it.
func TestEveryLevelHasItsCRL(t *testing.T) {
	f, root, inter := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	n := &notified{}
	k := New(Options{Config: cfg, Source: f, Notifier: n})
	out := k.Once(t.Context())
	if out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	certs, err := pki.ParseCertificates(readFile(t, tb.CAFile))
	if err != nil || len(certs) != 2 || !certs[0].Equal(inter.cert) || !certs[1].Equal(root.cert) {
		t.Fatalf("CA file holds %d certificates (%v), want the intermediate then the root", len(certs), err)
	}
	crls := parseCRLs(readFile(t, tb.CRLFile))
	if len(crls) != 2 {
		t.Fatalf("CRL file holds %d CRLs, want 2 (one per level)", len(crls))
	}
	for i, ca := range []*testCA{inter, root} {
		if err := crls[i].CheckSignatureFrom(ca.cert); err != nil {
			t.Errorf("CRL %d is not signed by %s: %v", i, ca.cert.Subject.CommonName, err)
		}
	}
	if n.count() != 1 || n.sources[0] != "trust_bundle clients->nginx" {
		t.Errorf("notifications: %v", n.sources)
	}
	if st := DiskStatus(cfg, time.Now())[0]; st.State != StateOK || len(st.CAs) != 2 || st.CAs[1].CRLNextUpdate.IsZero() {
		t.Errorf("disk status = %+v", st)
	}

	// Nothing changed in Vault (but the listing order did): nothing is
	// rewritten and nobody is reloaded.
	before := string(readFile(t, tb.CAFile))
	f.crlOverride["int"], f.crlOverride["root-in-pki"] = pemOf(t, crls[0]), pemOf(t, crls[1])
	if out := k.Once(t.Context()); out[0].Err != nil || len(out[0].Result.Written) != 0 {
		t.Fatalf("unchanged refresh: %+v", out[0])
	}
	if string(readFile(t, tb.CAFile)) != before || n.count() != 1 {
		t.Error("an unchanged mount rewrote the bundle or notified")
	}
}

func pemOf(t *testing.T, crl *x509.RevocationList) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
}

// TestMissingLevelIsAnError: with only the intermediate's mount, the root
// (imported there without its key) has no CRL; the error says which CA
// and what to do, and nothing is written.
func TestMissingLevelIsAnError(t *testing.T) {
	f, _, _ := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int")
	k := New(Options{Config: cfg, Source: f})
	out := k.Once(t.Context())
	if out[0].Err == nil || !strings.Contains(out[0].Err.Error(), `no CRL for CA "test root"`) || !strings.Contains(out[0].Err.Error(), "add the mount that issued it") {
		t.Fatalf("err = %v", out[0].Err)
	}
	if _, err := os.Stat(tb.CAFile); err == nil {
		t.Error("a bundle missing a CRL level was written")
	}
	if st := k.Statuses()[0]; st.State != StateFailing || !strings.Contains(st.LastError, "test root") {
		t.Errorf("status = %+v", st)
	}
	// Without a crl_file there is nothing to miss.
	tb.CRLFile = ""
	cfg.TrustBundles[0] = tb
	if out := New(Options{Config: cfg, Source: f}).Once(t.Context()); out[0].Err != nil {
		t.Errorf("a CA-only bundle failed: %v", out[0].Err)
	}
}

// TestBadCRLNeverWritten: a CRL signed by another key, naming another
// issuer, or already expired is refused, and the files on disk stay.
func TestBadCRLNeverWritten(t *testing.T) {
	f, root, inter := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	k := New(Options{Config: cfg, Source: f})
	if out := k.Once(t.Context()); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	good := string(readFile(t, tb.CRLFile))
	impostor := newCA(t, "test intermediate", root, time.Now().Add(time.Hour)) // same name, other key
	expired := *inter
	expired.expired, expired.cached = true, nil
	tests := []struct {
		name string
		crl  []byte
		want string
	}{
		{"wrong key", impostor.crl(t), "not signed by the CA it names"},
		{"wrong issuer", root.crl(t), `names issuer "CN=test root"`},
		{"expired", expired.crl(t), "expired at"},
		{"garbage", []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), "parsing"},
		{"delta", inter.crlWith(t, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: []byte{2, 1, 1}}), "delta CRL"},
		{"unknown critical extension", inter.crlWith(t, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}, Critical: true, Value: []byte{5, 0}}), "critical extension 1.3.6.1.4.1.55555.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.crlOverride["int"] = tt.crl
			out := k.Once(t.Context())
			if out[0].Err == nil || !strings.Contains(out[0].Err.Error(), tt.want) || !strings.Contains(out[0].Err.Error(), `CRL of "test intermediate"`) {
				t.Fatalf("err = %v, want %q", out[0].Err, tt.want)
			}
			if string(readFile(t, tb.CRLFile)) != good {
				t.Error("a bad CRL replaced the good one")
			}
		})
	}
}

// TestRotationKeepsOldIssuer: during a CA rotation the mount has an old
// and a new intermediate; both are trusted, each with its CRL, so clients
// of either keep working. An expired issuer is dropped.
func TestRotationKeepsOldIssuer(t *testing.T) {
	f, root, inter := twoTier(t)
	next := newCA(t, "test intermediate 2", root, time.Now().Add(6*365*24*time.Hour))
	gone := newCA(t, "test intermediate 0", root, time.Now().Add(-time.Minute))
	f.mounts["pki_int"] = append(f.mounts["pki_int"], fakeIssuer{ref: "int2", ca: next, hasKey: true}, fakeIssuer{ref: "int0", ca: gone, hasKey: true})
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	if out := New(Options{Config: cfg, Source: f}).Once(t.Context()); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	certs, _ := pki.ParseCertificates(readFile(t, tb.CAFile))
	has := func(c *testCA) bool { return slices.ContainsFunc(certs, c.cert.Equal) }
	if len(certs) != 3 || !has(inter) || !has(next) || !has(root) || has(gone) {
		t.Errorf("CA file holds %d certificates; want old and new intermediate and the root, not the expired one", len(certs))
	}
	if n := len(parseCRLs(readFile(t, tb.CRLFile))); n != 3 {
		t.Errorf("%d CRLs, want 3", n)
	}
}

// TestRevocationNotifies: a new CRL (a revocation) rewrites the CRL file
// and notifies; an older CRL from a lagging node does not replace a newer
// one on disk.
func TestRevocationNotifies(t *testing.T) {
	f, _, inter := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	n := &notified{}
	k := New(Options{Config: cfg, Source: f, Notifier: n})
	k.Once(t.Context())
	inter.revoke(4242)
	if out := k.Once(t.Context()); out[0].Err != nil || !slices.Equal(out[0].Result.Written, []string{tb.CRLFile}) {
		t.Fatalf("refresh after a revocation: %+v", out[0])
	}
	if n.count() != 2 {
		t.Errorf("%d notifications, want 2", n.count())
	}
	crls := parseCRLs(readFile(t, tb.CRLFile))
	if len(crls[0].RevokedCertificateEntries) != 1 || crls[0].RevokedCertificateEntries[0].SerialNumber.Int64() != 4242 {
		t.Error("the new CRL does not list the revoked serial")
	}

	older := *inter
	older.number, older.revoked, older.cached = 0, nil, nil // an older CRL
	f.crlOverride["int"] = older.crl(t)
	out := k.Once(t.Context())
	if out[0].Err != nil || len(out[0].Result.Written) != 0 || n.count() != 2 {
		t.Errorf("an older CRL was written: %+v", out[0])
	}
}

// TestRoundFetchesEachMountOnce: two bundles over the same mounts cost
// one listing per mount per round, and Run calls passed after the first.
func TestRoundFetchesEachMountOnce(t *testing.T) {
	f, _, _ := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	tb2 := tb
	tb2.Name, tb2.CAFile, tb2.CRLFile = "apache-clients", tb.CAFile+".2", tb.CRLFile+".2"
	cfg.TrustBundles = append(cfg.TrustBundles, tb2)
	k := New(Options{Config: cfg, Source: f})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan struct{})
	var once sync.Once
	go k.Run(ctx, func() { once.Do(func() { close(ready) }) })
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("ready was not called")
	}
	for _, what := range []string{"issuers pki_int", "issuers pki", "crl pki_int", "crl pki"} {
		if n := f.count(what); n != 1 {
			t.Errorf("%s: %d requests for two bundles, want 1", what, n)
		}
	}
	for _, p := range []string{tb.CRLFile, tb2.CRLFile} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
}

func TestNextRefresh(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ca := func(this, next time.Duration) CAInfo {
		return CAInfo{CRLThisUpdate: now.Add(this), CRLNextUpdate: now.Add(next)}
	}
	tests := []struct {
		name     string
		interval time.Duration
		cas      []CAInfo
		want     time.Duration
	}{
		{"interval first", 5 * time.Minute, []CAInfo{ca(-time.Hour, 71*time.Hour)}, 5 * time.Minute},
		{"no CRLs", time.Hour, []CAInfo{{}}, time.Hour},
		// 72h life, issued 40h ago: two thirds is at +8h, before the 24h interval.
		{"two thirds of a CRL's life", 24 * time.Hour, []CAInfo{ca(-40*time.Hour, 32*time.Hour)}, 8 * time.Hour},
		{"earliest CRL wins", 24 * time.Hour, []CAInfo{ca(-40*time.Hour, 32*time.Hour), ca(-46*time.Hour, 26*time.Hour)}, 2 * time.Hour},
		// Already in its last third (Vault did not rebuild it): no tight
		// loop, the interval stands.
		{"late CRL keeps the interval", time.Hour, []CAInfo{ca(-60*time.Hour, 12*time.Hour)}, time.Hour},
		{"a CRL without a life is ignored", 24 * time.Hour, []CAInfo{ca(time.Hour, time.Hour)}, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextRefresh(now, tt.interval, tt.cas, 0.9); !got.Equal(now.Add(tt.want)) {
				t.Errorf("next refresh in %v, want %v", got.Sub(now), tt.want)
			}
		})
	}
}

// TestDiskStatus: status reads the files and says when a level lacks its
// CRL or a CRL is stale.
func TestDiskStatus(t *testing.T) {
	f, _, inter := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	if st := DiskStatus(cfg, time.Now())[0]; st.State != StateMissing {
		t.Errorf("before any refresh: %+v", st)
	}
	New(Options{Config: cfg, Source: f}).Once(t.Context())
	if st := DiskStatus(cfg, time.Now().Add(73*time.Hour))[0]; st.State != StateStale {
		t.Errorf("after the CRLs' NextUpdate: %+v", st)
	}
	crls := parseCRLs(readFile(t, tb.CRLFile))
	os.WriteFile(tb.CRLFile, pemOf(t, crls[1]), 0o644)
	st := DiskStatus(cfg, time.Now())[0]
	if st.State != StateIncomplete || st.CAs[0].Subject != inter.cert.Subject.CommonName || !st.CAs[0].CRLNextUpdate.IsZero() {
		t.Errorf("with the intermediate's CRL missing: %+v", st)
	}
}

// TestUnplaced: a bundle is in place once refreshed, or, when every
// refresh of this process failed, when the files an earlier run left are
// complete; never before its first attempt, nor with nothing on disk.
func TestUnplaced(t *testing.T) {
	f, _, _ := twoTier(t)
	mounts := f.mounts
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	k := New(Options{Config: cfg, Source: f})
	if got := k.Unplaced(); len(got) != 1 {
		t.Fatalf("before any attempt Unplaced = %v", got)
	}
	f.mu.Lock()
	f.mounts = map[string][]fakeIssuer{}
	f.mu.Unlock()
	k.pass(t.Context(), newRound(f, newMemo(), time.Now()), tb)
	if got := k.Unplaced(); len(got) != 1 || got[0].LastError == "" {
		t.Fatalf("with Vault failing and nothing on disk Unplaced = %+v", got)
	}
	f.mu.Lock()
	f.mounts = mounts
	f.mu.Unlock()
	k.pass(t.Context(), newRound(f, newMemo(), time.Now()), tb)
	if got := k.Unplaced(); len(got) != 0 {
		t.Fatalf("after a refresh Unplaced = %+v", got)
	}

	// A restart while Vault fails: the complete files on disk will do.
	f.mu.Lock()
	f.mounts = map[string][]fakeIssuer{}
	f.mu.Unlock()
	k2 := New(Options{Config: cfg, Source: f})
	k2.pass(t.Context(), newRound(f, newMemo(), time.Now()), tb)
	if got := k2.Unplaced(); len(got) != 0 {
		t.Errorf("complete files from an earlier run, Vault failing: Unplaced = %+v", got)
	}
	// ...but not a CRL file that lost a level.
	if err := os.WriteFile(tb.CRLFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := k2.Unplaced(); len(got) != 1 {
		t.Errorf("CRLs missing on disk, Vault failing: Unplaced = %+v", got)
	}
}

// TestCRLFileLimitHoldsTheLargestCRLs: the CRL file's cap fits n CRLs of
// the largest size the Vault client downloads, in PEM, so certkeeper
// never refuses to replace or read back a CRL file it wrote itself. The
// PEM size rule is checked against encoding/pem on small blocks, then
// applied to the largest.
func TestCRLFileLimitHoldsTheLargestCRLs(t *testing.T) {
	pemLen := func(n int) int {
		b64 := (n + 2) / 3 * 4
		return len("-----BEGIN X509 CRL-----\n") + b64 + (b64+63)/64 + len("-----END X509 CRL-----\n")
	}
	for _, n := range []int{1, 2, 3, 47, 48, 49, 1000, 4096} {
		if got := len(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: make([]byte, n)})); got != pemLen(n) {
			t.Fatalf("pem of %d bytes is %d long, the rule says %d", n, got, pemLen(n))
		}
	}
	for _, cas := range []int{1, 2, 5} {
		if need := int64(cas * pemLen(vault.MaxCRLSize)); crlFileLimit(cas) < need {
			t.Errorf("crlFileLimit(%d) = %d, below the %d that %d CRLs of %d bytes take", cas, crlFileLimit(cas), need, cas, vault.MaxCRLSize)
		}
	}
	if crlFileLimit(0) < crlFileLimit(1) {
		t.Error("a bundle whose CA file cannot be read gets no room for a CRL")
	}
}

// TestDiskStatusTrustsOnlyItsOwnState: the saved refresh state is shown
// only from a file certkeeper wrote; another's is refused, the refusal is
// each bundle's last error, and none of the planted state is shown.
func TestDiskStatusTrustsOnlyItsOwnState(t *testing.T) {
	cfg, _ := bundleConfig(t, "pki_int")
	path := statedir.Dir(cfg.StateDir).TrustState()
	os.MkdirAll(filepath.Dir(path), 0o700)
	os.WriteFile(path, []byte(`{"version":1,"bundles":[{"name":"clients","state":"ok","consecutive_failures":0,"last_error":"planted"}]}`), 0o600)
	if st := DiskStatus(cfg, time.Now())[0]; st.LastError != "planted" {
		t.Fatalf("its own file: %+v", st)
	}
	os.Chmod(path, 0o666)
	st := DiskStatus(cfg, time.Now())[0]
	if !strings.Contains(st.LastError, "refusing to read "+path) || !strings.Contains(st.LastError, "(mode 0666)") {
		t.Errorf("last error %q, want the refusal", st.LastError)
	}
}

// TestMigrateStateFinishesOldBundleJournals: a bundle's crash journal an
// older certkeeper left beside the trust state (trust/<bundle>.journal)
// is finished in place, within the bundle's files, and removed; new
// journals live in trust/bundles/.
func TestMigrateStateFinishesOldBundleJournals(t *testing.T) {
	cfg, tb := bundleConfig(t, "pki_int")
	dir := statedir.Dir(cfg.StateDir)
	os.MkdirAll(dir.Trust(), 0o700)
	os.WriteFile(tb.CAFile, []byte("old CAs"), 0o644)
	tmp := filepath.Join(filepath.Dir(tb.CAFile), "."+filepath.Base(tb.CAFile)+".certkeeper-tmp-3")
	os.WriteFile(tmp, []byte("new CAs"), 0o644)
	old := dir.Legacy().TrustJournal(tb.Name)
	os.WriteFile(old, []byte(`[{"from":"`+tmp+`","to":"`+tb.CAFile+`"}]`), 0o600)
	if errs := MigrateState(cfg); len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := readFile(t, tb.CAFile); string(got) != "new CAs" {
		t.Errorf("CA file %q, want the interrupted write finished", got)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("the old journal is still there")
	}
	if dir.TrustJournal(tb.Name) == old {
		t.Error("bundle journals did not move")
	}
}
