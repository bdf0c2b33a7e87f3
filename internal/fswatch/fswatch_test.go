package fswatch

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// watch runs a watcher on files and returns a channel of its batches.
func watch(t *testing.T, opts Options, files ...string) (*Watcher, <-chan []Event) {
	t.Helper()
	opts.Quiet = 100 * time.Millisecond
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.Set(files)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan []Event, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, func(b []Event) { ch <- b })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w, ch
}

func next(t *testing.T, ch <-chan []Event) []Event {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no event batch within 10s")
		return nil
	}
}

func quiet(t *testing.T, ch <-chan []Event) {
	t.Helper()
	select {
	case b := <-ch:
		t.Fatalf("unexpected batch %v", b)
	case <-time.After(400 * time.Millisecond):
	}
}

func TestReplaceByRenameIsSeenEveryTime(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "certkeeper.hcl")
	os.WriteFile(cfg, []byte("v1"), 0o600)
	_, ch := watch(t, Options{}, cfg)
	// Config management writes a temp file and renames it over; a watch on
	// the file itself would see only the first of these.
	for i := range 3 {
		tmp := filepath.Join(dir, ".certkeeper.hcl.tmp")
		os.WriteFile(tmp, []byte{byte('a' + i)}, 0o600)
		if err := os.Rename(tmp, cfg); err != nil {
			t.Fatal(err)
		}
		b := next(t, ch)
		if len(b) != 1 || b[0].Path != cfg || b[0].What != "replaced" {
			t.Fatalf("replace %d: batch %v", i, b)
		}
	}
}

func TestBatchesAndFilters(t *testing.T) {
	dir := t.TempDir()
	key, crt := filepath.Join(dir, "web.key"), filepath.Join(dir, "web.crt")
	os.WriteFile(key, []byte("k"), 0o600)
	os.WriteFile(crt, []byte("c"), 0o644)
	_, ch := watch(t, Options{Chmod: true}, key, crt)

	// Files nobody asked about are ignored.
	os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o600)
	quiet(t, ch)

	// A burst is one batch.
	os.Remove(key)
	f, _ := os.OpenFile(crt, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("more")
	f.Close()
	b := next(t, ch)
	if len(b) != 2 || b[0] != (Event{crt, "modified"}) || b[1] != (Event{key, "deleted"}) {
		t.Fatalf("batch %v", b)
	}

	os.Chmod(crt, 0o666)
	if b := next(t, ch); len(b) != 1 || b[0] != (Event{crt, "mode changed"}) {
		t.Fatalf("chmod batch %v", b)
	}
}

func TestChmodIgnoredWhenNotAsked(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.hcl")
	os.WriteFile(cfg, []byte("x"), 0o600)
	_, ch := watch(t, Options{}, cfg)
	os.Chmod(cfg, 0o640)
	quiet(t, ch)
	// The same watcher reports a real change: the chmod was ignored, not
	// missed by a watcher that sees nothing.
	os.WriteFile(cfg, []byte("y"), 0o600)
	if b := next(t, ch); len(b) != 1 || b[0] != (Event{cfg, "modified"}) {
		t.Fatalf("batch after a write %v, want %s modified", b, cfg)
	}
}

// TestMissingDirectoryPickedUpLater: outputs of a certificate added by a
// reload live in a directory its first pass creates.
func TestMissingDirectoryPickedUpLater(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	key := filepath.Join(dir, "web.key")
	w, ch := watch(t, Options{}, key)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(key, []byte("k"), 0o600)
	quiet(t, ch)
	w.Set([]string{key})
	os.Remove(key)
	if b := next(t, ch); len(b) != 1 || b[0] != (Event{key, "deleted"}) {
		t.Fatalf("batch %v", b)
	}
}

