package sinks

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// Group commit. Written one at a time, every set paid for a journal of
// its own (one more file created and fsynced) and for its own fsyncs of
// each directory (before the journal, for the journal, after the renames,
// after the journal's removal): for the agent's sets of four files, five
// files created and six directory fsyncs per set. Grouped, it is one
// journal and six directory fsyncs per group (BenchmarkWriteSets counts
// them). Each WriteSet writes its temp files in its own goroutine, starts
// their writeback without waiting for it, and joins the queue of its
// journal's directory, the files still open. The first writer to get that
// directory's commit lock takes the whole queue and commits it as one
// group; sets that arrive meanwhile wait for the next group. For a group:
//
//  0. every temp file of every set is fsynced (all in flight together,
//     syncTemps) and closed; a set whose file fails leaves the group with
//     its error, its temps removed, wholly old. Each set fsyncing its own
//     files, one after the other, cost three times the CPU per file;
//  1. each directory holding a temp file of a set that needs a journal is
//     fsynced once, so the temp names are durable before a journal names
//     them;
//  2. one journal naming every rename of every such set is written to a
//     temp file and fsynced, then linked once under each set's own journal
//     name, and the directory fsynced: each set's commit point;
//  3. every rename of every set is done, and each directory they touched
//     fsynced once;
//  4. each set's journal name is removed, and the directory fsynced once.
//
// Each set's journal name is a link to the one group journal, which holds
// an entry per set: recovery of a set (finishJournal) replays only the
// entry for its own journal, within its own destinations, exactly as it
// replays a journal of a set written alone, and removes only its own
// name. So nothing a set's recovery does depends on the other sets of its
// group, and a crash between two sets of one group leaves each wholly old
// or wholly new. A set of one rename needs no journal (a rename is atomic)
// and only shares the fsync after the renames.

// maxGroup bounds the sets of one group, and so one journal.
const maxGroup = 256

// groupSet is one set waiting for, or in, a group.
type groupSet struct {
	journal string
	pending []rename // temp file onto destination, all in the same directory
	// Set by the committer, under commitMu.
	done bool
	err  error
}

// committer commits the groups of one journal directory.
type committer struct {
	// commitMu is held by the writer committing a group; qmu guards the
	// queue of sets waiting for the next group.
	commitMu sync.Mutex
	qmu      sync.Mutex
	queue    []*groupSet
}

var committers sync.Map // journal directory -> *committer

func committerFor(journal string) *committer {
	c, _ := committers.LoadOrStore(filepath.Dir(filepath.Clean(journal)), &committer{})
	return c.(*committer)
}

// write returns once gs is committed, by this goroutine or by another
// that took it into its group.
func (c *committer) write(gs *groupSet) error {
	c.qmu.Lock()
	c.queue = append(c.queue, gs)
	c.qmu.Unlock()
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	for !gs.done {
		c.qmu.Lock()
		n := min(len(c.queue), maxGroup)
		batch := slices.Clone(c.queue[:n])
		c.queue = slices.Delete(c.queue, 0, n)
		c.qmu.Unlock()
		commitGroup(batch)
	}
	return gs.err
}

// groupJournal is the journal of a group: one entry per set. (A set
// written alone has a bare list of renames; finishJournal reads both.)
type groupJournal struct {
	Sets []groupEntry `json:"sets"`
}

type groupEntry struct {
	Journal string   `json:"journal"`
	Renames []rename `json:"renames"`
}

