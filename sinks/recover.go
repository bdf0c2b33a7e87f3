package sinks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Set names one file set for RecoverSets: its crash journal and every
// destination it writes.
type Set struct {
	Journal      string
	Destinations []string
}

// RecoverSets does for every set what Recover does for one, and returns
// one error per set (nil when that set is recovered). It first finishes
// every interrupted write, since those renames consume temp files, and
// only then removes stale temp files, reading each directory once for all
// the sets that write there. An agent with thousands of certificates in
// one directory thus starts in O(files) instead of reading the whole
// directory once per destination.
func RecoverSets(sets []Set) []error {
	ds := dirs{}
	defer ds.close()
	errs := make([]error, len(sets))
	for i, s := range sets {
		errs[i] = finishJournal(ds, s.Journal)
	}
	// directory -> temp-name prefix -> the sets writing that destination
	byDir := map[string]map[string][]int{}
	for i, s := range sets {
		if errs[i] != nil {
			continue // its temp files may be what the journal still needs
		}
		for _, dest := range s.Destinations {
			dir := filepath.Dir(dest)
			if byDir[dir] == nil {
				byDir[dir] = map[string][]int{}
			}
			prefix := tempPrefix(dest)
			byDir[dir][prefix] = append(byDir[dir][prefix], i)
		}
	}
	for path, prefixes := range byDir {
		d, err := ds.open(path)
		if err != nil {
			// A directory that cannot be reached has no temp file that
			// can be removed either; the write that follows reports why.
			continue
		}
		for _, name := range tempNames(d) {
			owners, ok := prefixes[name[:strings.LastIndex(name, tempMarker)+len(tempMarker)]]
			if !ok {
				continue
			}
			if err := disk.Remove(d, name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				for _, i := range owners {
					errs[i] = errors.Join(errs[i], err)
				}
			}
		}
	}
	return errs
}

// tempPrefix is how every temp file for dest begins (see writeTemp).
func tempPrefix(dest string) string { return "." + filepath.Base(dest) + tempMarker }

// tempNames lists the names in d that look like certkeeper temp files.
// A directory that cannot be read has none that can be removed either;
// the write that follows reports the real problem.
func tempNames(d *dir) []string {
	fd, err := unix.Openat(d.fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	out := names[:0]
	for _, n := range names {
		if strings.HasPrefix(n, ".") && strings.Contains(n, tempMarker) {
			out = append(out, n)
		}
	}
	return out
}

// finishJournal completes the renames an interrupted set write left in
// its journal, then removes the journal. No journal means nothing to do.
func finishJournal(ds dirs, journal string) error {
	data, err := ReadFile(journal)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("reading journal: %w", err)
	}
	var renames []rename
	if err := json.Unmarshal(data, &renames); err != nil {
		// The journal is renamed into place whole, so this is not a
		// torn write: someone else wrote here.
		return fmt.Errorf("journal %s is not certkeeper's: %w", journal, err)
	}
	var todo []rename
	for _, r := range renames {
		if _, err := os.Lstat(r.From); err == nil {
			todo = append(todo, r)
		}
	}
	if err := applyRenames(ds, todo); err != nil {
		return fmt.Errorf("finishing interrupted write: %w", err)
	}
	return removeSynced(ds, journal)
}
