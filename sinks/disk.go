package sinks

import (
	"io/fs"
	"os"
)

// fileSystem is every call by which a set write or a recovery changes the
// disk or makes a change durable. Reads go to the os package directly. The
// real one is the os package; the crash test (crash_test.go) records the
// calls and replays every crash point with whatever was not yet fsynced
// lost, which a SIGKILL (the page cache survives it) can never show.
type fileSystem interface {
	CreateTemp(dir, pattern string) (tempFile, error)
	Mkdir(dir string, perm fs.FileMode) error
	Rename(from, to string) error
	Remove(path string) error
	// SyncDir makes the entries of dir (creations, renames, removals)
	// durable.
	SyncDir(dir string) error
}

// tempFile is a file CreateTemp made; *os.File is one.
type tempFile interface {
	Name() string
	Chmod(mode fs.FileMode) error
	Chown(uid, gid int) error
	Write(b []byte) (int, error)
	Sync() error
	Close() error
}

// disk is where sinks writes; only tests replace it.
var disk fileSystem = osDisk{}

type osDisk struct{}

func (osDisk) CreateTemp(dir, pattern string) (tempFile, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return f, nil
}

func (osDisk) Mkdir(dir string, perm fs.FileMode) error { return os.Mkdir(dir, perm) }
func (osDisk) Rename(from, to string) error             { return os.Rename(from, to) }
func (osDisk) Remove(path string) error                 { return os.Remove(path) }

func (osDisk) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
