package sinks

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOurs: a file just written by WriteSet is recognised as certkeeper's
// own; any change by someone else (mode, content, replacement, deletion)
// is not.
func TestOurs(t *testing.T) {
	dir := t.TempDir()
	files := set(dir, "KEY1", "CERT1")
	if _, err := WriteSet(filepath.Join(dir, "j"), files); err != nil {
		t.Fatal(err)
	}
	key, cert := files[0].Path, files[1].Path
	if !Ours(key) || !Ours(cert) {
		t.Fatal("files WriteSet just wrote are not recognised as ours")
	}
	if Ours(filepath.Join(dir, "never-written")) {
		t.Error("a file we never wrote counts as ours")
	}
	os.Chmod(key, 0o644)
	if Ours(key) {
		t.Error("a key someone made world-readable still counts as ours")
	}
	os.WriteFile(cert+".new", []byte("CERT1"), 0o644)
	os.Rename(cert+".new", cert)
	if Ours(cert) {
		t.Error("a certificate replaced by someone else (same bytes, new inode) counts as ours")
	}
	if _, err := WriteSet(filepath.Join(dir, "j"), files); err != nil {
		t.Fatal(err)
	}
	if !Ours(key) {
		t.Error("the repaired key is not ours again")
	}
	os.Remove(key)
	if Ours(key) {
		t.Error("a deleted key counts as ours")
	}
}

// TestRollbackRemovalIsOurs: a file a rollback removed (its change had
// created it) is known as this process's doing while it stays absent, so
// the output watcher does not take the deletion for someone else's; once
// anyone creates it again, it is not ours.
func TestRollbackRemovalIsOurs(t *testing.T) {
	dir := t.TempDir()
	files := set(dir, "KEY1", "CERT1")
	change, err := WriteSet(filepath.Join(dir, "j"), files)
	if err != nil {
		t.Fatal(err)
	}
	if err := (Sets{}).Rollback(change); err != nil {
		t.Fatal(err)
	}
	key := files[0].Path
	if !Ours(key) {
		t.Error("the key the rollback removed is not known as our own removal")
	}
	os.WriteFile(key, []byte("someone's"), 0o600)
	if Ours(key) {
		t.Error("a file someone created where the rollback removed ours counts as ours")
	}
}

// TestRolledBackUntilReapplied: a set is rolled back from its Rollback
// until its Reapply; a Rollback that was refused (the previous file could
// not be read, so the new set stays) does not count.
func TestRolledBackUntilReapplied(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	WriteSet(journal, set(dir, "KEY1", "CERT1"))
	change, err := WriteSet(journal, set(dir, "KEY2", "CERT2"))
	if err != nil {
		t.Fatal(err)
	}
	if RolledBack(journal) {
		t.Fatal("rolled back before any rollback")
	}
	if err := (Sets{}).Rollback(change); err != nil {
		t.Fatal(err)
	}
	if !RolledBack(journal) || RolledBack(filepath.Join(dir, "other")) {
		t.Errorf("after the rollback: %v (other set: %v), want true (false)", RolledBack(journal), RolledBack(filepath.Join(dir, "other")))
	}
	if err := (Sets{}).Reapply(change); err != nil {
		t.Fatal(err)
	}
	if RolledBack(journal) {
		t.Error("still rolled back after the reapply")
	}
	refused := &Change{journal: filepath.Join(dir, "k"), Written: []string{"x"}, prev: []previous{{file: File{Path: "x"}, existed: true, unreadable: true}}}
	if err := (Sets{}).Rollback(refused); err == nil || RolledBack(refused.journal) {
		t.Errorf("a refused rollback: err %v, rolled back %v", err, RolledBack(refused.journal))
	}
}
