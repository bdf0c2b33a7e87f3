package statedir

import "testing"

// TestLayout pins today's on-disk paths: a daemon upgraded in place must
// find the records, journals and socket the previous version left.
func TestLayout(t *testing.T) {
	d := Dir("/var/lib/certkeeper")
	for got, want := range map[string]string{
		d.CertificateRecord("web"):                 "/var/lib/certkeeper/web.json",
		d.CertificateJournal("web"):                "/var/lib/certkeeper/web.journal",
		d.ServicesState():                          "/var/lib/certkeeper/services.json",
		d.ServicesJournal():                        "/var/lib/certkeeper/services.journal",
		d.Trust():                                  "/var/lib/certkeeper/trust",
		d.TrustState():                             "/var/lib/certkeeper/trust/status.json",
		d.TrustStateJournal():                      "/var/lib/certkeeper/trust/status.journal",
		d.TrustJournal("clients"):                  "/var/lib/certkeeper/trust/clients.journal",
		d.ControlSocket():                          "/var/lib/certkeeper/control.sock",
		d.Superseded():                             "/var/lib/certkeeper/superseded",
		d.SupersededCertificate("web", "1a:2b:03"): "/var/lib/certkeeper/superseded/web.1a2b03.json",
		d.SupersededJournal("web", "1a:2b:03"):     "/var/lib/certkeeper/superseded/web.1a2b03.journal",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}
