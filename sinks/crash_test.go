package sinks

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// This file checks crash consistency the way ALICE and CrashMonkey do: it
// records every call a write makes through fileSystem, then, for every
// point at which the machine could lose power, builds each disk image the
// kernel may leave behind and checks what a restart (recovery) makes of
// it. The model of what survives a crash at a point:
//
//   - file data and mode survive only if the file was fsynced after they
//     were written: an inode never fsynced comes back empty, mode 0600;
//   - a create, mkdir, rename or remove in a directory survives only if
//     that directory was fsynced after it; until then each one may or may
//     not have happened, independently of the others (every subset is
//     tried);
//   - a process crash (SIGKILL) loses nothing, and is tried too.
//
// After each image is recovered (RecoverSets, as the agent does at start),
// every set must be wholly old or wholly new (so key and certificate
// match), no journal or temp file may be left, and a write that returned
// must be the new set. Recovery itself is then crashed at each of its own
// points, recovered again, and checked the same way.
//
// The model knows nothing of journals or of the order the writer uses, so
// any strategy (one set at a time, or several sets with one journal and
// one fsync per directory) is held to the same standard: write it as a
// crashScenario.

// inode is the durable content of a file or directory.
type inode struct {
	dir  bool
	data string
	mode fs.FileMode
}

// diskImage is what is on disk: each path (absolute, under the test root)
// names an inode.
type diskImage struct {
	entries map[string]int
	inodes  map[int]inode
}

