//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// watcher notices, through inotify on one directory, when every expected
// set of files is in place, and when. It costs the machine one read per
// batch of events, so it does not compete with the agent being measured
// the way polling thousands of paths would.
type watcher struct {
	dir  string
	f    *os.File
	done chan struct{} // closed when every set is complete

	mu        sync.Mutex
	setOf     map[string]int // file name -> set index
	need      []int          // files still missing per set
	seen      map[string]bool
	remaining int
	last      time.Time // when the last set completed
	nonEmpty  bool      // a file counts only once it has bytes
}

// newWatcher watches dir for sets: sets[i] lists the file names (not paths)
// of set i. With nonEmpty a file counts only when it has bytes (for agents
// that might write in place).
func newWatcher(dir string, sets [][]string, nonEmpty bool) (*watcher, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("inotify on %s: %w", dir, err)
	}
	w := &watcher{
		dir:      dir,
		f:        os.NewFile(uintptr(fd), "inotify"),
		done:     make(chan struct{}),
		setOf:    map[string]int{},
		need:     make([]int, len(sets)),
		seen:     map[string]bool{},
		nonEmpty: nonEmpty,
	}
	for i, names := range sets {
		for _, n := range names {
			w.setOf[n] = i
		}
		w.need[i] = len(names)
	}
	w.remaining = len(sets)
	if w.remaining == 0 {
		close(w.done)
	}
	go w.loop()
	return w, nil
}

func (w *watcher) loop() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return // closed
		}
		now := time.Now()
		var names []string
		overflow := false
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			if ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
				overflow = true
			}
			nameBytes := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			if i := bytes.IndexByte(nameBytes, 0); i >= 0 {
				nameBytes = nameBytes[:i]
			}
			if len(nameBytes) > 0 {
				names = append(names, string(nameBytes))
			}
			off += syscall.SizeofInotifyEvent + int(ev.Len)
		}
		if overflow {
			// Events were lost: look at the directory itself.
			entries, err := os.ReadDir(w.dir)
			if err == nil {
				for _, e := range entries {
					names = append(names, e.Name())
				}
			}
		}
		w.mark(names, now)
	}
}

func (w *watcher) mark(names []string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, name := range names {
		set, ok := w.setOf[name]
		if !ok || w.seen[name] {
			continue
		}
		if w.nonEmpty {
			if fi, err := os.Stat(w.dir + "/" + name); err != nil || fi.Size() == 0 {
				continue
			}
		}
		w.seen[name] = true
		w.need[set]--
		if w.need[set] == 0 {
			w.remaining--
			w.last = now
			if w.remaining == 0 {
				close(w.done)
			}
		}
	}
}

// wait returns when every set completed, or fails after timeout or when
// the process ends (exited is closed) first.
func (w *watcher) wait(timeout time.Duration, exited <-chan struct{}) (time.Time, error) {
	select {
	case <-w.done:
	case <-exited:
		select {
		case <-w.done:
		default:
			return time.Time{}, fmt.Errorf("process exited with %d sets still missing", w.missing())
		}
	case <-time.After(timeout):
		return time.Time{}, fmt.Errorf("%d sets still missing after %s", w.missing(), timeout)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, nil
}

func (w *watcher) missing() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.remaining
}

func (w *watcher) close() { w.f.Close() }
