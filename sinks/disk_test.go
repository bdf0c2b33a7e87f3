package sinks

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// faultyDisk is the real disk with chosen calls failing, for the errors a
// test cannot provoke on a healthy machine (as root, permissions do not
// stop anything).
type faultyDisk struct {
	osDisk
	syncErr   error                      // every temp file's fsync fails with it
	onSync    func(path string) error    // a temp file's fsync fails when it returns an error
	removeErr func(path string) error    // Remove fails when it returns an error
	onRename  func(from, to string) bool // false: the rename fails
	onLink    func(from, to string) bool // false: the link fails
	linkErr   error                      // every link fails with it
}

var _ fileSystem = faultyDisk{}

func (d faultyDisk) CreateTemp(dir *dir, pattern string) (tempFile, error) {
	f, err := d.osDisk.CreateTemp(dir, pattern)
	switch {
	case err != nil:
		return nil, err
	case d.syncErr != nil:
		return failingSync{f, d.syncErr}, nil
	case d.onSync != nil:
		if err := d.onSync(f.Name()); err != nil {
			return failingSync{f, err}, nil
		}
	}
	return f, nil
}

func (d faultyDisk) Remove(dir *dir, name string) error {
	if d.removeErr != nil {
		if err := d.removeErr(dir.join(name)); err != nil {
			return err
		}
	}
	return d.osDisk.Remove(dir, name)
}

func (d faultyDisk) Rename(dir *dir, from, to string) error {
	if d.onRename != nil && !d.onRename(dir.join(from), dir.join(to)) {
		return &os.LinkError{Op: "rename", Old: dir.join(from), New: dir.join(to), Err: syscall.EIO}
	}
	return d.osDisk.Rename(dir, from, to)
}

func (d faultyDisk) Link(dir *dir, from, to string) error {
	if d.linkErr != nil {
		return &os.LinkError{Op: "link", Old: dir.join(from), New: dir.join(to), Err: d.linkErr}
	}
	if d.onLink != nil && !d.onLink(dir.join(from), dir.join(to)) {
		return &os.LinkError{Op: "link", Old: dir.join(from), New: dir.join(to), Err: syscall.EIO}
	}
	return d.osDisk.Link(dir, from, to)
}

type failingSync struct {
	tempFile
	err error
}

func (f failingSync) Sync() error { return f.err }

// TestFsyncErrorIsReported: an fsync that fails (EIO: the data may never
// reach the disk) fails the write, which leaves the old set and no temp
// file; it is never hidden behind a successful close.
func TestFsyncErrorIsReported(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	if _, err := WriteSet(journal, set(dir, "KEY1", "CERT1")); err != nil {
		t.Fatal(err)
	}
	err := withDisk(faultyDisk{syncErr: syscall.EIO}, func() error {
		_, err := WriteSet(journal, set(dir, "KEY2", "CERT2"))
		return err
	})
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("err = %v, want the fsync's EIO", err)
	}
	assertOldSet(t, dir)
}

// TestRecoverReportsTempsItCannotRemove: a stray temp file that recovery
// cannot remove is that set's error, not silence.
func TestRecoverReportsTempsItCannotRemove(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "web.key")
	stray := filepath.Join(dir, tempPrefix(dest)+"1")
	os.WriteFile(stray, []byte("half"), 0o600)
	deny := func(path string) error {
		if strings.Contains(path, tempMarker) {
			return &fs.PathError{Op: "remove", Path: path, Err: syscall.EACCES}
		}
		return nil
	}
	errs := errorsOf(withDiskErrs(faultyDisk{removeErr: deny}, func() []error {
		return RecoverSets([]Set{{Journal: filepath.Join(dir, "j"), Destinations: []string{dest}}})
	}))
	if len(errs) != 1 || !errors.Is(errs[0], syscall.EACCES) {
		t.Fatalf("errors %v, want the set's EACCES", errs)
	}
}

// setWriters are the two ways a set reaches disk: alone (rollbacks, redo
// and moves still write so) and through WriteSet's groups.
var setWriters = []struct {
	name  string
	write func(journal string, files []File) error
}{
	{"alone", func(journal string, files []File) error {
		defer lockSet(journal)()
		_, err := writeSet(journal, files, nil)
		return err
	}},
	{"grouped", func(journal string, files []File) error {
		_, err := WriteSet(journal, files)
		return err
	}},
}

