package sinks

import (
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
var ours = struct {
	sync.Mutex
	m map[string]stamp
}{m: map[string]stamp{}}

func remember(path string) {
	s, ok := stampOf(path)
	ours.Lock()
	defer ours.Unlock()
	if ok {
		ours.m[path] = s
	} else {
		delete(ours.m, path)
	}
}

// rememberGone records that this process removed path (a rollback taking
// away a file its change had created), so the deletion event is known as
// its own too.
func rememberGone(path string) {
	ours.Lock()
	defer ours.Unlock()
	ours.m[path] = stamp{gone: true}
}

// Ours reports whether the file at path is exactly as this process last
// left it (same inode, size, mtime, mode and owner, or still absent after
// this process removed it), so a change event for it was certkeeper's own
// doing. A file replaced, edited, re-moded, deleted or created by anyone
// else is not ours.
func Ours(path string) bool {
	ours.Lock()
	want, known := ours.m[path]
	ours.Unlock()
	if !known {
		return false
	}
	got, ok := stampOf(path)
	if want.gone {
		return !ok
	}
	return ok && got == want
}
