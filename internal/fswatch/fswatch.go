// Package fswatch is certkeeper's one wrapper of fsnotify: it reports
// changes to a set of files, and to whole directories. It watches the
// directories that hold the files, not the files: editors and config
// management tools replace a file by renaming a new one over it, and a
// watch on the file itself is lost at the first such replace. Events are
// batched until the directory has been quiet for a moment, so a tool that
// writes in several steps produces one report.
//
// Live config reload, the watch of output files and the watch of
// unmanaged certificate files (telemetry/filewatch) all use it.
package fswatch

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Options tune a Watcher.
type Options struct {
	// Quiet is how long events must stop before a batch is reported.
	Quiet time.Duration
	// MaxWait caps how long a burst that never goes quiet (a busy
	// directory) postpones its report, counted from its first event;
	// zero means no cap.
	MaxWait time.Duration
	// Chmod reports mode and owner changes too. A config file's mode is
	// of no interest; an output key made world-readable is.
	Chmod bool
	// Lost reports a watch error (an overflow: events were lost) as an
	// Event with What "lost" and no Path, for watchers that then read
	// everything again; without it the error is only logged.
	Lost bool
	Log  *slog.Logger
	// Now is the clock bursts are timed by; nil means time.Now.
	Now func() time.Time
}

// Event says what happened to one watched file during a batch.
type Event struct {
	Path string
	// What is "deleted", "replaced" (created, or renamed over),
	// "modified", "mode changed", or "lost" (see Options.Lost).
	What string
}

// Watcher watches files by their directories.
type Watcher struct {
	opts Options
	fsw  *fsnotify.Watcher

	mu      sync.Mutex
	files   map[string]bool   // the files of interest
	alias   map[string]string // symlink target -> the watched link
	whole   map[string]bool   // directories every entry of which is of interest
	dirs    map[string]bool   // directories fsw watches
	fileDir map[string]bool   // directories the files (and aliases) need
}

// New makes a watcher with nothing to watch yet.
func New(opts Options) (*Watcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Quiet <= 0 {
		opts.Quiet = 500 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Watcher{opts: opts, fsw: fsw, files: map[string]bool{}, alias: map[string]string{}, whole: map[string]bool{},
		dirs: map[string]bool{}, fileDir: map[string]bool{}}, nil
}

// Set replaces the files watched. A directory that does not exist yet is
// skipped; calling Set again (with the same files) picks it up once it
// does.
func (w *Watcher) Set(files []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.files = map[string]bool{}
	w.alias = map[string]string{}
	w.fileDir = map[string]bool{}
	realDirs := map[string]string{}
	for _, f := range files {
		f = filepath.Clean(f)
		w.files[f] = true
		w.fileDir[filepath.Dir(f)] = true
		// A file that is a symlink (a Kubernetes-style ..data link, a
		// config kept in a repository checkout) changes where it points.
		if real, ok := evalSymlinks(f, realDirs); ok && real != f {
			w.alias[real] = f
			w.fileDir[filepath.Dir(real)] = true
		}
	}
	w.update()
}

// evalSymlinks is filepath.EvalSymlinks(f), with the directories already
// resolved in dirs: the daemon sets every output file of every
// certificate at start and each minute, most of them in a few
// directories, and resolving each path from the root was 0.35 s of CPU
// per call with 10,000 certificates (profile). Only a file that is itself
// a symlink is resolved whole; for any other, resolving its directory
// resolves it.
func evalSymlinks(f string, dirs map[string]string) (string, bool) {
	fi, err := os.Lstat(f)
	if err != nil {
		return "", false
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		real, err := filepath.EvalSymlinks(f)
		return real, err == nil
	}
	dir := filepath.Dir(f)
	real, known := dirs[dir]
	if !known {
		if real, err = filepath.EvalSymlinks(dir); err != nil {
			real = ""
		}
		dirs[dir] = real
	}
	if real == "" {
		return "", false
	}
	return filepath.Join(real, filepath.Base(f)), true
}

// Rewatch watches the directories Set and SetDirs need that it could not
// watch before: they did not exist, or were deleted since. It is Set with
// the same files, without resolving them again; a caller whose files
// cannot be symlinks (certkeeper's outputs: sinks refuses a link anywhere
// on their path) loses nothing by it, and at 10,000 certificates saves
// resolving 40,000 paths each time it looks.
func (w *Watcher) Rewatch() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.update()
}

