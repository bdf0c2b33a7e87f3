package trust

import (
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/notice"
)

// observed records what the keeper reports for metrics.
type observed struct {
	mu  sync.Mutex
	cas map[string][]CAInfo
}

var _ Observer = (*observed)(nil)

func (o *observed) CRLNextUpdate(string, string, time.Time) {}
func (o *observed) BundleCAs(bundle string, cas []CAInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cas == nil {
		o.cas = map[string][]CAInfo{}
	}
	o.cas[bundle] = cas
}

func (n *notified) lastNotice(t *testing.T) notice.Notice {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.notices) == 0 {
		t.Fatal("no notice")
	}
	return n.notices[len(n.notices)-1]
}

// TestBundleChangeNotices: what a bundle change tells the services. The
// first write and a new CA are urgent (clients holding certificates from
// it are refused until servers load it); a new CRL and a CA leaving are
// routine, and must be loaded before the CRLs servers hold run out.
func TestBundleChangeNotices(t *testing.T) {
	f, root, inter := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	n := &notified{}
	k := New(Options{Config: cfg, Source: f, Notifier: n})
	k.Once(t.Context())
	first := n.lastNotice(t)
	if first.Kind != notice.TrustBundle || first.Name != "clients" || first.Reason != notice.CAAdded || !first.Urgent || len(first.Added) != 2 ||
		first.Outputs["ca_file"] != tb.CAFile || first.Outputs["crl_file"] != tb.CRLFile || len(first.Files) != 2 {
		t.Errorf("first write: %+v", first)
	}

	oldCRLs := parseCRLs(readFile(t, tb.CRLFile))
	inter.revoke(77)
	k.Once(t.Context())
	refresh := n.lastNotice(t)
	want := oldCRLs[0].NextUpdate.Add(-oldCRLs[0].NextUpdate.Sub(oldCRLs[0].ThisUpdate) / 10)
	if refresh.Reason != notice.TrustRefresh || refresh.Urgent || !refresh.Deadline.Equal(want) || len(refresh.Added)+len(refresh.Removed) != 0 || len(refresh.CAs) != 2 {
		t.Errorf("new CRL: %+v; want routine with deadline %v", refresh, want)
	}

	next := newCA(t, "test intermediate 2", root, time.Now().Add(5*365*24*time.Hour))
	f.mounts["pki_int"] = append(f.mounts["pki_int"], fakeIssuer{ref: "int-2", ca: next, hasKey: true})
	// The keeper lists a mount's issuers once per issuersTTL; the agent's
	// issuer listing saw the new one, and says so.
	k.IssuersChanged("pki_int")
	if at, queued := k.queue.When(tb.Name); !queued || at.After(time.Now()) {
		t.Errorf("after IssuersChanged the bundle is due at %v (queued %v), want now", at, queued)
	}
	k.Once(t.Context())
	added := n.lastNotice(t)
	if added.Reason != notice.CAAdded || !added.Urgent || len(added.Added) != 1 || added.Added[0].Subject != "test intermediate 2" || !added.Deadline.IsZero() {
		t.Errorf("new intermediate: %+v", added)
	}

	f.mounts["pki_int"] = []fakeIssuer{{ref: "int-2", ca: next, hasKey: true}, {ref: "root-in-int", ca: root}}
	k.IssuersChanged("pki_int")
	k.Once(t.Context())
	removed := n.lastNotice(t)
	if removed.Reason != notice.CARemoved || removed.Urgent || len(removed.Removed) != 1 || removed.Removed[0].Subject != "test intermediate" {
		t.Errorf("intermediate gone: %+v", removed)
	}
}

