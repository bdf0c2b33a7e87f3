package statedir

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLayout pins the on-disk paths: a daemon upgraded in place must find
// the records, journals and socket the previous version left, and a change
// here needs a migration (see Legacy).
func TestLayout(t *testing.T) {
	d := Dir("/var/lib/certkeeper")
	for got, want := range map[string]string{
		d.Certs():                                  "/var/lib/certkeeper/certs",
		d.CertificateRecord("web"):                 "/var/lib/certkeeper/certs/web.json",
		d.CertificateJournal("web"):                "/var/lib/certkeeper/certs/web.journal",
		d.Services():                               "/var/lib/certkeeper/services",
		d.ServicesState():                          "/var/lib/certkeeper/services/status.json",
		d.ServicesJournal():                        "/var/lib/certkeeper/services/status.journal",
		d.Trust():                                  "/var/lib/certkeeper/trust",
		d.TrustState():                             "/var/lib/certkeeper/trust/status.json",
		d.TrustStateJournal():                      "/var/lib/certkeeper/trust/status.journal",
		d.TrustBundles():                           "/var/lib/certkeeper/trust/bundles",
		d.TrustJournal("clients"):                  "/var/lib/certkeeper/trust/bundles/clients.journal",
		d.ControlSocket():                          "/var/lib/certkeeper/control.sock",
		d.Rotations():                              "/var/lib/certkeeper/rotations",
		d.PendingRotations():                       "/var/lib/certkeeper/rotations/pending.json",
		d.PendingRotationsJournal():                "/var/lib/certkeeper/rotations/pending.journal",
		d.Superseded():                             "/var/lib/certkeeper/superseded",
		d.SupersededCertificate("web", "1a:2b:03"): "/var/lib/certkeeper/superseded/web.1a2b03.json",
		d.SupersededJournal("web", "1a:2b:03"):     "/var/lib/certkeeper/superseded/web.1a2b03.journal",
		d.CA():                                     "/var/lib/certkeeper/ca",
		d.IssuersSeen():                            "/var/lib/certkeeper/ca/issuers.json",
		d.IssuersSeenJournal():                     "/var/lib/certkeeper/ca/issuers.journal",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

// TestLegacyLayout pins the flat layout of certkeeper up to 170922d, which
// the migration reads.
func TestLegacyLayout(t *testing.T) {
	l := Dir("/var/lib/certkeeper").Legacy()
	for got, want := range map[string]string{
		l.CertificateRecord("web"):  "/var/lib/certkeeper/web.json",
		l.CertificateJournal("web"): "/var/lib/certkeeper/web.journal",
		l.ServicesState():           "/var/lib/certkeeper/services.json",
		l.TrustJournal("clients"):   "/var/lib/certkeeper/trust/clients.journal",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

// TestNoNameReachesAnotherKind: whatever a certificate or bundle is named
// (the config only refuses slashes and a leading dot), its files stay in
// its own kind's directory and are never another kind's file.
func TestNoNameReachesAnotherKind(t *testing.T) {
	d := Dir("/s")
	fixed := map[string]bool{d.ServicesState(): true, d.ServicesJournal(): true, d.TrustState(): true, d.TrustStateJournal(): true, d.ControlSocket(): true}
	for _, name := range []string{"services", "status", "trust", "certs", "bundles", "control", "control.sock", "web", "web.json", "a.journal"} {
		for _, p := range []string{d.CertificateRecord(name), d.CertificateJournal(name), d.TrustJournal(name)} {
			if fixed[p] {
				t.Errorf("name %q reaches %s", name, p)
			}
		}
		if filepath.Dir(d.CertificateRecord(name)) != d.Certs() || filepath.Dir(d.TrustJournal(name)) != d.TrustBundles() ||
			filepath.Dir(d.SupersededCertificate(name, "1a:2b")) != d.Superseded() || filepath.Dir(d.SupersededJournal(name, "1a:2b")) != d.Superseded() {
			t.Errorf("name %q leaves its kind's directory", name)
		}
		for _, other := range []string{"services", "status", "trust", "web", "web.json", "a.journal", "a"} {
			if other != name && (d.CertificateRecord(name) == d.CertificateJournal(other) || d.CertificateRecord(name) == d.CertificateRecord(other)) {
				t.Errorf("certificates %q and %q share a file", name, other)
			}
		}
	}
}

// TestEnsureMakesThePrivateLayout: every directory of the layout exists
// afterwards, mode 0700, whatever the umask.
func TestEnsureMakesThePrivateLayout(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "state"))
	if err := d.Ensure(); err != nil {
		t.Fatal(err)
	}
	if err := d.Ensure(); err != nil {
		t.Fatalf("a second Ensure: %v", err)
	}
	for _, dir := range []string{string(d), d.Certs(), d.Services(), d.Trust(), d.TrustBundles(), d.Rotations(), d.Superseded()} {
		info, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !info.IsDir() || info.Mode().Perm() != Mode {
			t.Errorf("%s: %v, want a directory, mode %o", dir, info.Mode(), Mode)
		}
	}
}
