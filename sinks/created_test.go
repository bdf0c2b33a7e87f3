package sinks

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCreatedTellsMissingFromChanged(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	change, err := WriteSet(journal, set(dir, "KEY1", "CERT1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := change.Created(); len(got) != 2 {
		t.Errorf("first write created %v, want both files", got)
	}
	keyPath, certPath := filepath.Join(dir, "web.key"), filepath.Join(dir, "web.crt")
	os.Remove(keyPath)
	os.WriteFile(certPath, []byte("tampered"), 0o644)
	change, err = WriteSet(journal, set(dir, "KEY1", "CERT1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := change.Created(); !slices.Equal(got, []string{keyPath}) {
		t.Errorf("Created = %v, want only the deleted key", got)
	}
	if !slices.Contains(change.Written, certPath) {
		t.Errorf("the tampered certificate was not rewritten: %v", change.Written)
	}
}
