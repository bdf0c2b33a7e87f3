package sinks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Set names one file set for RecoverSets: its crash journal and every
// destination it writes, which bound what the journal may rename.
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
		errs[i] = finishJournal(ds, s.Journal, s.Destinations)
	}
	// directory -> temp-name prefix -> the sets writing that destination
	byDir := map[string]map[string][]int{}
	for i, s := range sets {
		if errs[i] != nil {
			continue // its temp files may be what the journal still needs
		}
		// The journal's own temp file, if a crash came before its rename,
		// is swept like a destination's.
		for _, dest := range append(slices.Clip(s.Destinations), s.Journal) {
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
//
// The journal is trusted no further than certkeeper's own writes go: it
// must pass ReadState (the running user's, in a directory of its own,
// writable by nobody else), and each rename must be one a set write makes
// (see allowed) within destinations, the set the caller knows it writes.
// One rename outside that refuses the whole journal, before anything is
// renamed: otherwise whoever can write a journal could rename any file
// over any other with certkeeper's rights.
func finishJournal(ds dirs, journal string, destinations []string) error {
	defer lockSet(journal)()
	data, err := ReadState(journal)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("not replaying the crash journal: %w", err)
	}
	renames, err := journalRenames(journal, data)
	if err != nil {
		return err
	}
	dests := map[string]bool{}
	for _, d := range destinations {
		dests[filepath.Clean(d)] = true
	}
	for _, r := range renames {
		if !allowed(r, dests) {
			return &ForeignRenameError{Journal: journal, From: r.From, To: r.To}
		}
	}
	var todo []rename
	for _, r := range renames {
		d, err := ds.open(filepath.Dir(r.From))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the directory went with the set, or never came
		}
		if err != nil {
			return fmt.Errorf("finishing interrupted write: %w", pathError("replace", r.To, err))
		}
		var st unix.Stat_t
		if unix.Fstatat(d.fd(), filepath.Base(r.From), &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			todo = append(todo, r)
		}
	}
	if err := applyRenames(ds, todo); err != nil {
		return fmt.Errorf("finishing interrupted write: %w", err)
	}
	return removeSynced(ds, journal)
}

// journalRenames reads the renames a journal holds for its own set: a
// set written alone has a list of renames; a set written in a group
// (group.go) has its entry in the group's journal, of which its journal
// is one name. The other entries are the other sets', each replayed by
// their own recovery within their own destinations.
func journalRenames(journal string, data []byte) ([]rename, error) {
	// The journal is put in place whole (renamed or linked), so a journal
	// that does not parse is not a torn write: someone else wrote here.
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("[")) {
		var renames []rename
		if err := json.Unmarshal(data, &renames); err != nil {
			return nil, fmt.Errorf("journal %s is not certkeeper's: %w", journal, err)
		}
		return renames, nil
	}
	var g groupJournal
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("journal %s is not certkeeper's: %w", journal, err)
	}
	for _, e := range g.Sets {
		if filepath.Clean(e.Journal) == filepath.Clean(journal) {
			return e.Renames, nil
		}
	}
	return nil, fmt.Errorf("journal %s is not certkeeper's: it has no entry for itself", journal)
}

// allowed says whether r is a rename a set write of dests makes: a temp
// file certkeeper made beside a destination (named for it, in its
// directory) onto that destination, or a destination the set removes
// onto its own aside name in the same directory (see writeSet).
func allowed(r rename, dests map[string]bool) bool {
	from, to := filepath.Clean(r.From), filepath.Clean(r.To)
	if filepath.Dir(from) != filepath.Dir(to) {
		return false
	}
	if dests[to] {
		name, prefix := filepath.Base(from), tempPrefix(to)
		return len(name) > len(prefix) && strings.HasPrefix(name, prefix)
	}
	return dests[from] && filepath.Base(to) == tempPrefix(from)+"removed"
}

// ForeignRenameError is a crash journal naming a rename no write of its
// set makes. Nothing of the journal was done.
type ForeignRenameError struct {
	Journal, From, To string
}

func (e *ForeignRenameError) Error() string {
	return fmt.Sprintf("refusing to replay the crash journal %s (%s): it renames %s (%s) over %s (%s), which is not a file certkeeper made for this set onto a destination of it; nothing was renamed. Look at the journal, then remove it",
		e.Journal, ownerOf(e.Journal), e.From, ownerOf(e.From), e.To, ownerOf(e.To))
}

// ownerOf says whose the file at path is, for a message.
func ownerOf(path string) string {
	info, err := os.Lstat(path)
	if err != nil {
		return "no such file"
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return "owner unknown"
	}
	return "owned by " + DescribeUID(int(st.Uid))
}
