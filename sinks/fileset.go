// Package sinks puts bytes on disk where servers read them, so that a reader
// never sees a half-written file and a set of files (key, certificate,
// chain) changes together or not at all, even across a crash.
//
// A set is written as: a temp file per destination, in the destination's
// directory, created with its final mode and owner, written and fsynced;
// an fsync of each of those directories, so the temp names are durable;
// then a journal naming every rename; then the renames; then an fsync of
// each directory; then the journal is removed. A file the set removes is
// renamed aside to a temp name among the renames. After a crash, Recover
// finishes the renames the journal names, so a restart finds either the old
// set or the new one, never a mix. crash_test.go checks this against a
// model of what a power loss may keep.
package sinks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// File is one destination and what it must hold.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
	// UID and GID own the file; -1 keeps the process's own.
	UID, GID int
}

// Change is what one WriteSet did, kept so it can be undone.
type Change struct {
	// Written lists the paths whose bytes, mode or owner changed.
	Written []string
	journal string
	prev    []previous
	// next is what the change wrote, so it can be written again after a
	// rollback (see Sets.Reapply).
	next []File
}

type previous struct {
	file    File
	existed bool
	// unreadable: a file was there that this process may not read (left
	// by root before the state_dir owner took over, say). It is replaced
	// all the same, but its bytes cannot be put back.
	unreadable bool
}

// Changed reports whether anything on disk was changed.
func (c *Change) Changed() bool { return c != nil && len(c.Written) > 0 }

// tempMarker names temp files so Recover can find ones a crash left behind.
const tempMarker = ".certkeeper-tmp-"

// WriteSet makes every file hold exactly what it should, as one set. Files
// already right (bytes, mode, owner) are not touched, so a no-op pass
// changes no timestamps and triggers no reload. journal is the path of the
// crash journal for this set; it must be on a local filesystem.
func WriteSet(journal string, files []File) (*Change, error) {
	defer lockSet(journal)()
	return writeSet(journal, files, nil)
}

// writeSet writes files, and removes the paths in remove, as one set.
func writeSet(journal string, files []File, remove []string) (*Change, error) {
	change := &Change{journal: journal}
	var pending []rename
	var temps []string
	cleanup := func() {
		for _, tmp := range temps {
			disk.Remove(tmp)
		}
	}
	for _, f := range files {
		prev, same, err := inspect(f)
		if err != nil {
			cleanup()
			return nil, err
		}
		if same {
			continue
		}
		tmp, err := writeTemp(f)
		if err != nil {
			cleanup()
			return nil, err
		}
		crashPoint("temp")
		temps = append(temps, tmp)
		pending = append(pending, rename{From: tmp, To: f.Path})
		change.prev = append(change.prev, prev)
		change.next = append(change.next, f)
		change.Written = append(change.Written, f.Path)
	}
	// A file to remove is renamed aside, to a temp name, in the same set:
	// it goes exactly when the others change, and the next start's
	// recovery sweeps the aside if a crash comes before it is deleted.
	var asides []string
	for _, path := range remove {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			cleanup()
			return nil, fmt.Errorf("checking %s: %w", path, err)
		}
		aside := filepath.Join(filepath.Dir(path), tempPrefix(path)+"removed")
		pending = append(pending, rename{From: path, To: aside})
		asides = append(asides, aside)
	}
	if len(pending) == 0 {
		return change, nil
	}
	if len(pending) > 1 {
		// A single rename is atomic by itself; a set needs the journal.
		// The journal must never name a temp file that a crash could
		// take away (a file's fsync does not make its name durable), or
		// recovery could finish only part of the set.
		if err := syncTempDirs(pending); err != nil {
			cleanup()
			return nil, err
		}
		if err := writeJournal(journal, pending); err != nil {
			cleanup()
			return nil, err
		}
	}
	if err := applyRenames(pending); err != nil {
		// Renames that happened stay: the journal finishes them on restart.
		if len(pending) == 1 && len(temps) == 1 {
			// No journal names a lone file's temp: remove it now rather
			// than leave it for the next start's sweep.
			disk.Remove(pending[0].From)
		}
		return nil, err
	}
	if len(pending) > 1 {
		if err := removeSynced(journal); err != nil {
			return nil, err
		}
	}
	for _, aside := range asides {
		disk.Remove(aside) // if this fails, the next start sweeps it
	}
	return change, nil
}

// Sets is the owner of written file sets for everyone who did not write
// them: a service whose check failed asks it to put a set back, and to
// write it again for the next check, instead of rewriting the files
// itself. Every write, rollback and re-apply of one set (named by its
// journal) is serialised, whoever asks.
type Sets struct{}

// Rollback puts back what the files held before the change and removes
// files the change created, all as one set. When a file the change
// replaced could not be read, nothing is put back (the new set stays
// whole) and the error says so.
func (Sets) Rollback(c *Change) error {
	if !c.Changed() {
		return nil
	}
	defer lockSet(c.journal)()
	var restore []File
	var created []string
	for _, p := range c.prev {
		if p.unreadable {
			// Putting back the rest would leave a key of one set beside
			// a certificate of the other: keep the new set whole instead.
			return fmt.Errorf("cannot roll back: the previous %s could not be read, so the new files stay in place as a whole set", p.file.Path)
		}
	}
	for _, p := range c.prev {
		if p.existed {
			restore = append(restore, p.file)
		} else {
			created = append(created, p.file.Path)
		}
	}
	if _, err := writeSet(c.journal, restore, created); err != nil {
		return fmt.Errorf("rolling back: %w", err)
	}
	return nil
}

