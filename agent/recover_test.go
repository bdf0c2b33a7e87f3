package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/certkeeper/certkeeper/internal/statedir"
)

// TestCrashLeftoversSweptAtStart: temp files a crashed process left beside
// any certificate's files are gone after the first pass, while a temp file
// of something certkeeper does not write is left alone.
func TestCrashLeftoversSweptAtStart(t *testing.T) {
	cfg := testConfig(t, "a", "b")
	dir := filepath.Dir(cfg.Certificates[0].Files.Cert)
	strays := []string{".a.key.certkeeper-tmp-123", ".b.crt.certkeeper-tmp-456", ".b.fullchain.pem.certkeeper-tmp-7"}
	foreign := ".other.key.certkeeper-tmp-789"
	for _, n := range append(strays, foreign) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a := New(Options{Config: cfg, Issuer: newFakeVault(t)})
	for _, o := range a.Once(t.Context()) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
	}
	for _, n := range strays {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			t.Errorf("stray temp %s is still there", n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, foreign)); err != nil {
		t.Errorf("a temp file certkeeper does not own was removed: %v", err)
	}
}

// TestJournalFinishedOnEveryPass: a set write that failed half-way in this
// process (after the sweep at start) is finished by the certificate's next
// pass, before its files are read.
func TestJournalFinishedOnEveryPass(t *testing.T) {
	cfg := testConfig(t, "web")
	c := cfg.Certificates[0]
	a := New(Options{Config: cfg, Issuer: newFakeVault(t)})
	if _, err := a.ensure(t.Context(), c, false); err != nil {
		t.Fatal(err)
	}
	// A key renamed into place, the certificate's rename still pending:
	// what a failed rename leaves, with the journal naming both.
	held := readAll(t, c.Files.Key, c.Files.Cert)
	keyTmp := filepath.Join(filepath.Dir(c.Files.Key), ".web.key.certkeeper-tmp-1")
	certTmp := filepath.Join(filepath.Dir(c.Files.Cert), ".web.crt.certkeeper-tmp-2")
	key, _ := os.ReadFile(c.Files.Key)
	cert, _ := os.ReadFile(c.Files.Cert)
	os.WriteFile(keyTmp, key, 0o600)
	os.WriteFile(certTmp, cert, 0o644)
	os.Remove(c.Files.Cert)
	journal, _ := json.Marshal([]map[string]string{{"from": keyTmp, "to": c.Files.Key}, {"from": certTmp, "to": c.Files.Cert}})
	if err := os.WriteFile(statedir.Dir(cfg.StateDir).CertificateJournal(c.Name), journal, 0o600); err != nil {
		t.Fatal(err)
	}

	res, err := a.ensure(t.Context(), c, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Kept {
		t.Errorf("action %s, want kept: the journal should have put the certificate back before the pass looked", res.Action)
	}
	if got := readAll(t, c.Files.Key, c.Files.Cert); got != held {
		t.Error("files differ from the set the journal named")
	}
	if _, err := os.Stat(statedir.Dir(cfg.StateDir).CertificateJournal(c.Name)); err == nil {
		t.Error("journal left behind")
	}
}