// TestJournalIsPrivate: the journal names every file of the set; it is
// written 0600 and owned by certkeeper itself, whatever the set's files
// ask for, before it is renamed (or linked) into place, and a state
// directory made for it is 0700. Both writers are checked: a set written
// alone (rollbacks, redo, moves) renames its journal into place; a group
// links its journal under the set's journal name.
func TestJournalIsPrivate(t *testing.T) {
	for _, w := range setWriters {
		t.Run(w.name, func(t *testing.T) {
			dir := t.TempDir()
			journal := filepath.Join(dir, "state", "trust", "j")
			var checked bool
			check := func(from, to string) bool {
				if to != journal {
					return true
				}
				checked = true
				info, err := os.Stat(from)
				if err != nil {
					t.Error(err)
					return true
				}
				st := info.Sys().(*syscall.Stat_t)
				if info.Mode().Perm() != 0o600 || int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
					t.Errorf("journal written with mode %o, owner %d:%d; want 600, %d:%d", info.Mode().Perm(), st.Uid, st.Gid, os.Geteuid(), os.Getegid())
				}
				return true
			}
			fs := set(dir, "KEY1", "CERT1")
			if os.Geteuid() == 0 {
				for i := range fs {
					fs[i].UID, fs[i].GID = 1, 1 // asked of the files, never of the journal
				}
			}
			if err := withDisk(faultyDisk{onRename: check, onLink: check}, func() error { return w.write(journal, fs) }); err != nil {
				t.Fatal(err)
			}
			if !checked {
				t.Fatal("a two-file set was written without a journal")
			}
			for _, d := range []string{filepath.Join(dir, "state"), filepath.Dir(journal)} {
				if got := perm(t, d); got != 0o700 {
					t.Errorf("%s made with mode %o, want 700", d, got)
				}
			}
			// One file is replaced by one rename, atomic by itself: no
			// journal is written for it.
			checked = false
			one := []File{fs[0]}
			one[0].Data = []byte("KEY2")
			if err := withDisk(faultyDisk{onRename: check, onLink: check}, func() error { return w.write(journal, one) }); err != nil {
				t.Fatal(err)
			}
			if checked {
				t.Error("a one-file set was written with a journal")
			}
		})
	}
}

// TestWriteSetOwnership: files get the owner and group asked for; a file
// already right is not rewritten, and one whose owner or group was changed
// behind certkeeper's back is. Needs root, as chown does.
func TestWriteSetOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: only root can give files to other users (CI runs as root)")
	}
	const nobody = 65534
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	key := filepath.Join(dir, "web.key")
	owned := func(uid, gid int) []File {
		files := set(dir, "KEY1", "CERT1")
		for i := range files {
			files[i].UID, files[i].GID = uid, gid
		}
		return files
	}
	owner := func(path string) (int, int) {
		t.Helper()
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		return int(st.Uid), int(st.Gid)
	}
	steps := []struct {
		name     string
		before   func()
		uid, gid int
		written  int
		wantUID  int
		wantGID  int
	}{
		{"given to nobody", nil, nobody, nobody, 2, nobody, nobody},
		{"already right", nil, nobody, nobody, 0, nobody, nobody},
		{"owner changed behind our back", func() { os.Chown(key, 0, nobody) }, nobody, nobody, 1, nobody, nobody},
		{"group changed behind our back", func() { os.Chown(key, nobody, 0) }, nobody, nobody, 1, nobody, nobody},
		{"back to root", nil, 0, 0, 2, 0, 0},
		{"root's owner changed behind our back", func() { os.Chown(key, nobody, 0) }, 0, 0, 1, 0, 0},
		{"root's group changed behind our back", func() { os.Chown(key, 0, nobody) }, 0, 0, 1, 0, 0},
		{"group only", nil, -1, nobody, 2, 0, nobody},
		{"owner only: the group is the process's own", nil, nobody, -1, 2, nobody, 0},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		change, err := WriteSet(journal, owned(s.uid, s.gid))
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if len(change.Written) != s.written {
			t.Errorf("%s: rewrote %v, want %d files", s.name, change.Written, s.written)
		}
		if uid, gid := owner(key); uid != s.wantUID || gid != s.wantGID {
			t.Errorf("%s: key owned by %d:%d, want %d:%d", s.name, uid, gid, s.wantUID, s.wantGID)
		}
	}
}

// withDiskErrs is withDisk for calls that return one error per set.
func withDiskErrs(d fileSystem, fn func() []error) []error {
	disk = d
	defer func() { disk = osDisk{} }()
	return fn()
}

func errorsOf(errs []error) []error {
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
