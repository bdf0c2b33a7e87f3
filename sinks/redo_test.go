package sinks

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestMergeRollbackAndReapply: three writes to one set (the second also
// creates a chain file) merge into one change; rolling it back restores
// the state before the first write and removes the created file;
// re-applying brings the state after the last write back; a second
// rollback still returns to the original.
func TestMergeRollbackAndReapply(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	chain := File{Path: filepath.Join(dir, "chain.pem"), Data: []byte("CHAIN2"), Mode: 0o644, UID: -1, GID: -1}
	if _, err := WriteSet(journal, set(dir, "KEY0", "CERT0")); err != nil {
		t.Fatal(err)
	}
	c1, err := WriteSet(journal, set(dir, "KEY1", "CERT1"))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := WriteSet(journal, append(set(dir, "KEY2", "CERT1"), chain))
	if err != nil {
		t.Fatal(err)
	}
	c3, err := WriteSet(journal, append(set(dir, "KEY3", "CERT3"), chain))
	if err != nil {
		t.Fatal(err)
	}
	merged := Merge(c1, nil, c2, &Change{}, c3)
	if len(merged) != 1 {
		t.Fatalf("%d merged changes for one set, want 1", len(merged))
	}
	m := merged[0]
	if len(m.Written) != 3 {
		t.Errorf("merged change covers %v, want key, cert and chain", m.Written)
	}
	state := func() string {
		key, cert := mustRead(t, filepath.Join(dir, "web.key")), mustRead(t, filepath.Join(dir, "web.crt"))
		if _, err := os.Stat(chain.Path); err == nil {
			return key + "/" + cert + "/" + mustRead(t, chain.Path)
		}
		return key + "/" + cert
	}
	for round := range 2 {
		if err := (Sets{}).Rollback(m); err != nil {
			t.Fatal(err)
		}
		if got := state(); got != "KEY0/CERT0" {
			t.Fatalf("round %d: after rollback %s, want KEY0/CERT0 and no chain file", round, got)
		}
		if err := (Sets{}).Reapply(m); err != nil {
			t.Fatal(err)
		}
		if got := state(); got != "KEY3/CERT3/CHAIN2" {
			t.Fatalf("round %d: after reapply %s, want KEY3/CERT3/CHAIN2", round, got)
		}
	}
	if got := perm(t, filepath.Join(dir, "web.key")); got != 0o600 {
		t.Errorf("re-applied key has mode %o, want 600", got)
	}
}

// TestMergeKeepsSetsApart: changes to different sets stay separate, each
// rolled back as its own set.
func TestMergeKeepsSetsApart(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	WriteSet(filepath.Join(a, "j"), set(a, "A0", "A0"))
	WriteSet(filepath.Join(b, "j"), set(b, "B0", "B0"))
	ca, _ := WriteSet(filepath.Join(a, "j"), set(a, "A1", "A1"))
	cb, _ := WriteSet(filepath.Join(b, "j"), set(b, "B1", "B1"))
	merged := Merge(ca, cb)
	if len(merged) != 2 {
		t.Fatalf("%d merged changes, want 2", len(merged))
	}
	if err := (Sets{}).Rollback(merged[1]); err != nil {
		t.Fatal(err)
	}
	if mustRead(t, filepath.Join(a, "web.key")) != "A1" || mustRead(t, filepath.Join(b, "web.key")) != "B0" {
		t.Error("rolling back one set touched the other, or did not roll back")
	}
}

// TestConcurrentWritesStayWhole: writers racing on one set never leave a
// key from one write beside a certificate from another.
func TestConcurrentWritesStayWhole(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				v := string(rune('a'+i)) + string(rune('a'+j))
				c, err := WriteSet(journal, set(dir, v, v))
				if err != nil {
					t.Error(err)
					return
				}
				if j%3 == 0 {
					if err := (Sets{}).Rollback(c); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if k, c := mustRead(t, filepath.Join(dir, "web.key")), mustRead(t, filepath.Join(dir, "web.crt")); k != c {
		t.Errorf("key %q and certificate %q are from different writes", k, c)
	}
}