func (im diskImage) key() string {
	paths := make([]string, 0, len(im.entries))
	for p := range im.entries {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var b strings.Builder
	for _, p := range paths {
		n := im.inodes[im.entries[p]]
		fmt.Fprintf(&b, "%s|%t|%o|%q\n", p, n.dir, n.mode, n.data)
	}
	return b.String()
}

type opKind int

const (
	opCreate opKind = iota
	opMkdir
	opWrite
	opChmod
	opChown
	opSync
	opRename
	opRemove
	opSyncDir
	opLink
)

func (k opKind) String() string {
	return [...]string{"create", "mkdir", "write", "chmod", "chown", "fsync", "rename", "remove", "fsync dir", "link"}[k]
}

// op is one recorded call.
type op struct {
	kind     opKind
	path, to string
	ino      int
	data     string
	mode     fs.FileMode
}

func (o op) String() string {
	switch o.kind {
	case opRename:
		return fmt.Sprintf("rename %s -> %s", filepath.Base(o.path), filepath.Base(o.to))
	case opLink:
		return fmt.Sprintf("link %s as %s", filepath.Base(o.to), filepath.Base(o.path))
	case opWrite:
		return fmt.Sprintf("write %q to %s", o.data, filepath.Base(o.path))
	case opSyncDir:
		return "fsync dir " + o.path
	}
	return o.kind.String() + " " + filepath.Base(o.path)
}

// dirOp says whether o changes a directory's entries.
func (o op) dirOp() bool {
	return o.kind == opCreate || o.kind == opMkdir || o.kind == opRename || o.kind == opRemove || o.kind == opLink
}

// recorder is a fileSystem that does every call on the real disk, through
// osDisk (so the code under test sees its own writes), except fsync,
// which it only records: durability is the model's business, and skipping
// it keeps the thousands of replays fast. Every call names a directory and
// a name in it, so a rename never crosses directories and one fsync of
// the directory makes it durable.
type recorder struct {
	t *testing.T
	// mu: a group writes its temp files from several goroutines.
	mu   sync.Mutex
	ops  []op
	ino  map[string]int // path -> inode, as the calls left them
	next int
	// skip, if set, drops the calls it matches from the record: the model
	// then sees a writer that never made them (see TestCrashModelNeedsEveryFsync).
	skip func(o op) bool
}

var _ fileSystem = (*recorder)(nil)

func newRecorder(t *testing.T, from diskImage) *recorder {
	r := &recorder{t: t, ino: map[string]int{}}
	for p, i := range from.entries {
		r.ino[p] = i
		r.next = max(r.next, i+1)
	}
	return r
}

func (r *recorder) add(o op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(o)
}

func (r *recorder) addLocked(o op) {
	if r.skip != nil && r.skip(o) {
		return
	}
	r.ops = append(r.ops, o)
}

func (r *recorder) CreateTemp(d *dir, pattern string) (tempFile, error) {
	f, err := osDisk{}.CreateTemp(d, pattern)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.next
	r.next++
	r.ino[f.Name()] = i
	r.addLocked(op{kind: opCreate, path: f.Name(), ino: i})
	return &recordedFile{tempFile: f, r: r, ino: i}, nil
}

func (r *recorder) Mkdir(d *dir, name string, perm fs.FileMode) error {
	if err := (osDisk{}).Mkdir(d, name, perm); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.next
	r.next++
	r.ino[d.join(name)] = i
	r.addLocked(op{kind: opMkdir, path: d.join(name), ino: i})
	return nil
}

func (r *recorder) Rename(d *dir, fromName, toName string) error {
	from, to := d.join(fromName), d.join(toName)
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.ino[from]
	if err := (osDisk{}).Rename(d, fromName, toName); err != nil {
		return err
	}
	if !ok {
		r.t.Fatalf("rename of %s, which the recorder never saw", from)
	}
	delete(r.ino, from)
	r.ino[to] = i
	r.addLocked(op{kind: opRename, path: from, to: to, ino: i})
	return nil
}

func (r *recorder) Remove(d *dir, name string) error {
	if err := (osDisk{}).Remove(d, name); err != nil {
		return err
	}
	path := d.join(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(op{kind: opRemove, path: path, ino: r.ino[path]})
	delete(r.ino, path)
	return nil
}

// Link records a new name (path) for the inode named to: a directory
// operation in d, durable only once d is fsynced, like a create.
func (r *recorder) Link(d *dir, fromName, toName string) error {
	from, to := d.join(fromName), d.join(toName)
	if err := (osDisk{}).Link(d, fromName, toName); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.ino[from]
	if !ok {
		// Errorf: a group's links are made from the writers' goroutines.
		r.t.Errorf("link of %s, which the recorder never saw made", from)
		return fmt.Errorf("link of %s, unknown to the recorder", from)
	}
	r.ino[to] = i
	r.addLocked(op{kind: opLink, path: to, to: from, ino: i})
	return nil
}

// SyncDir checks that the directory can be opened for an fsync, as the
// real one does, and records the call without making it.
func (r *recorder) SyncDir(d *dir) error {
	fd, err := unix.Openat(d.fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	unix.Close(fd)
	r.add(op{kind: opSyncDir, path: d.path})
	return nil
}

type recordedFile struct {
	tempFile
	r   *recorder
	ino int
}

func (f *recordedFile) Write(b []byte) (int, error) {
	n, err := f.tempFile.Write(b)
	f.r.add(op{kind: opWrite, path: f.Name(), ino: f.ino, data: string(b[:n])})
	return n, err
}

func (f *recordedFile) Chmod(mode fs.FileMode) error {
	if err := f.tempFile.Chmod(mode); err != nil {
		return err
	}
	f.r.add(op{kind: opChmod, path: f.Name(), ino: f.ino, mode: mode})
	return nil
}

func (f *recordedFile) Chown(uid, gid int) error {
	if err := f.tempFile.Chown(uid, gid); err != nil {
		return err
	}
	f.r.add(op{kind: opChown, path: f.Name(), ino: f.ino})
	return nil
}

func (f *recordedFile) Sync() error {
	f.r.add(op{kind: opSync, path: f.Name(), ino: f.ino})
	return nil
}

// snapshot reads the tree under root as a disk image, all of it durable.
func snapshot(t *testing.T, root string) diskImage {
	t.Helper()
	im := diskImage{entries: map[string]int{}, inodes: map[int]inode{}}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n := inode{dir: d.IsDir(), mode: info.Mode().Perm()}
		if !n.dir {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.data = string(data)
		}
		i := len(im.inodes)
		im.entries[p], im.inodes[i] = i, n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// materialise makes the tree under root exactly im.
func materialise(t *testing.T, root string, im diskImage) {
	t.Helper()
	old, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range old {
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	paths := make([]string, 0, len(im.entries))
	for p := range im.entries {
		paths = append(paths, p)
	}
	slices.Sort(paths) // parents first
	for _, p := range paths {
		n := im.inodes[im.entries[p]]
		if n.dir {
			err = os.Mkdir(p, n.mode)
		} else {
			err = os.WriteFile(p, []byte(n.data), n.mode)
		}
		if err == nil {
			err = os.Chmod(p, n.mode) // whatever the umask
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// crashImages returns every image a crash after the first k ops of ops,
// started from the durable image base, may leave, each with a note of
// what the crash lost.
func crashImages(t *testing.T, root string, base diskImage, ops []op, k int) ([]diskImage, []string) {
	t.Helper()
	durable := map[int]inode{}
	current := map[int]inode{}
	for i, n := range base.inodes {
		durable[i], current[i] = n, n
	}
	var optional []int
	mandatory := map[int]bool{}
	for i, o := range ops[:k] {
		switch o.kind {
		case opCreate:
			current[o.ino] = inode{mode: 0o600}
			durable[o.ino] = inode{mode: 0o600}
		case opMkdir:
			current[o.ino] = inode{dir: true, mode: 0o755}
			durable[o.ino] = current[o.ino]
		case opWrite:
			n := current[o.ino]
			n.data += o.data
			current[o.ino] = n
		case opChmod:
			n := current[o.ino]
			n.mode = o.mode
			current[o.ino] = n
		case opSync:
			durable[o.ino] = current[o.ino]
		}
		if !o.dirOp() {
			continue
		}
		dir := filepath.Dir(o.path)
		if slices.ContainsFunc(ops[i+1:k], func(s op) bool { return s.kind == opSyncDir && s.path == dir }) {
			mandatory[i] = true
		} else {
			optional = append(optional, i)
		}
	}
	const maxOptional = 16
	if len(optional) > maxOptional {
		t.Fatalf("%d directory operations not yet fsynced at one crash point: more than the %d the model enumerates (2^n images); write fewer sets per scenario", len(optional), maxOptional)
	}
	build := func(keep func(i int) bool, inodes map[int]inode) diskImage {
		im := diskImage{entries: map[string]int{}, inodes: map[int]inode{}}
		for p, i := range base.entries {
			im.entries[p] = i
		}
		for i, o := range ops[:k] {
			if !o.dirOp() || !keep(i) {
				continue
			}
			switch o.kind {
			case opCreate, opMkdir, opLink:
				im.entries[o.path] = o.ino
			case opRename:
				delete(im.entries, o.path)
				im.entries[o.to] = o.ino
			case opRemove:
				delete(im.entries, o.path)
			}
		}
		// What sits in a directory whose creation was lost is lost too.
		for p := range im.entries {
			for d := filepath.Dir(p); d != root && d != "/"; d = filepath.Dir(d) {
				if _, ok := im.entries[d]; !ok {
					delete(im.entries, p)
					break
				}
			}
		}
		for _, i := range im.entries {
			im.inodes[i] = inodes[i]
		}
		return im
	}
	images := []diskImage{build(func(int) bool { return true }, current)}
	notes := []string{"process crash: nothing lost"}
	for mask := 0; mask < 1<<len(optional); mask++ {
		var lost []string
		kept := map[int]bool{}
		for b, i := range optional {
			if mask&(1<<b) != 0 {
				kept[i] = true
			} else {
				lost = append(lost, ops[i].String())
			}
		}
		images = append(images, build(func(i int) bool { return mandatory[i] || kept[i] }, durable))
		var unsynced []string
		for i, n := range current {
			if durable[i] != n && !n.dir {
				unsynced = append(unsynced, fmt.Sprint(i))
			}
		}
		note := "power loss; lost directory operations: [" + strings.Join(lost, "; ") + "]"
		if len(unsynced) > 0 {
			note += fmt.Sprintf("; %d inode(s) not fsynced came back empty", len(unsynced))
		}
		notes = append(notes, note)
	}
	return images, notes
}

// content is what one destination holds; absent means no file.
type content struct {
	data   string
	mode   fs.FileMode
	absent bool
}

// crashSet is one file set: what it held before the action and what the
// action makes it hold.
type crashSet struct {
	journal  string
	old, new map[string]content
}

func (s crashSet) destinations() []string {
	var out []string
	for p := range s.old {
		out = append(out, p)
	}
	for p := range s.new {
		if _, ok := s.old[p]; !ok {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// crashScenario is one action on disk to crash at every point. setup
// makes the old state with plain os calls (it counts as durable) and
// returns the action, which must write only through disk. recover is
// what a start does; nil means RecoverSets over the sets' journals (a
// writer that commits several sets under one journal gives each set
// that journal, or brings its own recovery here).
type crashScenario struct {
	name    string
	sets    func(root string) []crashSet
	setup   func(t *testing.T, root string) (action func() error)
	recover func(sets []crashSet) error
	// check, if set, looks at the calls the action made (without a
	// crash), to show the scenario reaches the points it is about.
	check func(t *testing.T, root string, ops []op)
}

// verdict says, for each set, whether the disk holds its old or its new
// content, and describes a set that holds neither.
func verdict(sets []crashSet) (outcome []string, problems []string) {
	for _, s := range sets {
		var isOld, isNew = true, true
		var got []string
		for _, p := range s.destinations() {
			c := content{absent: true}
			if info, err := os.Lstat(p); err == nil {
				data, _ := os.ReadFile(p)
				c = content{data: string(data), mode: info.Mode().Perm()}
			}
			if c != lookup(s.old, p) {
				isOld = false
			}
			if c != lookup(s.new, p) {
				isNew = false
			}
			if c.absent {
				got = append(got, filepath.Base(p)+"=absent")
			} else {
				got = append(got, fmt.Sprintf("%s=%q(%o)", filepath.Base(p), c.data, c.mode))
			}
		}
		switch {
		case isNew:
			outcome = append(outcome, "new")
		case isOld:
			outcome = append(outcome, "old")
		default:
			outcome = append(outcome, "mixed")
			problems = append(problems, fmt.Sprintf("set %s is neither old nor new: %s", filepath.Base(s.journal), strings.Join(got, " ")))
		}
		if _, err := os.Lstat(s.journal); err == nil {
			problems = append(problems, "journal "+filepath.Base(s.journal)+" left after recovery")
		}
		for _, d := range s.destinations() {
			ents, _ := os.ReadDir(filepath.Dir(d))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), tempPrefix(d)) {
					problems = append(problems, "temp file "+e.Name()+" left after recovery")
				}
			}
		}
	}
	return outcome, slices.Compact(problems)
}

func lookup(m map[string]content, p string) content {
	if c, ok := m[p]; ok {
		return c
	}
	return content{absent: true}
}

// recoverSets is what the agent does at start for every set.
func recoverSets(sets []crashSet) error {
	var rs []Set
	for _, s := range sets {
		rs = append(rs, Set{Journal: s.journal, Destinations: s.destinations()})
	}
	return errorsJoin(RecoverSets(rs))
}

func errorsJoin(errs []error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}

// withDisk runs fn with d as the disk.
func withDisk(d fileSystem, fn func() error) error {
	disk = d
	defer func() { disk = osDisk{} }()
	return fn()
}

// crashRoot is where a scenario runs. The model, not the disk, decides
// what survives, so the disk need not be durable: on a memory file system
// the thousands of replays take a fraction of a second instead of seconds.
func crashRoot(t *testing.T) string {
	t.Helper()
	if dir, err := os.MkdirTemp("/dev/shm", "certkeeper-crash-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return t.TempDir()
}

// explore crashes sc at every point and checks every image. It returns how
// many distinct images it recovered.
func explore(t *testing.T, sc crashScenario) int {
	t.Helper()
	n, failures := exploreWith(t, sc, nil)
	for i, f := range failures {
		if i == 5 {
			t.Errorf("... and %d more crash images fail", len(failures)-5)
			break
		}
		t.Error(f)
	}
	return n
}

// exploreWith is explore with the calls skip matches left out of the
// record (as if the writer never made them), returning every failure.
func exploreWith(t *testing.T, sc crashScenario, skip func(op) bool) (int, []string) {
	t.Helper()
	root := crashRoot(t)
	action := sc.setup(t, root)
	sets := sc.sets(root)
	recoverAll := sc.recover
	if recoverAll == nil {
		recoverAll = recoverSets
	}
	base := snapshot(t, root)
	if out, problems := verdict(sets); len(problems) > 0 || slices.ContainsFunc(out, func(s string) bool { return s != "old" }) {
		t.Fatalf("setup did not leave the old sets: %v %v", out, problems)
	}
	rec := newRecorder(t, base)
	rec.skip = skip
	if err := withDisk(rec, action); err != nil {
		t.Fatalf("the action failed without any crash: %v", err)
	}
	if sc.check != nil {
		sc.check(t, root, rec.ops)
	}
	if out, problems := verdict(sets); len(problems) > 0 || slices.ContainsFunc(out, func(s string) bool { return s != "new" }) {
		t.Fatalf("without a crash the action left %v %v", out, problems)
	}
	seen := map[string]bool{}
	var failures []string
	fail := func(format string, args ...any) {
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	for k := 0; k <= len(rec.ops); k++ {
		images, notes := crashImages(t, root, base, rec.ops, k)
		returned := k == len(rec.ops)
		point := "before any call"
		if k > 0 {
			point = "after " + rec.ops[k-1].String()
		}
		if returned {
			point = "after the action returned"
		}
		for n, im := range images {
			if seen[im.key()+fmt.Sprint(returned)] {
				continue
			}
			seen[im.key()+fmt.Sprint(returned)] = true
			where := fmt.Sprintf("crash %s (op %d of %d; %s)", point, k, len(rec.ops), notes[n])
			materialise(t, root, im)
			rrec := newRecorder(t, im)
			if err := withDisk(rrec, func() error { return recoverAll(sets) }); err != nil {
				fail("%s: recovery failed: %v", where, err)
				continue
			}
			outcome, problems := verdict(sets)
			if returned && slices.ContainsFunc(outcome, func(s string) bool { return s != "new" }) {
				problems = append(problems, fmt.Sprintf("the write had returned, yet after recovery the sets are %v, not new", outcome))
			}
			if len(problems) > 0 {
				fail("%s:\n\t%s", where, strings.Join(problems, "\n\t"))
				continue
			}
			// Crash the recovery at each of its points, and recover again.
			for k2 := 0; k2 <= len(rrec.ops); k2++ {
				images2, notes2 := crashImages(t, root, im, rrec.ops, k2)
				for n2, im2 := range images2 {
					done := k2 == len(rrec.ops)
					key := "r|" + im2.key() + fmt.Sprint(returned, done, outcome)
					if seen[key] {
						continue
					}
					seen[key] = true
					where2 := fmt.Sprintf("%s, then a crash during recovery after %d of its %d calls (%s)", where, k2, len(rrec.ops), notes2[n2])
					materialise(t, root, im2)
					if err := withDisk(newRecorder(t, im2), func() error { return recoverAll(sets) }); err != nil {
						fail("%s: second recovery failed: %v", where2, err)
						continue
					}
					outcome2, problems2 := verdict(sets)
					if done && !slices.Equal(outcome2, outcome) {
						problems2 = append(problems2, fmt.Sprintf("recovery had returned with the sets %v, yet after a crash they are %v", outcome, outcome2))
					}
					if returned && slices.ContainsFunc(outcome2, func(s string) bool { return s != "new" }) {
						problems2 = append(problems2, fmt.Sprintf("the write had returned, yet the sets are %v, not new", outcome2))
					}
					if len(problems2) > 0 {
						fail("%s:\n\t%s", where2, strings.Join(problems2, "\n\t"))
					}
				}
			}
		}
	}
	return len(seen), failures
}

func file(path, data string, mode fs.FileMode) File {
	return File{Path: path, Data: []byte(data), Mode: mode, UID: -1, GID: -1}
}

func contents(files ...File) map[string]content {
	m := map[string]content{}
	for _, f := range files {
		m[f.Path] = content{data: string(f.Data), mode: f.Mode}
	}
	return m
}

// writeOld writes files with plain os calls, as the durable starting point.
func writeOld(t *testing.T, files ...File) {
	t.Helper()
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.Path, f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(f.Path, f.Mode)
	}
}

// crashSetFiles is a certificate's set as the agent writes it: key and
// certificate in an output directory, the record in the state directory.
func crashSetFiles(root, outDir, name, version string) []File {
	return []File{
		file(filepath.Join(root, outDir, name+".key"), "KEY-"+name+"-"+version, 0o600),
		file(filepath.Join(root, outDir, name+".crt"), "CERT-"+name+"-"+version, 0o644),
		file(filepath.Join(root, "state", name+".json"), "RECORD-"+name+"-"+version, 0o600),
	}
}

// withChain adds a chain file to a set.
func withChain(files []File) []File {
	return append(files, file(filepath.Join(filepath.Dir(files[0].Path), "chain.pem"), "CHAIN-"+string(files[1].Data), 0o644))
}

func crashJournal(root, name string) string { return filepath.Join(root, "state", name+".journal") }

// crashScenarios are the writes certkeeper makes, each to be crashed at
// every point.
var crashScenarios = []crashScenario{
	{
		name: "a set replaced across two directories",
		sets: func(root string) []crashSet {
			return []crashSet{{journal: crashJournal(root, "web"), old: contents(crashSetFiles(root, "tls", "web", "1")...), new: contents(crashSetFiles(root, "tls", "web", "2")...)}}
		},
		setup: func(t *testing.T, root string) func() error {
			writeOld(t, crashSetFiles(root, "tls", "web", "1")...)
			return func() error {
				_, err := WriteSet(crashJournal(root, "web"), crashSetFiles(root, "tls", "web", "2"))
				return err
			}
		},
	},
	{
		name: "the first write, into an output directory that does not exist yet",
		sets: func(root string) []crashSet {
			return []crashSet{{journal: crashJournal(root, "web"), old: map[string]content{}, new: contents(crashSetFiles(root, "etc/tls", "web", "1")...)}}
		},
		setup: func(t *testing.T, root string) func() error {
			os.Mkdir(filepath.Join(root, "state"), 0o700)
			return func() error {
				_, err := WriteSet(crashJournal(root, "web"), crashSetFiles(root, "etc/tls", "web", "1"))
				return err
			}
		},
	},
	{
		name: "one file of a set changes (no journal)",
		sets: func(root string) []crashSet {
			old := crashSetFiles(root, "tls", "web", "1")
			next := slices.Clone(old)
			next[1] = file(next[1].Path, "CERT-web-1-with-another-chain", 0o644)
			return []crashSet{{journal: crashJournal(root, "web"), old: contents(old...), new: contents(next...)}}
		},
		setup: func(t *testing.T, root string) func() error {
			old := crashSetFiles(root, "tls", "web", "1")
			writeOld(t, old...)
			next := slices.Clone(old)
			next[1] = file(next[1].Path, "CERT-web-1-with-another-chain", 0o644)
			return func() error {
				_, err := WriteSet(crashJournal(root, "web"), next)
				return err
			}
		},
	},
	{
		name: "two sets written one after the other into one directory",
		sets: func(root string) []crashSet {
			return []crashSet{
				{journal: crashJournal(root, "a"), old: contents(crashSetFiles(root, "tls", "a", "1")...), new: contents(crashSetFiles(root, "tls", "a", "2")...)},
				{journal: crashJournal(root, "b"), old: contents(crashSetFiles(root, "tls", "b", "1")...), new: contents(crashSetFiles(root, "tls", "b", "2")...)},
			}
		},
		setup: func(t *testing.T, root string) func() error {
			writeOld(t, append(crashSetFiles(root, "tls", "a", "1"), crashSetFiles(root, "tls", "b", "1")...)...)
			return func() error {
				if _, err := WriteSet(crashJournal(root, "a"), crashSetFiles(root, "tls", "a", "2")); err != nil {
					return err
				}
				_, err := WriteSet(crashJournal(root, "b"), crashSetFiles(root, "tls", "b", "2"))
				return err
			}
		},
	},
	{
		name: "a rollback",
		sets: func(root string) []crashSet {
			return []crashSet{{journal: crashJournal(root, "web"), old: contents(crashSetFiles(root, "tls", "web", "2")...), new: contents(crashSetFiles(root, "tls", "web", "1")...)}}
		},
		setup: func(t *testing.T, root string) func() error {
			writeOld(t, crashSetFiles(root, "tls", "web", "1")...)
			change, err := WriteSet(crashJournal(root, "web"), crashSetFiles(root, "tls", "web", "2"))
			if err != nil {
				t.Fatal(err)
			}
			return func() error { return Sets{}.Rollback(change) }
		},
	},
	{
		name: "a rollback that removes a file the change created",
		sets: func(root string) []crashSet {
			return []crashSet{{journal: crashJournal(root, "web"), old: contents(withChain(crashSetFiles(root, "tls", "web", "2"))...), new: contents(crashSetFiles(root, "tls", "web", "1")...)}}
		},
		setup: func(t *testing.T, root string) func() error {
			writeOld(t, crashSetFiles(root, "tls", "web", "1")...)
			change, err := WriteSet(crashJournal(root, "web"), withChain(crashSetFiles(root, "tls", "web", "2")))
			if err != nil {
				t.Fatal(err)
			}
			return func() error { return Sets{}.Rollback(change) }
		},
	},
	{
		// A state_dir owner replacing root's 0600 key (left by a root run
		// before the owner took over): the write never reads it, and the
		// rollback that would need its bytes is refused, so the set is
		// whole at every point, and new once the write has returned.
		name: "a write over a previous key this process may not read, then the rollback it refuses",
		sets: func(root string) []crashSet {
			return []crashSet{{journal: crashJournal(root, "web"), old: contents(crashSetFiles(root, "tls", "web", "1")...), new: contents(crashSetFiles(root, "tls", "web", "2")...)}}
		},
		setup: func(t *testing.T, root string) func() error {
			if os.Geteuid() != 0 {
				t.Skip("needs root, to take away root's right to read any file; TestWriteReplacesUnreadable covers this path without crashes as any user")
			}
			if err := withoutReadOverride(func() error { return nil }); err != nil {
				t.Skipf("cannot drop the capability to read any file: %v", err)
			}
			old := crashSetFiles(root, "tls", "web", "1")
			writeOld(t, old...)
			// Another user's key: without CAP_DAC_OVERRIDE, unreadable.
			if err := os.Chown(old[0].Path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return func() error {
				return withoutReadOverride(func() error {
					change, err := WriteSet(crashJournal(root, "web"), crashSetFiles(root, "tls", "web", "2"))
					if err != nil {
						return err
					}
					if err := (Sets{}).Rollback(change); err == nil || !strings.Contains(err.Error(), "could not be read") {
						return fmt.Errorf("rollback over an unreadable previous key: %v, want a refusal that keeps the new set", err)
					}
					return nil
				})
			}
		},
	},
}

// movedRecord is the migration of a record from the flat layout of
// certkeeper up to 170922d (state/web.json) to its own directory
// (state/certs/web.json), under the certificate's journal.
func movedRecord(root string) (legacy, moved, journal string) {
	state := filepath.Join(root, "state")
	return filepath.Join(state, "web.json"), filepath.Join(state, "certs", "web.json"), filepath.Join(state, "certs", "web.journal")
}

func init() {
	crashScenarios = append(crashScenarios, crashScenario{
		// Every start migrates: it finishes an interrupted Move, then
		// moves a record still at the old place. So a crash anywhere, then
		// a start, ends with the record at its new place, never at both,
		// never at neither.
		name: "a record moved from the flat layout to certs/ (migration)",
		sets: func(root string) []crashSet {
			legacy, moved, journal := movedRecord(root)
			return []crashSet{{journal: journal,
				old: map[string]content{legacy: {data: "RECORD-web", mode: 0o600}},
				new: map[string]content{moved: {data: "RECORD-web", mode: 0o600}}}}
		},
		setup: func(t *testing.T, root string) func() error {
			legacy, moved, journal := movedRecord(root)
			os.MkdirAll(filepath.Dir(moved), 0o700)
			writeOld(t, file(legacy, "RECORD-web", 0o600))
			return func() error { return Move(journal, legacy, moved) }
		},
		recover: func(sets []crashSet) error {
			// <root>/state/certs/web.journal
			legacy, moved, journal := movedRecord(filepath.Dir(filepath.Dir(filepath.Dir(sets[0].journal))))
			if err := Recover(journal, []string{legacy, moved}); err != nil {
				return err
			}
			if _, err := os.Lstat(legacy); err == nil {
				return Move(journal, legacy, moved)
			}
			return nil
		},
	})
}

// TestCrashConsistency crashes every scenario at every point under the
// model above.
func TestCrashConsistency(t *testing.T) {
	for _, sc := range crashScenarios {
		t.Run(sc.name, func(t *testing.T) {
			n := explore(t, sc)
			t.Logf("%d distinct crash images recovered and checked", n)
		})
	}
}