// TestRewatchPicksUpDirectories: Rewatch does for directories what Set
// with the same files does: one made after the last call, and one deleted
// and made again, are watched from then on.
func TestRewatchPicksUpDirectories(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	key := filepath.Join(dir, "web.key")
	w, ch := watch(t, Options{}, key)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(key, []byte("k"), 0o600)
	quiet(t, ch)
	w.Rewatch()
	os.Remove(key)
	if b := next(t, ch); len(b) != 1 || b[0] != (Event{key, "deleted"}) {
		t.Fatalf("after the directory was made: batch %v", b)
	}
	os.RemoveAll(dir)
	if b := next(t, ch); len(b) != 1 || b[0].Path != key {
		t.Fatalf("directory deleted: batch %v", b)
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(key, []byte("k"), 0o600)
	quiet(t, ch)
	w.Rewatch()
	os.WriteFile(key, []byte("k2"), 0o600)
	if b := next(t, ch); len(b) != 1 || b[0] != (Event{key, "modified"}) {
		t.Fatalf("after the directory was made again: batch %v", b)
	}
}

// TestKubernetesDataSwap: a ConfigMap volume updates by swapping the
// ..data symlink; the files are links through it and never change name.
func TestKubernetesDataSwap(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		os.Mkdir(filepath.Join(dir, v), 0o755)
		os.WriteFile(filepath.Join(dir, v, "certkeeper.hcl"), []byte(v), 0o600)
	}
	os.Symlink("v1", filepath.Join(dir, "..data"))
	cfg := filepath.Join(dir, "certkeeper.hcl")
	os.Symlink("..data/certkeeper.hcl", cfg)
	_, ch := watch(t, Options{}, cfg)

	os.Symlink("v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	b := next(t, ch)
	if len(b) != 1 || b[0].Path != cfg {
		t.Fatalf("batch %v", b)
	}
	if data, _ := os.ReadFile(cfg); string(data) != "v2" {
		t.Fatalf("swap did not happen: %q", data)
	}
}

// TestBatchWait: a burst is reported a quiet window after its last event,
// but never later than MaxWait after its first.
func TestBatchWait(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q, m := 100*time.Millisecond, time.Second
	for _, tt := range []struct {
		since, maxWait, want time.Duration
	}{
		{0, m, q},                      // a fresh burst waits the quiet window
		{850 * time.Millisecond, m, q}, // still room for a whole window
		{950 * time.Millisecond, m, 50 * time.Millisecond}, // the cap comes first
		{2 * time.Second, m, 0},                            // past the cap: at once
		{2 * time.Second, 0, q},                            // no cap: always the window
	} {
		if got := batchWait(t0, t0.Add(tt.since), q, tt.maxWait); got != tt.want {
			t.Errorf("%v into a burst (max %v): wait %v, want %v", tt.since, tt.maxWait, got, tt.want)
		}
	}
}

// TestSetFindsEverySymlinkTarget: Set resolves the directories of many
// files once each, so a link anywhere must still be found as
// filepath.EvalSymlinks finds it: a file that is a link, a file in a
// linked directory, both, a chain of links, and no alias for a missing
// file, a dangling link or a missing directory.
func TestSetFindsEverySymlinkTarget(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	real := filepath.Join(dir, "real")
	must(os.Mkdir(real, 0o755))
	must(os.WriteFile(filepath.Join(real, "a"), nil, 0o644))
	must(os.Symlink("real", filepath.Join(dir, "link")))
	must(os.Symlink("link", filepath.Join(dir, "link2")))
	must(os.Symlink("a", filepath.Join(real, "to-a")))
	must(os.Symlink("../link/to-a", filepath.Join(real, "to-to-a")))
	must(os.Symlink("nowhere", filepath.Join(real, "dangling")))
	files := []string{
		filepath.Join(real, "a"),
		filepath.Join(dir, "link", "a"),
		filepath.Join(dir, "link2", "a"),
		filepath.Join(real, "to-a"),
		filepath.Join(dir, "link", "to-a"),
		filepath.Join(dir, "link2", "to-to-a"),
		filepath.Join(real, "dangling"),
		filepath.Join(real, "gone"),
		filepath.Join(dir, "missing", "x"),
	}
	want := map[string]string{}
	for _, f := range files {
		if r, err := filepath.EvalSymlinks(f); err == nil && r != f {
			want[r] = f
		}
	}
	if len(want) != 1 {
		// Every link resolves to real/a; the last file listed wins, as in Set.
		t.Fatalf("test setup: %v", want)
	}
	w, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.fsw.Close()
	for i := range files {
		// Each file alone, so each alias is checked, not only the last.
		one := map[string]string{}
		if r, err := filepath.EvalSymlinks(files[i]); err == nil && r != files[i] {
			one[r] = files[i]
		}
		w.Set(files[i : i+1])
		w.mu.Lock()
		got := maps.Clone(w.alias)
		w.mu.Unlock()
		if !maps.Equal(got, one) {
			t.Errorf("Set(%s): aliases %v, want %v", files[i], got, one)
		}
	}
	w.Set(files)
	w.mu.Lock()
	got := maps.Clone(w.alias)
	w.mu.Unlock()
	if !maps.Equal(got, want) {
		t.Errorf("Set(all): aliases %v, want %v", got, want)
	}
}

// BenchmarkSetOutputs: the daemon's Set of 40,000 output files (10,000
// certificates) in one directory six levels down, against resolving
// every path from the root (how Set did it before), and the Rewatch the
// daemon does each minute instead of a Set.
//
//	go test -run '^$' -bench SetOutputs ./internal/fswatch/
func BenchmarkSetOutputs(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "srv", "tls", "fleet", "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	files := make([]string, 40_000)
	for i := range files {
		files[i] = filepath.Join(dir, fmt.Sprintf("c%05d.%d.pem", i/4, i%4))
		if err := os.WriteFile(files[i], nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("resolve each path", func(b *testing.B) {
		for b.Loop() {
			for _, f := range files {
				filepath.EvalSymlinks(f)
			}
		}
	})
	w, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.fsw.Close()
	b.Run("Set", func(b *testing.B) {
		for b.Loop() {
			w.Set(files)
		}
	})
	b.Run("Rewatch", func(b *testing.B) {
		for b.Loop() {
			w.Rewatch()
		}
	})
}
