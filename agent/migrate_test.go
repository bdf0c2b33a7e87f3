package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/statedir"
)

// toLegacy puts what a certificate's pass wrote back where certkeeper up
// to 170922d kept it: the record at the top of state_dir, no certs/.
func toLegacy(t *testing.T, cfg *config.Config, names ...string) {
	t.Helper()
	dir := statedir.Dir(cfg.StateDir)
	for _, n := range names {
		if err := os.Rename(dir.CertificateRecord(n), dir.Legacy().CertificateRecord(n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir.TrustBundles(), dir.Trust(), dir.Services(), dir.Certs()} {
		os.Remove(d)
	}
}

// TestMigrationKeepsCertificates: certificates whose state an older
// certkeeper left in the flat layout are kept after the migration, Vault
// not asked; the records are in certs/, none left at the top; a second
// migration does nothing.
func TestMigrationKeepsCertificates(t *testing.T) {
	cfg := testConfig(t, "web", "services", "api")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	for _, c := range cfg.Certificates {
		if _, err := a.ensure(t.Context(), c, false); err != nil {
			t.Fatal(err)
		}
	}
	toLegacy(t, cfg, "web", "services", "api")

	moved, errs := MigrateState(cfg)
	if len(errs) > 0 || len(moved) != 3 {
		t.Fatalf("moved %v, errors %v; want the 3 records moved", moved, errs)
	}
	dir := statedir.Dir(cfg.StateDir)
	for _, c := range cfg.Certificates {
		if _, err := os.Stat(dir.Legacy().CertificateRecord(c.Name)); err == nil {
			t.Errorf("%s: the old record is still there", c.Name)
		}
		res, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), c, false)
		if err != nil || res.Action != Kept {
			t.Errorf("%s after migration: %+v, %v; want kept", c.Name, res, err)
		}
	}
	if n := len(fv.requests); n != 3 {
		t.Errorf("vault asked %d times in all, want the 3 first issuances only", n)
	}
	if moved, errs := MigrateState(cfg); len(moved)+len(errs) > 0 {
		t.Errorf("a second migration: moved %v, errors %v", moved, errs)
	}
	entries, _ := os.ReadDir(cfg.StateDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "ca certs rotations services superseded trust" {
		t.Errorf("state_dir holds %q, want only the per-kind directories", got)
	}
}

// TestMigrationFinishesAnOldJournal: an older certkeeper crashed between
// two renames of a set (key new, certificate old, journal at the top of
// state_dir). The migration finishes that set within its old files (the
// record at its old place is one of them), then moves the record: the
// new certificate is kept, matching its key, Vault not asked.
func TestMigrationFinishesAnOldJournal(t *testing.T) {
	cfg := testConfig(t, "web")
	c := cfg.Certificates[0]
	fv := newFakeVault(t)
	if _, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), c, true); err != nil {
		t.Fatal(err)
	}
	newSet := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain)
	dir := statedir.Dir(cfg.StateDir)
	newRecord, _ := os.ReadFile(dir.CertificateRecord("web"))
	// The set as the crash left it: every new file at a temp name beside
	// its destination, the old key already replaced by the new one.
	var renames []map[string]string
	for _, p := range []string{c.Files.Cert, c.Files.Fullchain, dir.CertificateRecord("web")} {
		dest := p
		if p == dir.CertificateRecord("web") {
			dest = dir.Legacy().CertificateRecord("web")
		}
		tmp := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".certkeeper-tmp-9")
		if err := os.Rename(p, tmp); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(dest, []byte("old "+filepath.Base(dest)), 0o600)
		renames = append(renames, map[string]string{"from": tmp, "to": dest})
	}
	journal, _ := json.Marshal(renames)
	os.WriteFile(dir.Legacy().CertificateJournal("web"), journal, 0o600)
	toLegacy(t, cfg)

	if moved, errs := MigrateState(cfg); len(errs) > 0 || len(moved) != 1 {
		t.Fatalf("moved %v, errors %v", moved, errs)
	}
	if got := readAll(t, c.Files.Key, c.Files.Cert, c.Files.Fullchain); got != newSet {
		t.Error("the interrupted set was not finished")
	}
	if got, _ := os.ReadFile(dir.CertificateRecord("web")); string(got) != string(newRecord) {
		t.Errorf("record after migration: %q", got)
	}
	res, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), c, false)
	if err != nil || res.Action != Kept || fv.count("web.example.internal") != 1 {
		t.Errorf("after migration: %+v, %v, %d issuances; want kept, 1", res, err, fv.count("web.example.internal"))
	}
	entries, _ := os.ReadDir(cfg.StateDir)
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("left at the top of state_dir: %s", e.Name())
		}
	}
}

// TestMigrationLeavesOthersRecords: an old record another user owns (or
// one others may write) is not moved into certkeeper's state: it is
// reported and stays where it is, and the certificate gets a new one.
func TestMigrationLeavesOthersRecords(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	if _, err := New(Options{Config: cfg, Issuer: fv}).ensure(t.Context(), cfg.Certificates[0], false); err != nil {
		t.Fatal(err)
	}
	toLegacy(t, cfg, "web")
	old := statedir.Dir(cfg.StateDir).Legacy().CertificateRecord("web")
	os.Chmod(old, 0o666)
	moved, errs := MigrateState(cfg)
	if len(moved) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "refusing to read "+old) {
		t.Fatalf("moved %v, errors %v; want the record refused", moved, errs)
	}
	if _, err := os.Stat(old); err != nil {
		t.Error("the refused record was removed")
	}
	if _, err := os.Stat(statedir.Dir(cfg.StateDir).CertificateRecord("web")); err == nil {
		t.Error("the refused record was moved into certs/")
	}
}
