// Package filewatch keeps track of the certificates in files certkeeper does
// not manage (a bundle a package installed, a certificate another tool
// renews), so their expiry can be exported next to certkeeper's own. It
// only reads: it never writes, moves or locks a watched file.
//
// Files are re-read when their parent directory reports a change (through
// internal/fswatch, which watches directories, because a file replaced by
// rename loses a watch on the file itself) and on a slow periodic rescan for file systems that send
// no events. A file is read again only when its identity, size or mtime
// changed, so a rescan costs a stat per file.
package filewatch

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/internal/fswatch"
)

// maxFileSize keeps a wrong pattern (a log directory) from being slurped.
const maxFileSize = 1 << 20

// Options configure a Watcher.
type Options struct {
	// Paths are files, directories (every file directly inside, except
	// dot files) or glob patterns, absolute.
	Paths []string
	// Rescan is how often everything is read again without an event.
	Rescan time.Duration
	Log    *slog.Logger
	// Settle is how long events must pause before a rescan, so a burst
	// (an editor's save, a package upgrade) is read once; default 200ms.
	Settle time.Duration
	// Now times bursts of events; nil means time.Now.
	Now func() time.Time
}

// Certificate is one certificate found in a watched file.
type Certificate struct {
	Subject  string // RFC 2253, e.g. "CN=web,O=Example"
	NotAfter time.Time
}

// File is what is known about one watched file.
type File struct {
	Path         string
	Certificates []Certificate // empty while the file cannot be read
	// Err says why the current version could not be read; empty if it
	// was.
	Err string
	// ReadErrors counts versions of the file that could not be read.
	ReadErrors int
}

// Watcher reads the watched files and keeps their certificates current.
type Watcher struct {
	opts Options
	log  *slog.Logger
	// noEvents turns fsnotify off, for testing the rescan fallback.
	noEvents bool

	mu    sync.Mutex
	files map[string]*entry
}

type entry struct {
	File
	info fs.FileInfo // what was read; nil when the file is missing
	// ignored files hold PEM but no certificate (a key, DH parameters):
	// remembered so they are not read again until they change.
	ignored bool
}

// New makes a watcher; Run starts it.
func New(o Options) *Watcher {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Rescan <= 0 {
		o.Rescan = 5 * time.Minute
	}
	if o.Settle <= 0 {
		o.Settle = 200 * time.Millisecond
	}
	return &Watcher{opts: o, log: o.Log, files: map[string]*entry{}}
}

// Files returns every watched file, sorted by path.
func (w *Watcher) Files() []File {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]File, 0, len(w.files))
	for _, e := range w.files {
		if e.ignored {
			continue
		}
		f := e.File
		f.Certificates = slices.Clone(f.Certificates)
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// Run scans once, then keeps the files current until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	var fw *fswatch.Watcher
	if !w.noEvents {
		var err error
		// Any event in a watched directory but a chmod (which changes
		// nothing exported) may matter: create, write, remove, and
		// rename, which is how files are usually replaced. A directory
		// that never goes quiet (a busy one beside the files) must not
		// postpone the scan forever: it runs at most MaxWait after the
		// first event of a burst. Lost events mean: read everything again.
		fw, err = fswatch.New(fswatch.Options{Quiet: w.opts.Settle, MaxWait: 10 * w.opts.Settle, Lost: true, Log: w.log, Now: w.opts.Now})
		if err != nil {
			// Out of inotify instances, say: rescans still work.
			w.log.Warn("cannot watch files for changes; relying on periodic rescans", "error", err, "rescan", w.opts.Rescan.String())
			fw = nil
		}
	}
	scan := func() {
		dirs := w.Scan()
		if fw != nil {
			fw.SetDirs(dirs)
		}
	}
	scan()
	var changed chan struct{}
	if fw != nil {
		changed = make(chan struct{}, 1)
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			fw.Run(ctx, func([]fswatch.Event) {
				select {
				case changed <- struct{}{}:
				default:
				}
			})
		})
	}
	return w.loop(ctx, changed, scan)
}

// loop scans again when changed says so and at every rescan interval.
func (w *Watcher) loop(ctx context.Context, changed <-chan struct{}, scan func()) error {
	rescan := time.NewTicker(w.opts.Rescan)
	defer rescan.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			scan()
		case <-rescan.C:
			scan()
		}
	}
}

