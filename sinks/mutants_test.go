package sinks

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestNoDescriptorLeak: the walk opens a descriptor per directory on the
// way; writes, reads, recoveries and refusals close every one of them.
// A daemon with thousands of certificates would otherwise run out.
func TestNoDescriptorLeak(t *testing.T) {
	open := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(entries)
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	journal := filepath.Join(t.TempDir(), "j")
	WriteSet(journal, set(dir, "KEY0", "CERT0"))
	before := open()
	for i := range 50 {
		change, _ := WriteSet(journal, set(dir, "KEY"+string(rune('a'+i%2)), "CERT"))
		(Sets{}).Rollback(change)
		ReadFile(filepath.Join(dir, "web.key"))
		ReadState(filepath.Join(dir, "web.key"))
		ReadFile(filepath.Join(dir, "missing", "x"))
		Recover(journal, []string{filepath.Join(dir, "web.key"), filepath.Join(dir, "web.crt")})
	}
	if after := open(); after > before+2 {
		t.Errorf("%d descriptors open before, %d after 50 rounds", before, after)
	}
}

// TestTempNames: a temp file is named by its pattern with the last "*"
// replaced by digits, wherever the star is; on a name that is taken it
// tries another, and gives up after 100 more tries with the error.
func TestTempNames(t *testing.T) {
	d, err := openDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	for pattern, want := range map[string]string{
		".web.key" + tempMarker + "*": `^\.web\.key\.certkeeper-tmp-[0-9]+$`,
		"*.tmp":                       `^[0-9]+\.tmp$`,
		"a*b*c":                       `^a\*b[0-9]+c$`,
	} {
		f, err := (osDisk{}).CreateTemp(d, pattern)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if name := filepath.Base(f.Name()); !regexp.MustCompile(want).MatchString(name) {
			t.Errorf("pattern %q made %q", pattern, name)
		}
	}
	defer func(r func() uint32) { tempRand = r }(tempRand)
	tries := 0
	tempRand = func() uint32 { tries++; return 7 }
	if _, err := (osDisk{}).CreateTemp(d, "x*"); err != nil {
		t.Fatal(err)
	}
	tries = 0
	_, err = (osDisk{}).CreateTemp(d, "x*")
	if !errors.Is(err, fs.ErrExist) || tries != 101 {
		t.Errorf("every name taken: err %v after %d tries, want EEXIST after 101", err, tries)
	}
}

// TestMoveLeavesItsOwnFile: a moved state file is the running user's,
// 0600, at its new place only; a file others could have written is not
// moved.
func TestMoveLeavesItsOwnFile(t *testing.T) {
	state := t.TempDir()
	from, to := filepath.Join(state, "web.json"), filepath.Join(state, "certs", "web.json")
	os.Mkdir(filepath.Dir(to), 0o700)
	os.WriteFile(from, []byte("RECORD"), 0o644)
	if err := Move(filepath.Join(state, "certs", "web.journal"), from, to); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(to)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	if info.Mode().Perm() != 0o600 || int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() || mustRead(t, to) != "RECORD" {
		t.Errorf("moved file: mode %o owner %d:%d, want 600 owned by %d:%d", info.Mode().Perm(), st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
	if _, err := os.Lstat(from); err == nil {
		t.Error("the file is still at its old place")
	}
	os.WriteFile(from, []byte("PLANTED"), 0o666)
	os.Chmod(from, 0o666)
	if err := Move(filepath.Join(state, "certs", "web.journal"), from, to); err == nil || !strings.Contains(err.Error(), "(mode 0666)") {
		t.Errorf("moving a file others may write: %v", err)
	}
	if mustRead(t, to) != "RECORD" {
		t.Error("a file others may write was moved into the state")
	}
}

// TestReadLimitIsInclusive: a file of exactly the limit is read, one byte
// more is refused.
func TestReadLimitIsInclusive(t *testing.T) {
	dir := t.TempDir()
	at, over := filepath.Join(dir, "at"), filepath.Join(dir, "over")
	os.WriteFile(at, []byte("0123456789"), 0o644)
	os.WriteFile(over, []byte("0123456789X"), 0o644)
	if got, err := ReadFileUpTo(at, 10); err != nil || string(got) != "0123456789" {
		t.Errorf("10 bytes under a limit of 10: %q, %v", got, err)
	}
	var large *TooLargeError
	if _, err := ReadFileUpTo(over, 10); !errors.As(err, &large) || large.Size != 11 {
		t.Errorf("11 bytes under a limit of 10: %v", err)
	}
}

// TestRollbackOfAFileAlreadyGone: rolling back a change whose created
// file someone already deleted puts the rest back and succeeds.
func TestRollbackOfAFileAlreadyGone(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	WriteSet(journal, set(dir, "KEY1", "CERT1"))
	extra := File{Path: filepath.Join(dir, "chain.pem"), Data: []byte("CHAIN"), Mode: 0o644, UID: -1, GID: -1}
	change, err := WriteSet(journal, append(set(dir, "KEY2", "CERT2"), extra))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(extra.Path)
	if err := (Sets{}).Rollback(change); err != nil {
		t.Fatalf("rollback with the created file already gone: %v", err)
	}
	assertOldSet(t, dir)
}