// inspect reads what is at f.Path now, both to skip unchanged files and to
// be able to roll back. A symlink at a destination is refused: following it
// could make certkeeper overwrite any file the link points at.
func inspect(f File) (prev previous, same bool, err error) {
	prev.file = File{Path: f.Path, UID: -1, GID: -1}
	info, err := os.Lstat(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return prev, false, nil
	}
	if err != nil {
		return prev, false, fmt.Errorf("checking %s: %w", f.Path, err)
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		return prev, false, fmt.Errorf("refusing to write %s: it is a symlink, and certkeeper does not follow links at its destinations", f.Path)
	}
	if !info.Mode().IsRegular() {
		return prev, false, fmt.Errorf("refusing to write %s: it is not a regular file", f.Path)
	}
	prev.existed = true
	data, err := readNoFollow(f.Path)
	if errors.Is(err, fs.ErrPermission) {
		// A write never fails only because the old file cannot be read:
		// replacing it needs only the directory, and refusing would keep
		// it until it expires.
		prev.unreadable = true
		return prev, false, nil
	}
	if err != nil {
		return prev, false, err
	}
	prev.file.Data = data
	prev.file.Mode = info.Mode().Perm()
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		prev.file.UID, prev.file.GID = int(st.Uid), int(st.Gid)
	}
	same = bytes.Equal(data, f.Data) && prev.file.Mode == f.Mode.Perm() &&
		(f.UID < 0 || f.UID == prev.file.UID) && (f.GID < 0 || f.GID == prev.file.GID)
	return prev, same, nil
}

// ReadFile reads a destination without following a symlink there.
func ReadFile(path string) ([]byte, error) { return readNoFollow(path) }

func readNoFollow(path string) ([]byte, error) {
	fd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer fd.Close()
	data, err := io.ReadAll(fd)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}

// writeTemp writes f's bytes to a new file beside f.Path, durable and with
// its final mode and owner before any reader could see it under its name.
func writeTemp(f File) (string, error) {
	dir := filepath.Dir(f.Path)
	if err := mkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating directory for %s: %w", f.Path, err)
	}
	tmp, err := disk.CreateTemp(dir, "."+filepath.Base(f.Path)+tempMarker+"*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", f.Path, err)
	}
	// CreateTemp makes 0600 files, so the bytes are never readable by
	// others; Chmod then sets the final mode regardless of the umask.
	err = tmp.Chmod(f.Mode.Perm())
	if err == nil && (f.UID >= 0 || f.GID >= 0) {
		err = tmp.Chown(f.UID, f.GID)
	}
	if err == nil {
		_, err = tmp.Write(f.Data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		disk.Remove(tmp.Name())
		return "", fmt.Errorf("writing %s: %w", f.Path, err)
	}
	return tmp.Name(), nil
}

type rename struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func applyRenames(renames []rename) error {
	dirs := map[string]bool{}
	for _, r := range renames {
		crashPoint("rename")
		if err := disk.Rename(r.From, r.To); err != nil {
			return fmt.Errorf("replacing %s: %w", r.To, err)
		}
		remember(r.To)
		dirs[filepath.Dir(r.To)] = true
	}
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

func writeJournal(path string, renames []rename) error {
	data, err := json.Marshal(renames)
	if err != nil {
		return fmt.Errorf("encoding journal: %w", err)
	}
	// Journals live in the state directory, which only certkeeper reads:
	// if it is made here, it is made private.
	if err := mkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	tmp, err := writeTemp(File{Path: path, Data: data, Mode: 0o600, UID: -1, GID: -1})
	if err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	crashPoint("journal")
	if err := disk.Rename(tmp, path); err != nil {
		disk.Remove(tmp)
		return fmt.Errorf("writing journal: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func removeSynced(path string) error {
	crashPoint("commit")
	if err := disk.Remove(path); err != nil {
		return fmt.Errorf("removing journal: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// syncTempDirs makes the names of the pending temp files durable, one
// fsync per directory.
func syncTempDirs(pending []rename) error {
	var done []string
	for _, r := range pending {
		dir := filepath.Dir(r.From)
		if slices.Contains(done, dir) {
			continue
		}
		done = append(done, dir)
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// mkdirAll is os.MkdirAll that also fsyncs the parent of every directory
// it creates: otherwise a crash could take a new output directory, and a
// set written into it, away after the write was reported done.
func mkdirAll(dir string, perm fs.FileMode) error {
	info, err := os.Stat(dir)
	if err == nil {
		if !info.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(parent, perm); err != nil {
			return err
		}
	}
	// Made by another writer meanwhile: it may not have synced the
	// parent yet, so sync it here too.
	if err := disk.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	if err := disk.SyncDir(dir); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// Recover finishes a set write that a crash interrupted, then removes temp
// files left beside the given destinations. Call it before reading any of
// them. With no destinations it only finishes the journal, which is all a
// set needs between two writes in one process (see RecoverSets).
func Recover(journal string, destinations []string) error {
	return RecoverSets([]Set{{Journal: journal, Destinations: destinations}})[0]
}