// SetDirs replaces the directories watched whole: an event for any entry
// in one is reported with the entry's path. Like Set, it picks up a
// directory that did not exist at the previous call.
func (w *Watcher) SetDirs(dirs []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.whole = map[string]bool{}
	for _, d := range dirs {
		w.whole[filepath.Clean(d)] = true
	}
	w.update()
}

// update makes fsnotify watch exactly the directories Set and SetDirs
// need; w.mu is held.
func (w *Watcher) update() {
	want := maps.Clone(w.fileDir)
	for d := range w.whole {
		want[d] = true
	}
	for dir := range w.dirs {
		if !want[dir] {
			w.fsw.Remove(dir)
			delete(w.dirs, dir)
		}
	}
	for dir := range want {
		if w.dirs[dir] {
			continue
		}
		if err := w.fsw.Add(dir); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				w.opts.Log.Warn("cannot watch directory; changes there are seen at the next pass only", "dir", dir, "error", err)
			}
			continue
		}
		w.dirs[dir] = true
	}
}

// Run reports batches of events to fn until ctx ends, then stops
// watching. fn runs on Run's goroutine.
func (w *Watcher) Run(ctx context.Context, fn func([]Event)) {
	defer w.fsw.Close()
	pending := map[string]fsnotify.Op{}
	lost := false
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// burst is when the first event of the pending batch came.
	var burst time.Time
	poke := func() {
		now := w.opts.Now()
		if burst.IsZero() {
			burst = now
		}
		timer.Reset(batchWait(burst, now, w.opts.Quiet, w.opts.MaxWait))
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod && !w.opts.Chmod {
				continue
			}
			hit := w.match(ev)
			for _, p := range hit {
				pending[p] |= ev.Op
			}
			if len(hit) > 0 {
				poke()
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// An overflow loses events; the agent's own passes still
			// converge, so this is worth a warning, not more.
			w.opts.Log.Warn("file watch error", "error", err)
			if w.opts.Lost {
				lost = true
				poke()
			}
		case <-timer.C:
			batch := make([]Event, 0, len(pending)+1)
			if lost {
				batch = append(batch, Event{What: "lost"})
			}
			for p, op := range pending {
				batch = append(batch, Event{Path: p, What: describe(p, op)})
			}
			slices.SortFunc(batch, func(a, b Event) int { return strings.Compare(a.Path, b.Path) })
			clear(pending)
			lost, burst = false, time.Time{}
			fn(batch)
		}
	}
}

// match maps an event to the watched files it concerns.
func (w *Watcher) match(ev fsnotify.Event) []string {
	name := filepath.Clean(ev.Name)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.files[name] {
		return []string{name}
	}
	if link, ok := w.alias[name]; ok {
		return []string{link}
	}
	// Most events name files nobody watches (temp files renamed into
	// place, neighbours); only the two cases below concern a whole
	// directory, so only they pay for a scan of the watched files.
	switch {
	case w.dirs[name] && ev.Has(fsnotify.Remove|fsnotify.Rename):
		// The directory itself went away: its watch is gone with it,
		// so forget it for the next Set to add again.
		w.fsw.Remove(name)
		delete(w.dirs, name)
		out := w.filesIn(name)
		if w.whole[name] {
			out = append(out, name)
		}
		return out
	case strings.HasPrefix(filepath.Base(name), ".."):
		// Kubernetes swaps a "..data" symlink to update every file of a
		// ConfigMap at once; the event names the link, not the files.
		out := w.filesIn(filepath.Dir(name))
		if w.whole[filepath.Dir(name)] {
			out = append(out, name)
		}
		return out
	case w.whole[filepath.Dir(name)]:
		return []string{name}
	}
	return nil
}

// filesIn returns the watched files directly inside dir; w.mu is held.
func (w *Watcher) filesIn(dir string) []string {
	var out []string
	for f := range w.files {
		if filepath.Dir(f) == dir {
			out = append(out, f)
		}
	}
	return out
}

func describe(path string, op fsnotify.Op) string {
	_, err := os.Lstat(path)
	exists := err == nil
	switch {
	case !exists:
		return "deleted"
	case op.Has(fsnotify.Remove | fsnotify.Rename | fsnotify.Create):
		// A rename over the file shows as a Create of its name.
		return "replaced"
	case op.Has(fsnotify.Write):
		return "modified"
	}
	return "mode changed"
}

// batchWait is how long after an event at now to report the batch whose
// first event came at first: quiet, or less when maxWait (if not zero)
// since first runs out sooner.
func batchWait(first, now time.Time, quiet, maxWait time.Duration) time.Duration {
	if maxWait <= 0 {
		return quiet
	}
	return min(quiet, max(first.Add(maxWait).Sub(now), 0))
}
