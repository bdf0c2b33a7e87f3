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
// model of what a power loss may keep. Sets written at the same time are
// committed as a group, sharing one journal and each directory fsync
// (group.go), with the same guarantee for each set.
package sinks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// File is one destination and what it must hold.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
	// UID and GID own the file; -1 keeps the process's own.
	UID, GID int
	// Limit, when above MaxFile, is the largest file at Path that
	// certkeeper takes for a previous version of its own and replaces
	// (a CRL file may be larger than MaxFile). A larger one is refused.
	Limit int64
}

// limit is the largest previous file f replaces.
func (f File) limit() int64 { return max(MaxFile, f.Limit) }

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
// crash journal for this set; it must be on a local filesystem. Every
// directory on the way to a file, and to the journal, must pass the walk
// in resolve.go: no symlink, nothing others could change.
//
// Sets written at the same time from several goroutines, whose journals
// share a directory, are committed together (see group.go): each set's
// guarantee is the same as when it is written alone.
func WriteSet(journal string, files []File) (*Change, error) {
	defer lockSet(journal)()
	ds := dirs{}
	defer ds.close()
	change, pending, err := stageFiles(ds, journal, files)
	if err != nil || len(pending) == 0 {
		return change, err
	}
	if err := committerFor(journal).write(&groupSet{journal: filepath.Clean(journal), pending: pending}); err != nil {
		return nil, err
	}
	return change, nil
}

// stageFiles finds which of files differ from what is on disk and writes
// each of those to a temp file beside it, not yet durable (see
// syncTemps). It returns the renames that put them in place. On error, no
// temp file is left.
func stageFiles(ds dirs, journal string, files []File) (*Change, []rename, error) {
	change := &Change{journal: journal}
	var pending []rename
	for _, f := range files {
		d, err := ds.make(filepath.Dir(f.Path), 0o755)
		if err != nil {
			removeTemps(ds, pending)
			return nil, nil, pathError("write", f.Path, err)
		}
		prev, same, err := inspect(d, f)
		if err != nil {
			removeTemps(ds, pending)
			return nil, nil, err
		}
		if same {
			continue
		}
		tmp, err := writeTemp(d, f)
		if err != nil {
			removeTemps(ds, pending)
			return nil, nil, err
		}
		// Its fsync comes later, with the group's (syncTemps): the
		// kernel can write it out meanwhile.
		tmp.StartWriteback()
		crashPoint("temp")
		pending = append(pending, rename{From: tmp.Name(), To: f.Path, file: tmp})
		change.prev = append(change.prev, prev)
		change.next = append(change.next, f)
		change.Written = append(change.Written, f.Path)
	}
	return change, pending, nil
}

// removeTemps removes the temp files of renames not done.
func removeTemps(ds dirs, renames []rename) {
	for _, r := range renames {
		if r.file != nil {
			r.file.Close()
		}
		if d, err := ds.open(filepath.Dir(r.From)); err == nil {
			disk.Remove(d, filepath.Base(r.From))
		}
	}
}

