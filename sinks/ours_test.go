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
