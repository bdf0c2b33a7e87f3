package sinks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// MaxFile is the most certkeeper reads from one file it wrote (an output
// or its own state), and the largest file it takes for a previous version
// of an output it replaces. The largest legitimate one is a CA bundle: at
// about 2 KB of PEM per CA, 16 MiB holds some 8,000 CAs. A file larger
// than this is refused before any of it is read, so memory stays bounded
// whatever sits at a destination (a 300 MiB file there used to cost over
// 600 MiB). A writer of larger files (trust CRL files) sets File.Limit.
const MaxFile = 16 << 20

// TooLargeError is a file larger than certkeeper reads or replaces.
type TooLargeError struct {
	Size, Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("it holds %d bytes, more than the %d certkeeper reads from a file it wrote there (it is not certkeeper's: move it away, or fix the path)", e.Size, e.Limit)
}

// NotOwnError is state certkeeper did not write: another user's file, or
// one others may write.
type NotOwnError struct {
	UID  int
	Mode fs.FileMode
	// Dir is set when it is the directory holding the file that is not
	// certkeeper's own.
	Dir string
}

func (e *NotOwnError) Error() string {
	what := "it is"
	if e.Dir != "" {
		what = "its directory " + e.Dir + " is"
	}
	if e.UID != os.Geteuid() {
		return fmt.Sprintf("%s owned by %s, not by %s, who certkeeper runs as; certkeeper trusts no state it did not write", what, DescribeUID(e.UID), DescribeUID(os.Geteuid()))
	}
	return fmt.Sprintf("%s writable by group or others (mode %04o); certkeeper trusts no state others could have written", what, e.Mode.Perm())
}

// ReadFile reads an output file (a destination), reached without
// following a symlink in any component, through directories only root or
// the running user can change, at most MaxFile bytes.
func ReadFile(path string) ([]byte, error) { return ReadFileUpTo(path, MaxFile) }

// ReadFileUpTo is ReadFile with another limit, for files that may be
// larger than MaxFile (a CRL file).
func ReadFileUpTo(path string, limit int64) ([]byte, error) {
	return read("read", path, limit, nil)
}

// ReadState reads a file of certkeeper's own state (records, journals,
// service and trust states, pending work): the read-back rule of the
// privilege model. Beyond what ReadFile checks, the file and the directory
// holding it must belong to the running user and be writable by no one
// else; anything else is refused with whose it is, and never used.
func ReadState(path string) ([]byte, error) {
	return read("read", path, MaxFile, stateOwned)
}

// stateOwned is ReadState's rule, for a file's directory (name "") and
// then the file.
func stateOwned(d *dir, name string, st *unix.Stat_t) error {
	mode := fs.FileMode(st.Mode & 0o777)
	if int(st.Uid) == os.Geteuid() && st.Mode&0o022 == 0 {
		return nil
	}
	e := &NotOwnError{UID: int(st.Uid), Mode: mode}
	if name == "" {
		e.Dir = d.path
	}
	return e
}

// ownership is a check of who may own a file (or, with name "", the
// directory holding it) before its bytes are used.
type ownership func(d *dir, name string, st *unix.Stat_t) error

func read(op, path string, limit int64, owned ownership) ([]byte, error) {
	d, err := openDir(filepath.Dir(path))
	if err != nil {
		return nil, pathError(op, path, err)
	}
	defer d.close()
	if owned != nil {
		var st unix.Stat_t
		if err := unix.Fstat(d.fd(), &st); err != nil {
			return nil, pathError(op, path, err)
		}
		if err := owned(d, "", &st); err != nil {
			return nil, pathError(op, path, err)
		}
	}
	data, _, err := readIn(d, filepath.Base(path), limit, owned)
	if err != nil {
		return nil, pathError(op, path, err)
	}
	return data, nil
}

// pathError says what was refused, or what failed, for path.
func pathError(op, path string, err error) error {
	var (
		link  *symlinkError
		dirE  *unsafeDirError
		large *TooLargeError
		own   *NotOwnError
		other *notRegularError
		taken *foreignFileError
	)
	if errors.As(err, &link) || errors.As(err, &dirE) || errors.As(err, &large) || errors.As(err, &own) || errors.As(err, &other) || errors.As(err, &taken) {
		return &UnsafePathError{Op: op, Path: path, Err: err}
	}
	return fmt.Errorf("%sing %s: %w", op, path, err)
}

// foreignFileError is another user's file in a directory where anyone
// may create files.
type foreignFileError struct{ uid int }

func (e *foreignFileError) Error() string {
	return fmt.Sprintf("it is owned by %s, in a directory where anyone may create files: certkeeper does not take another user's file for its own", DescribeUID(e.uid))
}

type notRegularError struct{ mode fs.FileMode }

func (e *notRegularError) Error() string {
	return fmt.Sprintf("it is not a regular file (%s)", e.mode.Type())
}

// readIn reads name in d: never through a symlink, never a fifo or a
// device, never more than limit bytes, and, with owned, only a file that
// passes it. Whose the file is, is judged before it is opened, so a file
// this user may not open is refused for what it is, not as a permission
// error. It also returns the file's metadata.
func readIn(d *dir, name string, limit int64, owned ownership) ([]byte, *unix.Stat_t, error) {
	var pre unix.Stat_t
	if err := unix.Fstatat(d.fd(), name, &pre, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, nil, &fs.PathError{Op: "stat", Path: d.join(name), Err: err}
	}
	if pre.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil, nil, &symlinkError{path: d.join(name)}
	}
	if err := usable(d, name, &pre, limit, owned); err != nil {
		return nil, &pre, err
	}
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, nil, &symlinkError{path: d.join(name)}
	}
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: d.join(name), Err: err}
	}
	defer unix.Close(fd)
	st := new(unix.Stat_t)
	if err := unix.Fstat(fd, st); err != nil {
		return nil, nil, &fs.PathError{Op: "stat", Path: d.join(name), Err: err}
	}
	// Judged again on what was opened: only root or this user could have
	// replaced it since, in a directory the walk accepted, but the bytes
	// read must be those of a file that passes.
	if err := usable(d, name, st, limit, owned); err != nil {
		return nil, st, err
	}
	// Sized from fstat, so a file read whole costs its size once, not the
	// doublings of a growing buffer. One byte more than that is asked
	// for: getting it means the file grew while being read (certkeeper
	// replaces its files, it never appends), and it is refused.
	data := make([]byte, st.Size+1)
	n := 0
	for n < len(data) {
		m, err := unix.Read(fd, data[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, st, &fs.PathError{Op: "read", Path: d.join(name), Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	if int64(n) > st.Size {
		return nil, st, fmt.Errorf("%s grew while it was read: certkeeper replaces its files whole, so someone else is writing it", d.join(name))
	}
	return data[:n], st, nil
}

// usable says why a file reached in d may not be read or replaced.
func usable(d *dir, name string, st *unix.Stat_t, limit int64, owned ownership) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &notRegularError{mode: fileMode(st.Mode)}
	}
	if owned != nil {
		if err := owned(d, name, st); err != nil {
			return err
		}
	} else if shared(d) && int(st.Uid) != 0 && int(st.Uid) != os.Geteuid() {
		// In a sticky directory anyone may write to (such as /tmp), the
		// name may have been taken first by someone else.
		return &foreignFileError{uid: int(st.Uid)}
	}
	if st.Size > limit {
		return &TooLargeError{Size: st.Size, Limit: limit}
	}
	return nil
}

// fileMode turns a stat mode into its fs.FileMode type bits.
func fileMode(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return 0
}