// writeSet writes files, and removes the paths in remove, as one set, on
// its own (rollbacks, re-applies and moves: rare enough not to group).
func writeSet(journal string, files []File, remove []string) (*Change, error) {
	ds := dirs{}
	defer ds.close()
	change, pending, err := stageFiles(ds, journal, files)
	if err != nil {
		return nil, err
	}
	if err := syncPending(pending); err != nil {
		removeTemps(ds, pending)
		return nil, err
	}
	temps := len(pending)
	cleanup := func() { removeTemps(ds, pending[:temps]) }
	// A file to remove is renamed aside, to a temp name, in the same set:
	// it goes exactly when the others change, and the next start's
	// recovery sweeps the aside if a crash comes before it is deleted.
	var asides, removed []string
	for _, path := range remove {
		d, err := ds.open(filepath.Dir(path))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil {
			var st unix.Stat_t
			err = unix.Fstatat(d.fd(), filepath.Base(path), &st, unix.AT_SYMLINK_NOFOLLOW)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
		}
		if err != nil {
			cleanup()
			return nil, pathError("remove", path, err)
		}
		aside := filepath.Join(filepath.Dir(path), tempPrefix(path)+"removed")
		pending = append(pending, rename{From: path, To: aside})
		asides = append(asides, aside)
		removed = append(removed, path)
	}
	if len(pending) == 0 {
		return change, nil
	}
	if len(pending) > 1 {
		// A single rename is atomic by itself; a set needs the journal.
		// The journal must never name a temp file that a crash could
		// take away (a file's fsync does not make its name durable), or
		// recovery could finish only part of the set.
		if err := syncTempDirs(ds, pending); err != nil {
			cleanup()
			return nil, err
		}
		if err := writeJournal(ds, journal, pending); err != nil {
			cleanup()
			return nil, err
		}
	}
	if err := applyRenames(ds, pending); err != nil {
		// Renames that happened stay: the journal finishes them on restart.
		if len(pending) == 1 && temps == 1 {
			// No journal names a lone file's temp: remove it now rather
			// than leave it for the next start's sweep.
			cleanup()
		}
		return nil, err
	}
	if len(pending) > 1 {
		if err := removeSynced(ds, journal); err != nil {
			return nil, err
		}
	}
	for _, aside := range asides {
		// If this fails, the next start's recovery sweeps it.
		if d, err := ds.open(filepath.Dir(aside)); err == nil {
			disk.Remove(d, filepath.Base(aside))
		}
	}
	for _, path := range removed {
		rememberGone(path)
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
	rolledBack.Store(c.journal, struct{}{})
	return nil
}

// rolledBack holds the sets (by journal) a Rollback put back and no
// Reapply has written again since.
var rolledBack sync.Map

// RolledBack says whether the set with this journal was rolled back and
// not yet written again: its files are then the business of whoever
// rolled them back (the services, whose retry writes them again with
// Reapply and checks them). A writer that merely restores what it holds
// (the agent, after a change event) must leave the set alone meanwhile:
// it would put files that failed a check back behind the services' back,
// at every change event and without their backoff.
func RolledBack(journal string) bool {
	_, ok := rolledBack.Load(journal)
	return ok
}

// inspect reads what is at f.Path now (in d), both to skip unchanged
// files and to be able to roll back. A symlink at a destination is
// refused: following it could make certkeeper overwrite any file the link
// points at.
func inspect(d *dir, f File) (prev previous, same bool, err error) {
	prev.file = File{Path: f.Path, UID: -1, GID: -1}
	name := filepath.Base(f.Path)
	var st unix.Stat_t
	err = unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return prev, false, nil
	}
	if err != nil {
		return prev, false, fmt.Errorf("checking %s: %w", f.Path, &fs.PathError{Op: "stat", Path: f.Path, Err: err})
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return prev, false, fmt.Errorf("refusing to write %s: it is a symlink, and certkeeper does not follow links at its destinations", f.Path)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return prev, false, fmt.Errorf("refusing to write %s: it is not a regular file", f.Path)
	}
	prev.existed = true
	data, got, err := readIn(d, name, f.limit(), nil)
	if errors.Is(err, fs.ErrPermission) {
		// A write never fails only because the old file cannot be read:
		// replacing it needs only the directory, and refusing would keep
		// it until it expires.
		prev.unreadable = true
		return prev, false, nil
	}
	if err != nil {
		return prev, false, pathError("replace", f.Path, err)
	}
	prev.file.Data = data
	prev.file.Mode = fs.FileMode(got.Mode).Perm()
	prev.file.UID, prev.file.GID = int(got.Uid), int(got.Gid)
	same = bytes.Equal(data, f.Data) && prev.file.Mode == f.Mode.Perm() &&
		(f.UID < 0 || f.UID == prev.file.UID) && (f.GID < 0 || f.GID == prev.file.GID)
	return prev, same, nil
}

// writeTemp writes f's bytes to a new file beside f.Path (in d), with its
// final mode and owner before any reader could see it under its name. It
// is not durable yet: syncTemps makes it so and closes it (or removeTemps
// removes it), before anything names it.
func writeTemp(d *dir, f File) (tempFile, error) {
	tmp, err := disk.CreateTemp(d, "."+filepath.Base(f.Path)+tempMarker+"*")
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", f.Path, err)
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
	if err != nil {
		tmp.Close()
		disk.Remove(d, filepath.Base(tmp.Name()))
		return nil, fmt.Errorf("writing %s: %w", f.Path, err)
	}
	return tmp, nil
}

// writeSynced is writeTemp made durable at once, for a journal (which
// must be durable before it is named). It returns the temp file's path.
func writeSynced(d *dir, f File) (string, error) {
	tmp, err := writeTemp(d, f)
	if err != nil {
		return "", err
	}
	err = tmp.Sync()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		disk.Remove(d, filepath.Base(tmp.Name()))
		return "", fmt.Errorf("writing %s: %w", f.Path, err)
	}
	return tmp.Name(), nil
}

// maxSyncers bounds the fsyncs syncTemps has in flight at once.
const maxSyncers = 16

