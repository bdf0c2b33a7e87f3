package sinks

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func set(dir string, key, cert string) []File {
	return []File{
		{Path: filepath.Join(dir, "web.key"), Data: []byte(key), Mode: 0o600, UID: -1, GID: -1},
		{Path: filepath.Join(dir, "web.crt"), Data: []byte(cert), Mode: 0o644, UID: -1, GID: -1},
	}
}

// openTestDir walks to dir for a test that calls the writer's steps one by
// one.
func openTestDir(t *testing.T, ds dirs, dir string) *dir {
	t.Helper()
	d, err := ds.open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func perm(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func TestWriteSetModesIgnoreUmask(t *testing.T) {
	dir := t.TempDir() // before the umask: a 0777 directory would be refused
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	if _, err := WriteSet(filepath.Join(dir, "j"), set(dir, "KEY1", "CERT1")); err != nil {
		t.Fatal(err)
	}
	if got := perm(t, filepath.Join(dir, "web.key")); got != 0o600 {
		t.Errorf("key mode under umask 000 = %o, want 600", got)
	}
	if got := perm(t, filepath.Join(dir, "web.crt")); got != 0o644 {
		t.Errorf("cert mode = %o, want 644", got)
	}
}

func TestWriteSetSkipsUnchanged(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	if _, err := WriteSet(journal, set(dir, "KEY1", "CERT1")); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "web.key")
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.Chtimes(keyPath, past, past)

	change, err := WriteSet(journal, set(dir, "KEY1", "CERT1"))
	if err != nil {
		t.Fatal(err)
	}
	if change.Changed() {
		t.Errorf("an identical set was rewritten: %v", change.Written)
	}
	info, _ := os.Stat(keyPath)
	if !info.ModTime().Equal(past) {
		t.Errorf("unchanged key was touched: mtime %v, want %v", info.ModTime(), past)
	}
}

func TestWriteSetRepairsMode(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	WriteSet(journal, set(dir, "KEY1", "CERT1"))
	keyPath := filepath.Join(dir, "web.key")
	os.Chmod(keyPath, 0o644)

	change, err := WriteSet(journal, set(dir, "KEY1", "CERT1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := perm(t, keyPath); got != 0o600 {
		t.Errorf("world-readable key left at %o, want 600", got)
	}
	if len(change.Written) != 1 || change.Written[0] != keyPath {
		t.Errorf("written = %v, want only the key", change.Written)
	}
}

func TestWriteSetRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	os.Symlink(victim, filepath.Join(dir, "web.key"))

	_, err := WriteSet(filepath.Join(dir, "j"), set(dir, "KEY1", "CERT1"))
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("err = %v, want a refusal naming the symlink", err)
	}
	if got := mustRead(t, victim); got != "precious" {
		t.Errorf("symlink target was overwritten: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "web.crt")); err == nil {
		t.Errorf("the certificate was written although its key could not be")
	}
}

func TestRollback(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	WriteSet(journal, set(dir, "KEY1", "CERT1"))
	files := append(set(dir, "KEY2", "CERT2"), File{Path: filepath.Join(dir, "new.pem"), Data: []byte("NEW"), Mode: 0o644, UID: -1, GID: -1})
	change, err := WriteSet(journal, files)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "web.key")); got != "KEY2" {
		t.Fatalf("key = %q after write", got)
	}
	if err := (Sets{}).Rollback(change); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "web.key")); got != "KEY1" {
		t.Errorf("key after rollback = %q, want KEY1", got)
	}
	if got := mustRead(t, filepath.Join(dir, "web.crt")); got != "CERT1" {
		t.Errorf("cert after rollback = %q, want CERT1", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.pem")); err == nil {
		t.Errorf("a file the change created survived the rollback")
	}
	if got := perm(t, filepath.Join(dir, "web.key")); got != 0o600 {
		t.Errorf("key mode after rollback = %o", got)
	}
}

func TestWriteFailureLeavesOldSet(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores directory permissions; the read-only case is proven
		// with a file in the way instead.
		dir := t.TempDir()
		journal := filepath.Join(dir, "j")
		WriteSet(journal, set(dir, "KEY1", "CERT1"))
		files := append(set(dir, "KEY2", "CERT2"), File{Path: filepath.Join(dir, "web.crt", "oops"), Data: []byte("x"), Mode: 0o644, UID: -1, GID: -1})
		if _, err := WriteSet(journal, files); err == nil {
			t.Fatal("write under a regular file succeeded")
		}
		assertOldSet(t, dir)
		return
	}
	dir := t.TempDir()
	journal := filepath.Join(t.TempDir(), "j")
	WriteSet(journal, set(dir, "KEY1", "CERT1"))
	os.Chmod(dir, 0o555)
	defer os.Chmod(dir, 0o755)
	if _, err := WriteSet(journal, set(dir, "KEY2", "CERT2")); err == nil {
		t.Fatal("write to a read-only directory succeeded")
	}
	assertOldSet(t, dir)
}

