package sinks

import (
	"os"
	"path/filepath"
	"testing"
)

// TestGroupReplacesAStaleJournalName: a journal a failed write left at a
// set's journal name does not stop the next write of that set: the group
// links its journal over it (through an aside, as a rename would).
func TestGroupReplacesAStaleJournalName(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "state", "j")
	os.MkdirAll(filepath.Dir(journal), 0o700)
	if err := os.WriteFile(journal, []byte(`{"stale":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteSet(journal, set(dir, "KEY1", "CERT1")); err != nil {
		t.Fatalf("WriteSet over a stale journal name: %v", err)
	}
	if _, err := os.Stat(journal); !os.IsNotExist(err) {
		t.Errorf("the journal is still there after the set was written: %v", err)
	}
}
