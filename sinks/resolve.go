package sinks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Every path certkeeper writes or reads back is reached from / one
// component at a time, each opened relative to the one before with
// O_NOFOLLOW, and every directory on the way must be one that nobody but
// root and the running user can change: owned by one of them, and not
// writable by group or others unless sticky. A symlink anywhere is
// refused. What a check approved therefore stays as it was: nobody else
// can swap a component afterwards, and the operations themselves go
// through the directory's descriptor, not its path.
//
// Why a walk of our own: openat2(RESOLVE_NO_SYMLINKS) refuses links in
// one call but says nothing about who owns the directories it went
// through, and a directory another user owns is as good as a symlink to
// that user (rename it, put a link in its place); os.Root keeps a walk
// inside one directory but follows links that stay inside it, and trusts
// the path to the root itself. The walk costs two system calls per
// component (openat, fstat), the same work openat2 does in the kernel.

// dir is a directory reached by the walk, held open (O_PATH) so that
// names in it are resolved against the directory that was checked. A raw
// descriptor, not an *os.File: the walk opens one per component, and
// os.NewFile costs a system call of its own each time.
type dir struct {
	path string // absolute and clean
	fdno int
	// kept, for a directory from the cache (dircache.go): close gives it
	// back instead of closing it.
	kept *keptDir
}

func (d *dir) fd() int { return d.fdno }

func (d *dir) close() {
	switch {
	case d == nil:
	case d.kept != nil:
		d.kept.release()
	default:
		unix.Close(d.fdno)
	}
}

// join is the path of name in d.
func (d *dir) join(name string) string { return filepath.Join(d.path, name) }

// UnsafePathError is a path certkeeper refuses to write or read, and why.
type UnsafePathError struct {
	Op   string // "write", "read", "replay"
	Path string
	// Err names the component at fault and what is wrong with it.
	Err error
}

func (e *UnsafePathError) Error() string {
	return fmt.Sprintf("refusing to %s %s: %v", e.Op, e.Path, e.Err)
}

func (e *UnsafePathError) Unwrap() error { return e.Err }

// openDir walks to the directory path (or takes it from the cache of
// directories walked before); it must exist.
func openDir(path string) (*dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return cachedWalk(abs, nil)
}

// mkdirs says how a walk makes the directories it finds missing.
type mkdirs struct {
	perm fs.FileMode
	// exact sets perm and gid on each directory made, whatever the umask;
	// without it the umask applies and the group is the process's.
	exact bool
	gid   int // with exact; -1: the process's group
	made  []string
}

// MakeParents makes the directory file goes in, and its missing parents,
// through the same walk writes take (no symlink, no directory a stranger
// could change), each made with exactly perm and, when gid is not -1,
// group gid, whatever the umask. It returns the directories it made,
// outermost first; one that exists is left exactly as it is. On an error
// (a refusal reads as one to write file) it returns those made before it.
func MakeParents(file string, perm fs.FileMode, gid int) ([]string, error) {
	mk := &mkdirs{perm: perm, exact: true, gid: gid}
	abs, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, pathError("write", file, err)
	}
	// The agent calls this before every set it writes: a directory kept
	// from an earlier walk exists, so there is nothing to make in it.
	d, err := cachedWalk(abs, mk)
	if err != nil {
		return mk.made, pathError("write", file, err)
	}
	d.close()
	return mk.made, nil
}