func assertOldSet(t *testing.T, dir string) {
	t.Helper()
	if got := mustRead(t, filepath.Join(dir, "web.key")); got != "KEY1" {
		t.Errorf("key = %q, want the old KEY1", got)
	}
	if got := mustRead(t, filepath.Join(dir, "web.crt")); got != "CERT1" {
		t.Errorf("cert = %q, want the old CERT1", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), tempMarker) {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
}

// TestRecoverFinishesInterruptedSet simulates a crash after the journal and
// the first rename: the key is new, the certificate still old. Recover must
// complete the set so key and certificate match again.
func TestRecoverFinishesInterruptedSet(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	WriteSet(journal, set(dir, "KEY1", "CERT1"))

	files := set(dir, "KEY2", "CERT2")
	ds := dirs{}
	defer ds.close()
	var renames []rename
	for _, f := range files {
		tmp, err := writeSynced(openTestDir(t, ds, dir), f)
		if err != nil {
			t.Fatal(err)
		}
		renames = append(renames, rename{From: tmp, To: f.Path})
	}
	if err := writeJournal(ds, journal, renames); err != nil {
		t.Fatal(err)
	}
	os.Rename(renames[0].From, renames[0].To) // the crash happens here

	if err := Recover(journal, []string{files[0].Path, files[1].Path}); err != nil {
		t.Fatal(err)
	}
	key, cert := mustRead(t, files[0].Path), mustRead(t, files[1].Path)
	if key != "KEY2" || cert != "CERT2" {
		t.Errorf("after recovery key=%q cert=%q, want the new set", key, cert)
	}
	if _, err := os.Stat(journal); err == nil {
		t.Error("journal left after recovery")
	}
}

func TestRecoverRemovesStrayTemps(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "web.key")
	ds := dirs{}
	defer ds.close()
	tmp, err := writeSynced(openTestDir(t, ds, dir), File{Path: dest, Data: []byte("half"), Mode: 0o600, UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := Recover(filepath.Join(dir, "j"), []string{dest}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err == nil {
		t.Errorf("stray temp %s not removed", tmp)
	}
}

func TestRecoverRejectsForeignJournal(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	os.WriteFile(journal, []byte("not json"), 0o600)
	if err := Recover(journal, nil); err == nil {
		t.Fatal("a garbage journal was accepted")
	}
}

// TestRecoverReadsTheJournalFormat: a journal an earlier certkeeper left
// behind, written here by hand in the on-disk format, is finished by
// Recover. Renaming a JSON field would strand the sets of every host that
// crashed mid-write before an upgrade.
func TestRecoverReadsTheJournalFormat(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "web.journal")
	key, crt := filepath.Join(dir, "web.key"), filepath.Join(dir, "web.crt")
	os.WriteFile(key, []byte("KEY2"), 0o600) // renamed before the crash
	os.WriteFile(crt, []byte("CERT1"), 0o644)
	tmp := filepath.Join(dir, ".web.crt"+tempMarker+"123")
	os.WriteFile(tmp, []byte("CERT2"), 0o644)
	text := fmt.Sprintf(`[{"from":%q,"to":%q},{"from":%q,"to":%q}]`, filepath.Join(dir, ".web.key"+tempMarker+"456"), key, tmp, crt)
	if err := os.WriteFile(journal, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Recover(journal, []string{key, crt}); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, key) + "/" + mustRead(t, crt); got != "KEY2/CERT2" {
		t.Errorf("after recovery %s, want KEY2/CERT2", got)
	}
	if _, err := os.Stat(journal); err == nil {
		t.Error("journal left after recovery")
	}
}

func TestReadFileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "real"), []byte("x"), 0o600)
	os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link"))
	if _, err := ReadFile(filepath.Join(dir, "link")); err == nil {
		t.Error("ReadFile followed a symlink")
	}
	if b, err := ReadFile(filepath.Join(dir, "real")); err != nil || !bytes.Equal(b, []byte("x")) {
		t.Errorf("ReadFile(real) = %q, %v", b, err)
	}
}

// TestRecoverSets: many sets in one directory are swept together; a set
// whose journal cannot be trusted gets its own error and keeps its temp
// files, since they may be what the journal names.
func TestRecoverSets(t *testing.T) {
	dir := t.TempDir()
	state := t.TempDir()
	touch := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	strayA := touch(".a.key" + tempMarker + "1")
	strayB := touch(".b.crt" + tempMarker + "2")
	keptC := touch(".c.key" + tempMarker + "3")
	foreign := touch(".d.key" + tempMarker + "4")
	badJournal := filepath.Join(state, "c.journal")
	os.WriteFile(badJournal, []byte("not json"), 0o600)

	errs := RecoverSets([]Set{
		{Journal: filepath.Join(state, "a.journal"), Destinations: []string{filepath.Join(dir, "a.key"), filepath.Join(dir, "a.crt")}},
		{Journal: filepath.Join(state, "b.journal"), Destinations: []string{filepath.Join(dir, "b.key"), filepath.Join(dir, "b.crt")}},
		{Journal: badJournal, Destinations: []string{filepath.Join(dir, "c.key")}},
	})
	if errs[0] != nil || errs[1] != nil {
		t.Errorf("errors for good sets: %v, %v", errs[0], errs[1])
	}
	if errs[2] == nil || !strings.Contains(errs[2].Error(), "not certkeeper's") {
		t.Errorf("bad journal: err = %v", errs[2])
	}
	for _, p := range []string{strayA, strayB} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("stray %s not removed", p)
		}
	}
	for _, p := range []string{keptC, foreign} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}