// TestTrustedSince: when each CA entered each bundle is kept across a
// restart, a new CA starts its own clock, and the agent's question (how
// long has this host trusted CA X for mount M) takes the latest over the
// bundles that carry M.
func TestTrustedSince(t *testing.T) {
	f, root, inter := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	t1 := time.Now().Add(-48 * time.Hour)
	clock := t1
	obs := &observed{}
	k := New(Options{Config: cfg, Source: f, Now: func() time.Time { return clock }, Observer: obs})
	if since, covered := k.TrustedSince("pki_int", inter.cert); !covered || !since.IsZero() {
		t.Errorf("before any refresh: since %v covered %v, want covered and not yet", since, covered)
	}
	k.Once(t.Context())
	if since, covered := k.TrustedSince("pki_int", inter.cert); !covered || !since.Equal(t1) {
		t.Errorf("after the first refresh: since %v covered %v, want %v", since, covered, t1)
	}
	if _, covered := k.TrustedSince("pki_servers", inter.cert); covered {
		t.Error("a mount no bundle takes counts as covered")
	}

	// A restart a day later, with a second bundle over pki_int: a new
	// keeper reads what the old one saved for the first bundle; the second
	// takes every CA in now, so for pki_int this host trusts the old
	// intermediate since now too (the latest over the bundles).
	t2 := t1.Add(24 * time.Hour)
	clock = t2
	tb2 := tb
	tb2.Name, tb2.Mounts, tb2.CAFile, tb2.CRLFile = "int-only", []string{"pki_int"}, tb.CAFile+".2", ""
	cfg.TrustBundles = append(cfg.TrustBundles, tb2)
	next := newCA(t, "test intermediate 2", root, time.Now().Add(5*365*24*time.Hour))
	f.mounts["pki_int"] = append(f.mounts["pki_int"], fakeIssuer{ref: "int-2", ca: next, hasKey: true})
	k = New(Options{Config: cfg, Source: f, Now: func() time.Time { return clock }, Observer: obs})
	k.Once(t.Context())
	if since, _ := k.TrustedSince("pki_int", inter.cert); !since.Equal(t2) {
		t.Errorf("the old intermediate is trusted for pki_int since %v, want %v (when the second bundle took it)", since, t2)
	}
	if ca := k.Statuses()[0].CAs; ca[0].Subject != "test intermediate" || !ca[0].TrustedSince.Equal(t1) {
		t.Errorf("after a restart the first bundle holds %+v, want the old intermediate since %v", ca[0], t1)
	}
	if since, _ := k.TrustedSince("pki_int", next.cert); !since.Equal(t2) {
		t.Errorf("the new intermediate is trusted since %v, want %v", since, t2)
	}
	if since, _ := k.TrustedSince("pki", root.cert); !since.Equal(t1) {
		t.Errorf("the root (in one bundle of pki) since %v, want %v", since, t1)
	}
	for _, st := range DiskStatus(cfg, clock) {
		for _, ca := range st.CAs {
			if ca.TrustedSince.IsZero() || ca.Serial == "" {
				t.Errorf("status of %s: %+v lacks serial or trusted_since", st.Name, ca)
			}
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if got := obs.cas["int-only"]; len(got) != 3 || got[len(got)-1].TrustedSince.IsZero() {
		t.Errorf("metrics saw %+v for int-only, want three CAs with their times", got)
	}
}

// TestTrustedSinceNeedsEveryBundle: a CA one bundle of the mount holds
// and another does not (yet) is not trusted by this host: a server
// reading the other bundle refuses its clients.
func TestTrustedSinceNeedsEveryBundle(t *testing.T) {
	_, _, inter := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int")
	tb2 := tb
	tb2.Name = "other"
	cfg.TrustBundles = append(cfg.TrustBundles, tb2)
	k := New(Options{Config: cfg})
	info := caInfo(inter.cert, nil)
	info.TrustedSince = time.Now().Add(-time.Hour)
	k.status["clients"] = &Status{Name: "clients", CAs: []CAInfo{info}}
	k.status["other"] = &Status{Name: "other"}
	if since, covered := k.TrustedSince("pki_int", inter.cert); !covered || !since.IsZero() {
		t.Errorf("held by one of two bundles: since %v, want not trusted", since)
	}
	k.status["other"].CAs = []CAInfo{info}
	if since, _ := k.TrustedSince("pki_int", inter.cert); !since.Equal(info.TrustedSince) {
		t.Errorf("held by both: since %v, want %v", since, info.TrustedSince)
	}
}