// Scan reads every watched file that changed since the last scan and
// returns the directories whose events matter.
func (w *Watcher) Scan() []string {
	paths, dirs := expand(w.opts.Paths)
	seen := map[string]bool{}
	for _, p := range paths {
		seen[p] = true
		w.check(p)
	}
	w.mu.Lock()
	for p := range w.files {
		if !seen[p] {
			delete(w.files, p)
			w.log.Info("watched file no longer matches; dropped", "path", p)
		}
	}
	w.mu.Unlock()
	return dirs
}

// check reads path again if it changed since it was last read.
func (w *Watcher) check(path string) {
	info, statErr := os.Stat(path)
	w.mu.Lock()
	prev := w.files[path]
	w.mu.Unlock()
	if prev != nil && sameVersion(prev.info, info) {
		return
	}
	e := &entry{File: File{Path: path}, info: info}
	if prev != nil {
		e.ReadErrors = prev.ReadErrors
	}
	var certs []Certificate
	var err error
	if statErr != nil {
		err = statErr
	} else {
		certs, err = read(path)
	}
	switch {
	case errors.Is(err, errNoCertificates):
		// A key, DH parameters, a CRL: not ours to report, and not an
		// error either.
		e.ignored = true
	case err != nil:
		e.Err = err.Error()
		e.ReadErrors++
		w.log.Warn("watched file cannot be read as PEM certificates", "path", path, "error", err)
	default:
		e.Certificates = certs
		w.log.Info("watched certificate file read", "path", path, "certificates", len(certs), "first_not_after", earliest(certs).Format(time.RFC3339))
	}
	w.mu.Lock()
	w.files[path] = e
	w.mu.Unlock()
}

// sameVersion: the same file (device and inode), size and mtime. A file
// replaced by rename is a new inode even if size and mtime collide.
func sameVersion(a, b fs.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

var errNoCertificates = errors.New("no certificate in the file")

// read parses every CERTIFICATE block of a PEM file. Errors never quote the
// file's bytes: a watched directory may hold private keys.
func read(path string) ([]Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes: not a certificate file", maxFileSize)
	}
	var certs []Certificate
	blocks := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		blocks++
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: parsing certificate: %w", blocks, err)
		}
		certs = append(certs, Certificate{Subject: c.Subject.String(), NotAfter: c.NotAfter})
	}
	switch {
	case blocks == 0:
		return nil, errors.New("no PEM data")
	case len(certs) == 0:
		return nil, errNoCertificates
	}
	return certs, nil
}

func earliest(certs []Certificate) time.Time {
	var t time.Time
	for _, c := range certs {
		if t.IsZero() || c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// expand turns the configured paths into the files to read and the
// directories to watch for events. A named file that is missing is still
// returned, so it is reported rather than forgotten; a glob that matches
// nothing is not an error (the files may come later).
func expand(patterns []string) (files, dirs []string) {
	fileSet, dirSet := map[string]bool{}, map[string]bool{}
	addFile := func(p string) {
		if !fileSet[p] {
			fileSet[p] = true
			files = append(files, p)
		}
		dirSet[filepath.Dir(p)] = true
	}
	for _, pat := range patterns {
		if !hasMeta(pat) {
			info, err := os.Stat(pat)
			switch {
			case err == nil && info.IsDir():
				dirSet[pat] = true
				for _, f := range dirFiles(pat) {
					addFile(f)
				}
			case err == nil && info.Mode().IsRegular():
				addFile(pat)
			case errors.Is(err, fs.ErrNotExist):
				// Named explicitly, so its absence is news.
				addFile(pat)
			}
			continue
		}
		dirSet[staticPrefix(pat)] = true
		matches, _ := filepath.Glob(pat) // syntax was checked with the config
		for _, m := range matches {
			info, err := os.Stat(m)
			switch {
			case err != nil:
			case info.IsDir():
				dirSet[m] = true
				for _, f := range dirFiles(m) {
					addFile(f)
				}
			case info.Mode().IsRegular() && !hidden(m):
				addFile(m)
			}
		}
	}
	for d := range dirSet {
		dirs = append(dirs, d)
	}
	slices.Sort(files)
	slices.Sort(dirs)
	return files, dirs
}

// dirFiles are the regular files directly in dir (following symlinks, as
// Kubernetes secret volumes are links into a ..data directory), without dot
// files such as editors' swap files.
func dirFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if hidden(p) {
			continue
		}
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	return out
}

func hidden(p string) bool { return strings.HasPrefix(filepath.Base(p), ".") }

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// staticPrefix is the deepest directory of a glob pattern without
// wildcards: new matches appear as events there (or below, for patterns
// with wildcard directories, which the rescan catches).
func staticPrefix(pat string) string {
	dir := filepath.Dir(pat)
	for hasMeta(dir) {
		dir = filepath.Dir(dir)
	}
	return dir
}