func walk(path string, mk *mkdirs) (*dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	cur := &dir{path: "/", fdno: fd}
	euid := os.Geteuid()
	if err := checkDir(cur, euid, nil); err != nil {
		cur.close()
		return nil, err
	}
	for _, name := range strings.Split(strings.TrimPrefix(abs, "/"), "/") {
		if name == "" {
			continue // the path was "/"
		}
		next, err := step(cur, name, mk, euid)
		cur.close()
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// step opens name in d as a directory, without following a symlink, and
// checks it; when it is missing and mk is not nil, it is made.
func step(d *dir, name string, mk *mkdirs, euid int) (*dir, error) {
	path := d.join(name)
	open := func() (int, error) {
		return unix.Openat(d.fd(), name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	fd, err := open()
	if errors.Is(err, unix.ENOENT) && mk != nil {
		switch merr := disk.Mkdir(d, name, mk.perm); {
		case merr == nil:
			if err := mk.finish(d, name); err != nil {
				return nil, err
			}
		case !errors.Is(merr, fs.ErrExist):
			return nil, merr
		}
		// Made by another writer meanwhile: it may not have synced the
		// parent yet, so sync it here too.
		if err := syncDir(d); err != nil {
			return nil, err
		}
		fd, err = open()
	}
	switch {
	case errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP):
		var st unix.Stat_t
		if unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil, &symlinkError{path: path}
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: unix.ENOTDIR}
	case err != nil:
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	next := &dir{path: path, fdno: fd}
	if err := checkDir(next, euid, nil); err != nil {
		next.close()
		return nil, err
	}
	return next, nil
}

// finish gives the directory name, just made in d, its exact mode and
// group, and records it as made. Mkdir applied the umask, which only
// takes bits away, so the directory was never more open than asked.
func (mk *mkdirs) finish(d *dir, name string) error {
	path := d.join(name)
	if mk.exact {
		if err := unix.Fchmodat(d.fd(), name, uint32(mk.perm.Perm()), 0); err != nil {
			return &fs.PathError{Op: "chmod", Path: path, Err: err}
		}
		if mk.gid >= 0 {
			if err := unix.Fchownat(d.fd(), name, -1, mk.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return &fs.PathError{Op: "chown", Path: path, Err: fmt.Errorf("group %d: %w", mk.gid, err)}
			}
		}
	}
	mk.made = append(mk.made, path)
	return nil
}

// symlinkError is a symlink where a walk needed a directory or a file.
type symlinkError struct{ path string }

func (e *symlinkError) Error() string {
	return e.path + " is a symlink, and certkeeper follows no symlink in the paths it writes or reads (give the real path)"
}

// checkDir refuses a directory that someone other than root and the
// running user (euid) could change. st, if not nil, is d's stat, just
// taken; otherwise checkDir takes it.
func checkDir(d *dir, euid int, st *unix.Stat_t) error {
	if st == nil {
		st = new(unix.Stat_t)
		if err := unix.Fstat(d.fd(), st); err != nil {
			return &fs.PathError{Op: "stat", Path: d.path, Err: err}
		}
	}
	if uid := int(st.Uid); uid != 0 && uid != euid {
		return &unsafeDirError{path: d.path, why: fmt.Sprintf("is owned by %s, who could swap what certkeeper puts there; only directories owned by root or by %s (who certkeeper runs as) are used",
			DescribeUID(uid), DescribeUID(euid))}
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return &unsafeDirError{path: d.path, why: fmt.Sprintf("is writable by group or others (mode %04o) and not sticky: anyone who may write there could swap what certkeeper puts there", st.Mode&0o7777)}
	}
	return nil
}

type unsafeDirError struct{ path, why string }

func (e *unsafeDirError) Error() string { return "directory " + e.path + " " + e.why }

// shared says whether others may create names in d (a sticky directory
// writable by group or others, such as /tmp): a file there may be anyone's.
func shared(d *dir) bool {
	var st unix.Stat_t
	return unix.Fstat(d.fd(), &st) == nil && st.Mode&0o022 != 0
}

// DescribeUID names a user the way refusals do: "uid 0 (root)", or
// "uid 1234" when the user database has no such entry.
func DescribeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

// dirs holds the directories one operation works in, each walked once.
type dirs map[string]*dir

// open returns the directory path, walking to it on first use.
func (ds dirs) open(path string) (*dir, error) { return ds.get(path, nil) }

// make is open, creating what is missing with perm.
func (ds dirs) make(path string, perm fs.FileMode) (*dir, error) {
	return ds.get(path, &mkdirs{perm: perm}) // not exact: gid is not read
}

func (ds dirs) get(path string, mk *mkdirs) (*dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if d := ds[abs]; d != nil {
		return d, nil
	}
	d, err := cachedWalk(abs, mk)
	if err != nil {
		return nil, err
	}
	ds[abs] = d
	return d, nil
}

func (ds dirs) close() {
	for _, d := range ds {
		d.close()
	}
}