// commitGroup commits batch; every set in it is done after, each with its
// own error.
func commitGroup(batch []*groupSet) {
	ds := dirs{}
	defer ds.close()
	defer func(batch []*groupSet) {
		for _, gs := range batch {
			gs.done = true
		}
	}(batch)
	// Every temp file of the group is made durable at once, before any
	// journal names it or any rename puts it in place. A set whose file
	// fails is out of the group, wholly old.
	var all []*rename
	var owner []*groupSet
	for _, gs := range batch {
		for i := range gs.pending {
			all = append(all, &gs.pending[i])
			owner = append(owner, gs)
		}
	}
	for i, err := range syncTemps(all) {
		if err != nil && owner[i].err == nil {
			owner[i].err = err
		}
	}
	batch = slices.DeleteFunc(slices.Clone(batch), func(gs *groupSet) bool {
		if gs.err != nil {
			removeTemps(ds, gs.pending)
		}
		return gs.err != nil
	})
	var journaled []*groupSet
	for _, gs := range batch {
		if len(gs.pending) > 1 {
			journaled = append(journaled, gs)
		}
	}
	if len(journaled) > 0 {
		var all []rename
		for _, gs := range journaled {
			all = append(all, gs.pending...)
		}
		err := syncTempDirs(ds, all)
		if err == nil {
			err = writeGroupJournal(ds, journaled)
		}
		if err != nil {
			// Before any commit point: every set stays old.
			for _, gs := range batch {
				removeTemps(ds, gs.pending)
				gs.err = err
			}
			return
		}
	}
	var touched []*dir
	for _, gs := range batch {
		for i, r := range gs.pending {
			crashPoint("rename")
			d, err := ds.open(filepath.Dir(r.To))
			if err == nil {
				err = disk.Rename(d, filepath.Base(r.From), filepath.Base(r.To))
			}
			if err != nil {
				// A journaled set's journal stays: its next Finish (or
				// the next start) completes the renames. A lone
				// rename's temp is named by no journal: remove it.
				gs.err = fmt.Errorf("replacing %s: %w", r.To, err)
				if len(gs.pending) == 1 {
					removeTemps(ds, gs.pending[i:])
				}
				break
			}
			remember(r.To)
			if !slices.Contains(touched, d) {
				touched = append(touched, d)
			}
		}
	}
	for _, d := range touched {
		if err := syncDir(d); err != nil {
			for _, gs := range batch {
				gs.err = cmp.Or(gs.err, err)
			}
			return
		}
	}
	var finished []*groupSet
	for _, gs := range journaled {
		if gs.err == nil {
			finished = append(finished, gs)
		}
	}
	if len(finished) == 0 {
		return
	}
	crashPoint("commit")
	d, err := ds.open(filepath.Dir(finished[0].journal))
	if err == nil {
		for _, gs := range finished {
			if rerr := disk.Remove(d, filepath.Base(gs.journal)); rerr != nil {
				gs.err = fmt.Errorf("removing journal: %w", rerr)
			}
		}
		err = syncDir(d)
	}
	if err != nil {
		for _, gs := range finished {
			gs.err = cmp.Or(gs.err, fmt.Errorf("removing journal: %w", err))
		}
	}
}

// writeGroupJournal writes the journal of sets (all with journals in one
// directory), names it under each set's journal name and makes those
// names durable. Its temp file is named for the first set's journal, so
// that set's recovery sweeps it if a crash leaves it.
func writeGroupJournal(ds dirs, sets []*groupSet) error {
	var g groupJournal
	for _, gs := range sets {
		g.Sets = append(g.Sets, groupEntry{Journal: gs.journal, Renames: gs.pending})
	}
	data, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("encoding journal: %w", err)
	}
	first := sets[0].journal
	// Journals live in the state directory, which only certkeeper reads:
	// if it is made here, it is made private.
	d, err := ds.make(filepath.Dir(first), 0o700)
	if err != nil {
		return fmt.Errorf("writing journal: %w", pathError("write", first, err))
	}
	tmp, err := writeSynced(d, File{Path: first, Data: data, Mode: 0o600, UID: -1, GID: -1})
	if err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	crashPoint("journal")
	var linked []string
	for _, gs := range sets {
		if err := linkOver(d, filepath.Base(tmp), filepath.Base(gs.journal)); err != nil {
			for _, name := range linked {
				disk.Remove(d, name)
			}
			disk.Remove(d, filepath.Base(tmp))
			if len(linked) == 0 && noLinks(err) {
				return writeJournalsAlone(ds, sets)
			}
			return fmt.Errorf("writing journal: %w", err)
		}
		linked = append(linked, filepath.Base(gs.journal))
	}
	// The temp name goes in the same fsync as the journal names.
	if err := disk.Remove(d, filepath.Base(tmp)); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	return syncDir(d)
}

// noLinks says whether err is a file system refusing hard links
// altogether (vfat says EPERM, some FUSE file systems ENOTSUP).
func noLinks(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EMLINK)
}

// writeJournalsAlone gives each set a journal of its own, as a set
// written alone has, where the journal's directory takes no links: the
// group still shares the fsyncs of its temp files' and renamed files'
// directories.
func writeJournalsAlone(ds dirs, sets []*groupSet) error {
	for i, gs := range sets {
		if err := writeJournal(ds, gs.journal, gs.pending); err != nil {
			for _, done := range sets[:i] {
				if d, derr := ds.open(filepath.Dir(done.journal)); derr == nil {
					disk.Remove(d, filepath.Base(done.journal))
				}
			}
			return err
		}
	}
	return nil
}

// linkOver makes to (in d) another name of from, replacing a journal a
// failed write left at to, as a rename would.
func linkOver(d *dir, from, to string) error {
	err := disk.Link(d, from, to)
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	// The aside is named like a temp file of the journal, so recovery
	// sweeps it if a crash leaves it.
	aside := tempPrefix(to) + "link"
	if err := disk.Remove(d, aside); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := disk.Link(d, from, aside); err != nil {
		return err
	}
	return disk.Rename(d, aside, to)
}
