package sinks

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// fileSystem is every call by which a set write or a recovery changes the
// disk or makes a change durable. Reads go to the system directly (see
// read.go). The real one is osDisk; the crash test (crash_test.go) records
// the calls and replays every crash point with whatever was not yet
// fsynced lost, which a SIGKILL (the page cache survives it) can never
// show. Every call names a directory the walk (resolve.go) reached and a
// name in it, so nothing is resolved through a path that could have
// changed since it was checked.
type fileSystem interface {
	// CreateTemp makes a new file in d, named pattern with its last "*"
	// replaced by a random string, mode 0600.
	CreateTemp(d *dir, pattern string) (tempFile, error)
	Mkdir(d *dir, name string, perm fs.FileMode) error
	// Rename renames from to to, both in d.
	Rename(d *dir, from, to string) error
	Remove(d *dir, name string) error
	// Link gives the file from in d a second name, to, in d. A group
	// commit names its one journal once per set (see group.go).
	Link(d *dir, from, to string) error
	// SyncDir makes the entries of d (creations, renames, removals)
	// durable.
	SyncDir(d *dir) error
}

// tempFile is a file CreateTemp made. Name is its path.
type tempFile interface {
	Name() string
	Chmod(mode fs.FileMode) error
	Chown(uid, gid int) error
	Write(b []byte) (int, error)
	// StartWriteback asks the kernel to start writing the file's bytes
	// out now, without waiting: the Sync that a group's committer makes
	// later (group.go) then finds them written or under way. It promises
	// nothing; only Sync makes the file durable.
	StartWriteback()
	Sync() error
	Close() error
}

// disk is where sinks writes; only tests replace it.
var disk fileSystem = osDisk{}

type osDisk struct{}

// tempRand makes the random part of temp names; tests make it collide.
var tempRand = rand.Uint32

func (osDisk) CreateTemp(d *dir, pattern string) (tempFile, error) {
	prefix, suffix := pattern, ""
	if i := strings.LastIndex(pattern, "*"); i >= 0 {
		prefix, suffix = pattern[:i], pattern[i+1:]
	}
	for try := 0; ; try++ {
		name := prefix + strconv.FormatUint(uint64(tempRand()), 10) + suffix
		fd, err := unix.Openat(d.fd(), name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) && try < 100 {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "createtemp", Path: d.join(pattern), Err: err}
		}
		return &rawFile{fd: fd, name: d.join(name)}, nil
	}
}

// rawFile is a temp file on its bare descriptor. An *os.File would cost
// an fcntl per file to find out whether it can be polled (a regular file
// never can) and a finalizer; a set writes four.
type rawFile struct {
	fd   int
	name string
}

func (f *rawFile) Name() string { return f.name }

func (f *rawFile) Chmod(mode fs.FileMode) error {
	return f.wrap("chmod", unix.Fchmod(f.fd, uint32(mode.Perm())))
}

func (f *rawFile) Chown(uid, gid int) error { return f.wrap("chown", unix.Fchown(f.fd, uid, gid)) }

func (f *rawFile) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Write(f.fd, b[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, f.wrap("write", err)
		}
		if m == 0 {
			return n, f.wrap("write", io.ErrShortWrite)
		}
		n += m
	}
	return n, nil
}

func (f *rawFile) StartWriteback() {
	// Advisory: a file system without it (EINVAL, ENOSYS) loses nothing.
	unix.SyncFileRange(f.fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

func (f *rawFile) Sync() error { return f.wrap("sync", unix.Fsync(f.fd)) }

func (f *rawFile) Close() error {
	err := unix.Close(f.fd)
	f.fd = -1
	return f.wrap("close", err)
}

func (f *rawFile) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: f.name, Err: err}
}

func (osDisk) Mkdir(d *dir, name string, perm fs.FileMode) error {
	if err := unix.Mkdirat(d.fd(), name, uint32(perm.Perm())); err != nil {
		return &fs.PathError{Op: "mkdir", Path: d.join(name), Err: err}
	}
	return nil
}

func (osDisk) Rename(d *dir, from, to string) error {
	if err := unix.Renameat(d.fd(), from, d.fd(), to); err != nil {
		return &os.LinkError{Op: "rename", Old: d.join(from), New: d.join(to), Err: err}
	}
	return nil
}

func (osDisk) Remove(d *dir, name string) error {
	if err := unix.Unlinkat(d.fd(), name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: d.join(name), Err: err}
	}
	return nil
}

func (osDisk) Link(d *dir, from, to string) error {
	if err := unix.Linkat(d.fd(), from, d.fd(), to, 0); err != nil {
		return &os.LinkError{Op: "link", Old: d.join(from), New: d.join(to), Err: err}
	}
	return nil
}

func (osDisk) SyncDir(d *dir) error {
	// The walk holds O_PATH descriptors, which fsync refuses: open the
	// directory itself for reading, through the one already checked.
	fd, err := unix.Openat(d.fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: d.path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return &fs.PathError{Op: "fsync", Path: d.path, Err: err}
	}
	return nil
}
