package sinks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKeptDirectoryIsRechecked: a directory kept open from an earlier
// write (dircache.go) is used again only while its path still leads to
// it and it is still safe: moved away and replaced by a symlink, by
// another directory, or made world-writable, the next write and read see
// what a fresh walk sees, and nothing lands in the directory moved away.
func TestKeptDirectoryIsRechecked(t *testing.T) {
	root := t.TempDir()
	tls := filepath.Join(root, "tls")
	moved := filepath.Join(root, "moved")
	journal := filepath.Join(root, "state", "j")
	write := func(data string) error {
		_, err := WriteSet(journal, []File{file(filepath.Join(tls, "web.key"), data, 0o600)})
		return err
	}
	if err := write("KEY1"); err != nil {
		t.Fatal(err)
	}
	if err := write("KEY2"); err != nil { // from the kept directory
		t.Fatal(err)
	}
	if err := os.Rename(tls, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, tls); err != nil {
		t.Fatal(err)
	}
	if err := write("KEY3"); err == nil || !strings.Contains(err.Error(), tls+" is a symlink") {
		t.Fatalf("write through a symlink put in the kept directory's place: %v, want a refusal", err)
	}
	if _, err := ReadFile(filepath.Join(tls, "web.key")); !strings.Contains(errText(err), tls+" is a symlink") {
		t.Errorf("read through the symlink: %v, want a refusal", err)
	}
	os.Remove(tls)
	if err := os.Mkdir(tls, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := write("KEY4"); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(tls, "web.key")); got != "KEY4" {
		t.Errorf("the new directory holds %q, want KEY4", got)
	}
	if got := mustRead(t, filepath.Join(moved, "web.key")); got != "KEY2" {
		t.Errorf("the directory moved away holds %q, want KEY2 as it was", got)
	}
	if err := os.Chmod(tls, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := write("KEY5"); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("write into the kept directory made world-writable: %v, want a refusal", err)
	}
	if _, err := ReadFile(filepath.Join(tls, "web.key")); !strings.Contains(errText(err), "writable by group or others") {
		t.Errorf("read from it: %v, want a refusal", err)
	}
}

// TestKeptDirectoriesAreBounded: at most maxKept directories are held
// open, whatever the number of directories written to, and none is
// closed while in use.
func TestKeptDirectoriesAreBounded(t *testing.T) {
	root := t.TempDir()
	for i := range maxKept * 2 {
		dir := filepath.Join(root, "d", string(rune('a'+i%26))+string(rune('a'+i/26)))
		if _, err := WriteSet(filepath.Join(root, "j"), []File{file(filepath.Join(dir, "f"), "x", 0o600)}); err != nil {
			t.Fatal(err)
		}
	}
	keptMu.Lock()
	n := len(kept)
	var busy int
	for _, k := range kept {
		busy += k.refs
	}
	last := kept[filepath.Join(root, "d", string(rune('a'+(maxKept*2-1)%26))+string(rune('a'+(maxKept*2-1)/26)))]
	keptMu.Unlock()
	if n > maxKept || busy != 0 {
		t.Errorf("%d directories kept (at most %d), %d uses not given back", n, maxKept, busy)
	}
	if last == nil {
		t.Error("the directory written last is not kept: a full cache makes room for it")
	}
	// Those dropped to make room are closed: no more descriptors open
	// than kept directories, and a few of the process's own.
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil && len(fds) > maxKept+32 {
		t.Errorf("%d descriptors open with at most %d directories kept", len(fds), maxKept)
	}
}

// TestKeptDirectoryIsReused: a second write into a directory takes the
// kept descriptor (the same entry) instead of walking again.
func TestKeptDirectoryIsReused(t *testing.T) {
	root := t.TempDir()
	tls := filepath.Join(root, "tls")
	entry := func() *keptDir {
		keptMu.Lock()
		defer keptMu.Unlock()
		return kept[tls]
	}
	write := func(data string) {
		if _, err := WriteSet(filepath.Join(root, "j"), []File{file(filepath.Join(tls, "web.key"), data, 0o600)}); err != nil {
			t.Fatal(err)
		}
	}
	write("KEY1")
	first := entry()
	if first == nil {
		t.Fatal("the directory written is not kept")
	}
	write("KEY2")
	if _, err := ReadFile(filepath.Join(tls, "web.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := MakeParents(filepath.Join(tls, "web.crt"), 0o755, -1); err != nil {
		t.Fatal(err)
	}
	if got := entry(); got != first {
		t.Errorf("the kept directory was replaced by a new walk (%p, then %p) although nothing changed", first, got)
	}
}

// TestKeptDirectoriesAreClosedWhenIdle: a directory unused for keptIdle
// is closed (a kept descriptor would keep its file system from being
// unmounted).
func TestKeptDirectoriesAreClosedWhenIdle(t *testing.T) {
	keptMu.Lock()
	defer func(d time.Duration) {
		keptMu.Lock()
		keptIdle = d
		keptMu.Unlock()
	}(keptIdle)
	keptIdle = 20 * time.Millisecond
	if keptSweep != nil {
		keptSweep.Reset(keptIdle)
	}
	keptMu.Unlock()
	root := t.TempDir()
	if _, err := WriteSet(filepath.Join(root, "j"), []File{file(filepath.Join(root, "tls", "f"), "x", 0o600)}); err != nil {
		t.Fatal(err)
	}
	// Not a timing assumption: the loop waits as long as it takes, up
	// to a bound far above keptIdle.
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
		keptMu.Lock()
		n := len(kept)
		keptMu.Unlock()
		if n == 0 {
			return
		}
	}
	t.Fatal("directories still kept open long after keptIdle without use")
}

// TestMakeParentsAfterAKeptDirectoryWentAway: MakeParents before each
// set finds a kept directory and makes nothing; once the directory was
// removed, it makes it again, with its exact mode, and says so.
func TestMakeParentsAfterAKeptDirectoryWentAway(t *testing.T) {
	root := t.TempDir()
	key := filepath.Join(root, "tls", "web.key")
	for round, want := range []int{1, 0, 1} {
		if round == 2 {
			if err := os.RemoveAll(filepath.Dir(key)); err != nil {
				t.Fatal(err)
			}
		}
		made, err := MakeParents(key, 0o750, -1)
		if err != nil || len(made) != want {
			t.Fatalf("round %d: made %v, %v; want %d made", round, made, err, want)
		}
		if info, err := os.Stat(filepath.Dir(key)); err != nil || info.Mode().Perm() != 0o750 {
			t.Fatalf("round %d: %v, %v; want a directory of mode 0750", round, info, err)
		}
	}
}
