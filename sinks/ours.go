package sinks

import (
	"hash/maphash"
	"os"
	"sync"
	"syscall"
)

// stamp identifies one version of a file without reading it; gone is a
// file this process removed.
type stamp struct {
	ino, dev uint64
	size     int64
	mtime    int64
	mode     uint32
	uid, gid uint32
	gone     bool
}

func stampOf(path string) (stamp, bool) {
	info, err := os.Lstat(path)
	if err != nil {
		return stamp{}, false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return stamp{}, false
	}
	return stamp{ino: st.Ino, dev: uint64(st.Dev), size: st.Size, mtime: info.ModTime().UnixNano(), mode: st.Mode, uid: st.Uid, gid: st.Gid}, true
}

// ours remembers what this process last put at each path. A watcher of
// output directories sees certkeeper's own writes as changes too; with a
// thousand certificates that was thousands of events, each answered by a
// pass that re-checked the certificate against disk for nothing.
//
// It holds four or five paths per certificate for the life of the
// process, so it keeps 64-bit keyed hashes of the path and of the stamp
// rather than the path string and the 48-byte stamp: about 380 bytes per
// certificate less (heap profile at 10,000 certificates: 3.2 MB in this
// map plus 3 MB of state record paths it alone kept alive). Two paths or
// two stamps hashing alike (2^-64, with a seed chosen at start so no file
// name can be picked to collide) would at worst let one change event
// through unnoticed, which the next pass's check of the files catches.
var ours = struct {
	sync.Mutex
	m map[uint64]mark
}{m: map[uint64]mark{}}

var oursSeed = maphash.MakeSeed()

// mark is what ours holds per path: the hash of the stamp this process
// left there, or that this process removed the file.
type mark struct {
	sum  uint64
	gone bool
}

func pathKey(path string) uint64 { return maphash.String(oursSeed, path) }

func (s stamp) sum() uint64 { return maphash.Comparable(oursSeed, s) }

func remember(path string) {
	s, ok := stampOf(path)
	k := pathKey(path)
	ours.Lock()
	defer ours.Unlock()
	if ok {
		ours.m[k] = mark{sum: s.sum()}
	} else {
		delete(ours.m, k)
	}
}

// rememberGone records that this process removed path (a rollback taking
// away a file its change had created), so the deletion event is known as
// its own too.
func rememberGone(path string) {
	k := pathKey(path)
	ours.Lock()
	defer ours.Unlock()
	ours.m[k] = mark{gone: true}
}

// Ours reports whether the file at path is exactly as this process last
// left it (same inode, size, mtime, mode and owner, or still absent after
// this process removed it), so a change event for it was certkeeper's own
// doing. A file replaced, edited, re-moded, deleted or created by anyone
// else is not ours.
func Ours(path string) bool {
	ours.Lock()
	want, known := ours.m[pathKey(path)]
	ours.Unlock()
	if !known {
		return false
	}
	got, ok := stampOf(path)
	if want.gone {
		return !ok
	}
	return ok && got.sum() == want.sum
}
