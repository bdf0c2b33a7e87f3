package sinks

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The walk from / (resolve.go) costs two system calls per component and
// one more to close each: for the agent's two directories per set, some
// thirty calls a set, again for every set and every group. So the
// directories walks reach are kept open, and a later walk to the same
// path takes the kept descriptor after one check instead: a stat of the
// path (without following a final symlink) must name the same directory
// (device and inode) as the descriptor, and that directory must still
// pass checkDir (owner, mode).
//
// What this keeps: operations go through a descriptor for the very
// directory the walk checked, which no symlink swap redirects; a directory
// moved away, replaced, or replaced by a symlink to somewhere else no
// longer has its path lead to the kept inode, so the next use walks again
// and refuses what the walk refuses; a directory whose own mode or owner
// became unsafe is refused at once. (The inode number cannot be reused
// while the descriptor holds the inode.) What it gives up: a component
// above the directory that becomes unsafe, or is replaced by a symlink
// leading to the same directory, is noticed only when the directory's
// path stops leading to it or the entry is dropped; meanwhile the bytes
// still land in the directory that was checked, which is all a walk now
// could promise, since whoever could change such a component could also
// do so just after a walk.
//
// A kept descriptor pins its file system (umount says busy), so entries
// unused for keptIdle are closed, and at most maxKept are kept.

const maxKept = 64

// keptIdle is a var so that a test need not wait half a minute.
var keptIdle = 30 * time.Second

type keptDir struct {
	dir      dir
	dev, ino uint64
	euid     int
	// Under keptMu.
	refs    int
	dropped bool // out of the cache: closed when refs reaches 0
	used    time.Time
}

var (
	keptMu    sync.Mutex
	kept      = map[string]*keptDir{}
	keptSweep *time.Timer
)

// cachedWalk is walk(abs, mk) through the cache. abs is absolute and
// clean. The caller closes the result as any dir.
func cachedWalk(abs string, mk *mkdirs) (*dir, error) {
	euid := os.Geteuid()
	keptMu.Lock()
	k := kept[abs]
	if k != nil {
		k.refs++
	}
	keptMu.Unlock()
	if k != nil {
		if k.euid == euid && k.still(abs) {
			return &k.dir, nil
		}
		keptMu.Lock()
		k.drop()
		keptMu.Unlock()
		k.release()
	}
	d, err := walk(abs, mk)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if unix.Fstat(d.fd(), &st) != nil {
		return d, nil // not kept; the walk's own checks stand
	}
	keptMu.Lock()
	defer keptMu.Unlock()
	if kept[abs] != nil || !makeRoom() {
		return d, nil
	}
	k = &keptDir{dir: *d, dev: st.Dev, ino: st.Ino, euid: euid, refs: 1, used: time.Now()}
	k.dir.kept = k
	kept[abs] = k
	if keptSweep == nil {
		keptSweep = time.AfterFunc(keptIdle, sweepKept)
	}
	return &k.dir, nil
}

// still says whether abs still leads to k's directory and that directory
// is still one certkeeper may use.
func (k *keptDir) still(abs string) bool {
	var st unix.Stat_t
	if unix.Fstatat(unix.AT_FDCWD, abs, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return st.Dev == k.dev && st.Ino == k.ino && checkDir(&k.dir, k.euid, &st) == nil
}

// release gives back a use of k.
func (k *keptDir) release() {
	keptMu.Lock()
	defer keptMu.Unlock()
	k.refs--
	k.used = time.Now()
	if k.dropped && k.refs == 0 {
		unix.Close(k.dir.fdno)
	}
}

// drop takes k out of the cache (under keptMu); it is closed once unused.
func (k *keptDir) drop() {
	if k.dropped {
		return
	}
	k.dropped = true
	if kept[k.dir.path] == k {
		delete(kept, k.dir.path)
	}
	if k.refs == 0 {
		unix.Close(k.dir.fdno)
	}
}

// makeRoom makes room for one more entry (under keptMu), dropping an
// unused one if the cache is full; false if every entry is in use.
func makeRoom() bool {
	if len(kept) < maxKept {
		return true
	}
	var oldest *keptDir
	for _, k := range kept {
		if k.refs == 0 && (oldest == nil || k.used.Before(oldest.used)) {
			oldest = k
		}
	}
	if oldest == nil {
		return false
	}
	oldest.drop()
	return true
}

// sweepKept closes the entries unused for keptIdle, and comes back while
// any is left.
func sweepKept() {
	keptMu.Lock()
	defer keptMu.Unlock()
	for _, k := range kept {
		if k.refs == 0 && time.Since(k.used) >= keptIdle {
			k.drop()
		}
	}
	if len(kept) == 0 {
		keptSweep = nil
		return
	}
	keptSweep.Reset(keptIdle)
}
