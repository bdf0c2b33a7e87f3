package sinks

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// writeGroup writes each set with WriteSet from a goroutine of its own,
// all committed as one group: the committer of their journals' directory
// is held until every set is queued. All journals must share a directory.
func writeGroup(journals []string, sets [][]File) error {
	return errorsJoin(writeGroupEach(journals, sets))
}

// writeGroupEach is writeGroup with each set's own error.
func writeGroupEach(journals []string, sets [][]File) []error {
	c := committerFor(journals[0])
	c.commitMu.Lock()
	errs := make([]error, len(sets))
	var wg sync.WaitGroup
	for i := range sets {
		wg.Go(func() { _, errs[i] = WriteSet(journals[i], sets[i]) })
	}
	// Not a timing assumption: the loop waits for as long as staging
	// takes, and only then lets the group commit.
	for {
		c.qmu.Lock()
		n := len(c.queue)
		c.qmu.Unlock()
		if n == len(sets) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	c.commitMu.Unlock()
	wg.Wait()
	return errs
}

// groupOf is sets a and b as the agent writes them, at version.
func groupOf(root, version string, names ...string) ([]string, [][]File) {
	var journals []string
	var sets [][]File
	for _, n := range names {
		journals = append(journals, crashJournal(root, n))
		sets = append(sets, crashSetFiles(root, "tls", n, version))
	}
	return journals, sets
}

// oneGroupJournal checks that the action wrote one journal for the group
// and named it once per set that needed one.
func oneGroupJournal(want int) func(t *testing.T, root string, ops []op) {
	return func(t *testing.T, root string, ops []op) {
		t.Helper()
		var journals, links int
		for _, o := range ops {
			if o.kind == opCreate && strings.Contains(filepath.Base(o.path), ".journal"+tempMarker) {
				journals++
			}
			if o.kind == opLink && strings.HasSuffix(o.path, ".journal") {
				links++
			}
		}
		if journals != 1 || links != want {
			t.Fatalf("the group wrote %d journals named %d times, want 1 named %d times: the sets were not committed as one group\n%v", journals, links, want, ops)
		}
	}
}

func init() {
	crashScenarios = append(crashScenarios,
		crashScenario{
			// The crash points include every one between the renames of
			// a and those of b, and between their journals' removals.
			name: "group: two sets replaced in one group",
			sets: func(root string) []crashSet {
				return []crashSet{
					{journal: crashJournal(root, "a"), old: contents(crashSetFiles(root, "tls", "a", "1")...), new: contents(crashSetFiles(root, "tls", "a", "2")...)},
					{journal: crashJournal(root, "b"), old: contents(crashSetFiles(root, "tls", "b", "1")...), new: contents(crashSetFiles(root, "tls", "b", "2")...)},
				}
			},
			setup: func(t *testing.T, root string) func() error {
				writeOld(t, append(crashSetFiles(root, "tls", "a", "1"), crashSetFiles(root, "tls", "b", "1")...)...)
				return func() error { return writeGroup(groupOf(root, "2", "a", "b")) }
			},
			check: oneGroupJournal(2),
		},
		crashScenario{
			name: "group: a set of three files and a set of one changed file in one group",
			sets: func(root string) []crashSet {
				bNew := crashSetFiles(root, "tls", "b", "1")
				bNew[1] = file(bNew[1].Path, "CERT-b-1-with-another-chain", 0o644)
				return []crashSet{
					{journal: crashJournal(root, "a"), old: contents(crashSetFiles(root, "tls", "a", "1")...), new: contents(crashSetFiles(root, "tls", "a", "2")...)},
					{journal: crashJournal(root, "b"), old: contents(crashSetFiles(root, "tls", "b", "1")...), new: contents(bNew...)},
				}
			},
			setup: func(t *testing.T, root string) func() error {
				writeOld(t, append(crashSetFiles(root, "tls", "a", "1"), crashSetFiles(root, "tls", "b", "1")...)...)
				bNew := crashSetFiles(root, "tls", "b", "1")
				bNew[1] = file(bNew[1].Path, "CERT-b-1-with-another-chain", 0o644)
				return func() error {
					return writeGroup([]string{crashJournal(root, "a"), crashJournal(root, "b")},
						[][]File{crashSetFiles(root, "tls", "a", "2"), bNew})
				}
			},
			check: oneGroupJournal(1),
		},
		crashScenario{
			// A state directory on a file system that takes no hard
			// links (vfat): each set gets a journal of its own.
			name: "group: two sets in one group, where the state directory refuses links",
			sets: func(root string) []crashSet {
				return []crashSet{
					{journal: crashJournal(root, "a"), old: contents(crashSetFiles(root, "tls", "a", "1")...), new: contents(crashSetFiles(root, "tls", "a", "2")...)},
					{journal: crashJournal(root, "b"), old: contents(crashSetFiles(root, "tls", "b", "1")...), new: contents(crashSetFiles(root, "tls", "b", "2")...)},
				}
			},
			setup: func(t *testing.T, root string) func() error {
				writeOld(t, append(crashSetFiles(root, "tls", "a", "1"), crashSetFiles(root, "tls", "b", "1")...)...)
				return func() error {
					recorded := disk
					disk = noLinkDisk{recorded}
					defer func() { disk = recorded }()
					return writeGroup(groupOf(root, "2", "a", "b"))
				}
			},
			check: func(t *testing.T, root string, ops []op) {
				var journals int
				for _, o := range ops {
					if o.kind == opRename && strings.HasSuffix(o.to, ".journal") {
						journals++
					}
				}
				if journals != 2 {
					t.Fatalf("%d journals renamed into place, want one per set", journals)
				}
			},
		},
		crashScenario{
			name: "group: two first writes into output directories that do not exist yet",
			sets: func(root string) []crashSet {
				return []crashSet{
					{journal: crashJournal(root, "a"), old: map[string]content{}, new: contents(crashSetFiles(root, "etc/a", "a", "1")...)},
					{journal: crashJournal(root, "b"), old: map[string]content{}, new: contents(crashSetFiles(root, "etc/b", "b", "1")...)},
				}
			},
			setup: func(t *testing.T, root string) func() error {
				writeOld(t, file(filepath.Join(root, "etc", "other"), "x", 0o644))
				os.Mkdir(filepath.Join(root, "state"), 0o700)
				return func() error {
					return writeGroup([]string{crashJournal(root, "a"), crashJournal(root, "b")},
						[][]File{crashSetFiles(root, "etc/a", "a", "1"), crashSetFiles(root, "etc/b", "b", "1")})
				}
			},
			check: oneGroupJournal(2),
		},
	)
}

// noLinkDisk is a disk whose file system takes no hard links.
type noLinkDisk struct{ fileSystem }

func (d noLinkDisk) Link(dir *dir, from, to string) error {
	return &os.LinkError{Op: "link", Old: dir.join(from), New: dir.join(to), Err: syscall.EPERM}
}

// TestGroupWithoutLinks: where the state directory refuses hard links,
// each set of a group gets a journal of its own and is written; any
// other failure to link fails the group.
func TestGroupWithoutLinks(t *testing.T) {
	for _, tc := range []struct {
		err   error
		fails bool
	}{{syscall.EPERM, false}, {syscall.EOPNOTSUPP, false}, {syscall.EIO, true}} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			root := t.TempDir()
			writeOld(t, append(crashSetFiles(root, "tls", "a", "1"), crashSetFiles(root, "tls", "b", "1")...)...)
			journals, sets := groupOf(root, "2", "a", "b")
			err := withDisk(faultyDisk{linkErr: tc.err}, func() error { return writeGroup(journals, sets) })
			if tc.fails != (err != nil) {
				t.Fatalf("got %v, want failing: %v", err, tc.fails)
			}
			if !tc.fails {
				for i := range sets {
					if got, want := contentOf(sets[i]), dataOf(sets[i]); !slices.Equal(got, want) {
						t.Errorf("set %d holds %q, want %q", i, got, want)
					}
				}
			}
			for _, j := range journals {
				if _, err := os.Lstat(j); err == nil {
					t.Errorf("journal %s left", j)
				}
			}
			if left := tempsIn(t, root); len(left) > 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// TestGroupCrashModelNeedsEveryFsync: the group scenario's crash test
// fails when the writer leaves out any one of its fsyncs (the recorder
// drops the call, as if it were never made), so passing it means
// something.
func TestGroupCrashModelNeedsEveryFsync(t *testing.T) {
	i := slices.IndexFunc(crashScenarios, func(s crashScenario) bool { return s.name == "group: two sets replaced in one group" })
	sc := crashScenarios[i]
	sc.check = nil
	// The fsyncs of one directory are told apart by whether the journal
	// was linked yet.
	dropSyncDir := func(dir string, before bool) func() func(op) bool {
		return func() func(op) bool {
			linked := false
			return func(o op) bool {
				linked = linked || o.kind == opLink
				return o.kind == opSyncDir && filepath.Base(o.path) == dir && linked != before
			}
		}
	}
	drops := map[string]func() func(op) bool{
		"the temp files' fsync": func() func(op) bool {
			return func(o op) bool {
				return o.kind == opSync && strings.Contains(o.path, tempMarker) && strings.Contains(o.path, "/tls/")
			}
		},
		"the journal's fsync": func() func(op) bool {
			return func(o op) bool { return o.kind == opSync && strings.Contains(o.path, ".journal"+tempMarker) }
		},
		"the fsync of the temp files' directory before the journal": dropSyncDir("tls", true),
		"the fsync of the renamed files' directory":                 dropSyncDir("tls", false),
		"the fsync of the state directory after the journal's names": func() func(op) bool {
			links, dropped := 0, false
			return func(o op) bool {
				if o.kind == opLink {
					links++
				}
				if links == 2 && !dropped && o.kind == opSyncDir && filepath.Base(o.path) == "state" {
					dropped = true
					return true
				}
				return false
			}
		},
	}
	for what, skip := range drops {
		t.Run(what, func(t *testing.T) {
			_, failures := exploreWith(t, sc, skip())
			if len(failures) == 0 {
				t.Fatalf("without %s, no crash image fails: the model cannot tell", what)
			}
			t.Logf("without %s: %d images fail, e.g. %s", what, len(failures), strings.SplitN(failures[0], "\n", 2)[0])
		})
	}
}

// TestGroupWritesEverySet: sets written at the same time from many
// goroutines all land, each whole, and a later write of one of them sees
// no journal left behind.
func TestGroupWritesEverySet(t *testing.T) {
	root := t.TempDir()
	var names []string
	for i := range 40 {
		names = append(names, fmt.Sprintf("c%02d", i))
	}
	journals, sets := groupOf(root, "1", names...)
	var wg sync.WaitGroup
	errs := make([]error, len(sets))
	for i := range sets {
		wg.Go(func() { _, errs[i] = WriteSet(journals[i], sets[i]) })
	}
	wg.Wait()
	if err := errorsJoin(errs); err != nil {
		t.Fatal(err)
	}
	for i, set := range sets {
		for _, f := range set {
			got, err := ReadFile(f.Path)
			if err != nil || string(got) != string(f.Data) {
				t.Errorf("%s: %q, %v; want %q", f.Path, got, err, f.Data)
			}
		}
		if _, err := ReadState(journals[i]); err == nil {
			t.Errorf("journal %s left after its write returned", journals[i])
		}
	}
}

// contentOf is what the files of a set hold now, or why not.
func contentOf(files []File) []string {
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		out = append(out, string(b))
	}
	return out
}

func dataOf(files []File) []string {
	var out []string
	for _, f := range files {
		out = append(out, string(f.Data))
	}
	return out
}

// tempsIn lists certkeeper temp files under root.
func tempsIn(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), tempMarker) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestGroupJournalFailureKeepsEverySetOld: when the group's journal
// cannot be named (a link fails), no set of the group has reached its
// commit point: each keeps its old files, and no temp file or journal is
// left.
func TestGroupJournalFailureKeepsEverySetOld(t *testing.T) {
	root := t.TempDir()
	writeOld(t, append(crashSetFiles(root, "tls", "a", "1"), crashSetFiles(root, "tls", "b", "1")...)...)
	journals, sets := groupOf(root, "2", "a", "b")
	links := 0
	err := withDisk(faultyDisk{onLink: func(from, to string) bool {
		links++
		return links < 2 // the second set's name fails
	}}, func() error { return writeGroup(journals, sets) })
	if err == nil || !strings.Contains(err.Error(), "writing journal") {
		t.Fatalf("got %v, want both writes failing on the journal", err)
	}
	_, old := groupOf(root, "1", "a", "b")
	for i := range sets {
		if got, want := contentOf(sets[i]), dataOf(old[i]); !slices.Equal(got, want) {
			t.Errorf("set %d holds %q, want the old %q", i, got, want)
		}
		if _, err := os.Lstat(journals[i]); err == nil {
			t.Errorf("journal %s left", journals[i])
		}
	}
	if left := tempsIn(t, root); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestGroupRenameFailureLeavesOnlyThatSetToFinish: a rename that fails
// past the commit point fails only its own set, whose journal stays so
// that Finish completes it; the other set of the group is written and
// its journal gone.
func TestGroupRenameFailureLeavesOnlyThatSetToFinish(t *testing.T) {
	root := t.TempDir()
	writeOld(t, append(crashSetFiles(root, "tls", "a", "1"), crashSetFiles(root, "tls", "b", "1")...)...)
	journals, sets := groupOf(root, "2", "a", "b")
	aCert := sets[0][1].Path
	err := withDisk(faultyDisk{onRename: func(from, to string) bool { return to != aCert }},
		func() error { return writeGroup(journals, sets) })
	if err == nil || !strings.Contains(err.Error(), "a.crt") || strings.Contains(err.Error(), "b.") {
		t.Fatalf("got %v, want only a's write failing, on a.crt", err)
	}
	if got, want := contentOf(sets[1]), dataOf(sets[1]); !slices.Equal(got, want) {
		t.Errorf("b holds %q, want %q", got, want)
	}
	if _, err := os.Lstat(journals[1]); err == nil {
		t.Error("b's journal left after b was written")
	}
	if _, err := os.Lstat(journals[0]); err != nil {
		t.Fatalf("a's journal is gone (%v): nothing can finish a's set", err)
	}
	var dests []string
	for _, f := range sets[0] {
		dests = append(dests, f.Path)
	}
	if err := Finish(journals[0], dests); err != nil {
		t.Fatal(err)
	}
	if got, want := contentOf(sets[0]), dataOf(sets[0]); !slices.Equal(got, want) {
		t.Errorf("after Finish, a holds %q, want %q", got, want)
	}
	if left := tempsIn(t, root); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestGroupJournalReplacesAStaleOne: a journal a failed write left under
// a set's name is replaced by the group's (as a rename would), and the
// set is written.
func TestGroupJournalReplacesAStaleOne(t *testing.T) {
	root := t.TempDir()
	writeOld(t, crashSetFiles(root, "tls", "a", "1")...)
	journals, sets := groupOf(root, "2", "a")
	writeOld(t, file(journals[0], `[]`, 0o600))
	if err := writeGroup(journals, sets); err != nil {
		t.Fatal(err)
	}
	if got, want := contentOf(sets[0]), dataOf(sets[0]); !slices.Equal(got, want) {
		t.Errorf("a holds %q, want %q", got, want)
	}
	if _, err := os.Lstat(journals[0]); err == nil {
		t.Error("journal left")
	}
	if left := tempsIn(t, root); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestGroupJournalEntryIsTheSetsOwn: recovery of a set replays only its
// own entry of a group journal; a journal with no entry for itself is
// refused, and nothing is renamed.
func TestGroupJournalEntryIsTheSetsOwn(t *testing.T) {
	root := t.TempDir()
	a := filepath.Join(root, "state", "a.journal")
	g := groupJournal{Sets: []groupEntry{{Journal: filepath.Join(root, "state", "b.journal"), Renames: []rename{{From: "x", To: "y"}}}}}
	data, _ := json.Marshal(g)
	if _, err := journalRenames(a, data); err == nil || !strings.Contains(err.Error(), "no entry for itself") {
		t.Errorf("a journal without a's entry: %v, want a refusal", err)
	}
	g.Sets = append(g.Sets, groupEntry{Journal: a, Renames: []rename{{From: "p", To: "q"}}})
	data, _ = json.Marshal(g)
	got, err := journalRenames(a, data)
	if err != nil || len(got) != 1 || got[0].From != "p" {
		t.Errorf("a's entry: %v, %v; want its one rename p -> q", got, err)
	}
}

// TestGroupFsyncFailureFailsOnlyThatSet: the committer fsyncs the temp
// files of every set of its group together; a set one of whose files
// fails its fsync leaves the group before any journal or rename, keeps
// its old files and leaves no temp file, while the other set is written.
func TestGroupFsyncFailureFailsOnlyThatSet(t *testing.T) {
	root := t.TempDir()
	writeOld(t, append(crashSetFiles(root, "tls", "a", "1"), crashSetFiles(root, "tls", "b", "1")...)...)
	journals, sets := groupOf(root, "2", "a", "b")
	failing := func(path string) error {
		if strings.Contains(filepath.Base(path), ".a.crt"+tempMarker) {
			return syscall.EIO
		}
		return nil
	}
	var errs []error
	err := withDisk(faultyDisk{onSync: failing}, func() error {
		errs = writeGroupEach(journals, sets)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(errs[0], syscall.EIO) || errs[1] != nil {
		t.Fatalf("errors %v, want a's fsync's EIO and b written", errs)
	}
	_, old := groupOf(root, "1", "a", "b")
	if got, want := contentOf(sets[0]), dataOf(old[0]); !slices.Equal(got, want) {
		t.Errorf("a holds %q, want the old %q", got, want)
	}
	if got, want := contentOf(sets[1]), dataOf(sets[1]); !slices.Equal(got, want) {
		t.Errorf("b holds %q, want %q", got, want)
	}
	for _, j := range journals {
		if _, err := os.Lstat(j); err == nil {
			t.Errorf("journal %s left", j)
		}
	}
	if left := tempsIn(t, root); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestFsyncFailuresOutsideTheCommitter: the temp files a set written
// alone (a rollback) fsyncs itself, and a group's journal, fail the write
// when their fsync fails, leaving the set as it was and no temp file.
func TestFsyncFailuresOutsideTheCommitter(t *testing.T) {
	failIf := func(journal bool) func(path string) error {
		return func(path string) error {
			if strings.Contains(filepath.Base(path), ".journal"+tempMarker) == journal {
				return syscall.EIO
			}
			return nil
		}
	}
	t.Run("a group's journal", func(t *testing.T) {
		root := t.TempDir()
		writeOld(t, crashSetFiles(root, "tls", "a", "1")...)
		journals, sets := groupOf(root, "2", "a")
		err := withDisk(faultyDisk{onSync: failIf(true)}, func() error {
			_, err := WriteSet(journals[0], sets[0])
			return err
		})
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("err = %v, want the journal's fsync's EIO", err)
		}
		_, old := groupOf(root, "1", "a")
		if got, want := contentOf(sets[0]), dataOf(old[0]); !slices.Equal(got, want) {
			t.Errorf("a holds %q, want the old %q", got, want)
		}
		if left := tempsIn(t, root); len(left) > 0 {
			t.Errorf("temp files left: %v", left)
		}
	})
	t.Run("a rollback's files", func(t *testing.T) {
		root := t.TempDir()
		writeOld(t, crashSetFiles(root, "tls", "a", "1")...)
		journals, sets := groupOf(root, "2", "a")
		change, err := WriteSet(journals[0], sets[0])
		if err != nil {
			t.Fatal(err)
		}
		err = withDisk(faultyDisk{onSync: failIf(false)}, func() error { return Sets{}.Rollback(change) })
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("err = %v, want the temp files' fsync's EIO", err)
		}
		if got, want := contentOf(sets[0]), dataOf(sets[0]); !slices.Equal(got, want) {
			t.Errorf("a holds %q, want the new %q it had before the rollback", got, want)
		}
		if left := tempsIn(t, root); len(left) > 0 {
			t.Errorf("temp files left: %v", left)
		}
	})
}