// syncTemps makes the temp files of renames durable and closes them,
// every fsync in flight together: the disk takes them in one go, where
// each set's fsyncs in a row, one after the other, would each wait for
// the one before (the writeback stageFiles started is by then done or
// under way). It returns each rename's error (nil for a rename
// with no open temp file).
func syncTemps(renames []*rename) []error {
	errs := make([]error, len(renames))
	var open []int
	for i, r := range renames {
		if r.file != nil {
			open = append(open, i)
		}
	}
	syncOne := func(i int) {
		r := renames[i]
		err := r.file.Sync()
		if cerr := r.file.Close(); err == nil {
			err = cerr
		}
		r.file = nil
		if err != nil {
			errs[i] = fmt.Errorf("writing %s: %w", r.To, err)
		}
	}
	if len(open) == 1 {
		syncOne(open[0])
		return errs
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(open), maxSyncers) {
		wg.Go(func() {
			for {
				n := int(next.Add(1)) - 1
				if n >= len(open) {
					return
				}
				syncOne(open[n])
			}
		})
	}
	wg.Wait()
	return errs
}

// syncPending is syncTemps for the renames of one set: its first error.
func syncPending(pending []rename) error {
	rs := make([]*rename, len(pending))
	for i := range pending {
		rs[i] = &pending[i]
	}
	return errors.Join(slices.DeleteFunc(syncTemps(rs), func(err error) bool { return err == nil })...)
}

type rename struct {
	From string `json:"from"`
	To   string `json:"to"`
	// file is From, still open until syncTemps has made it durable (a
	// descriptor per file of every set waiting for its group: at most
	// the files of the sets being written at once).
	file tempFile
}

// applyRenames does the renames, each within one directory, then makes
// every directory they touched durable.
func applyRenames(ds dirs, renames []rename) error {
	var touched []*dir
	for _, r := range renames {
		crashPoint("rename")
		d, err := ds.open(filepath.Dir(r.To))
		if err != nil {
			return pathError("replace", r.To, err)
		}
		if err := disk.Rename(d, filepath.Base(r.From), filepath.Base(r.To)); err != nil {
			return fmt.Errorf("replacing %s: %w", r.To, err)
		}
		remember(r.To)
		if !slices.Contains(touched, d) {
			touched = append(touched, d)
		}
	}
	for _, d := range touched {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func writeJournal(ds dirs, path string, renames []rename) error {
	data, err := json.Marshal(renames)
	if err != nil {
		return fmt.Errorf("encoding journal: %w", err)
	}
	// Journals live in the state directory, which only certkeeper reads:
	// if it is made here, it is made private.
	d, err := ds.make(filepath.Dir(path), 0o700)
	if err != nil {
		return fmt.Errorf("writing journal: %w", pathError("write", path, err))
	}
	tmp, err := writeSynced(d, File{Path: path, Data: data, Mode: 0o600, UID: -1, GID: -1})
	if err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	crashPoint("journal")
	if err := disk.Rename(d, filepath.Base(tmp), filepath.Base(path)); err != nil {
		disk.Remove(d, filepath.Base(tmp))
		return fmt.Errorf("writing journal: %w", err)
	}
	return syncDir(d)
}

func removeSynced(ds dirs, path string) error {
	crashPoint("commit")
	d, err := ds.open(filepath.Dir(path))
	if err == nil {
		err = disk.Remove(d, filepath.Base(path))
	}
	if err != nil {
		return fmt.Errorf("removing journal: %w", err)
	}
	return syncDir(d)
}

// syncTempDirs makes the names of the pending temp files durable, one
// fsync per directory.
func syncTempDirs(ds dirs, pending []rename) error {
	var done []string
	for _, r := range pending {
		path := filepath.Dir(r.From)
		if slices.Contains(done, path) {
			continue
		}
		done = append(done, path)
		d, err := ds.open(path)
		if err != nil {
			return err
		}
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(d *dir) error {
	if err := disk.SyncDir(d); err != nil {
		return fmt.Errorf("syncing %s: %w", d.path, err)
	}
	return nil
}

// Recover finishes a set write that a crash interrupted, then removes temp
// files left beside the given destinations (and the journal). Call it
// before reading any of them. destinations must be every path the set
// writes: the journal is replayed only within them (see finishJournal).
func Recover(journal string, destinations []string) error {
	return RecoverSets([]Set{{Journal: journal, Destinations: destinations}})[0]
}

// Finish is Recover without the sweep of stray temp files: between two
// writes in one process that is all a set needs, and it reads no
// directory.
func Finish(journal string, destinations []string) error {
	ds := dirs{}
	defer ds.close()
	return finishJournal(ds, journal, destinations)
}
