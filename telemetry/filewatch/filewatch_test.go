package filewatch

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
)

// certPEM makes a self-signed certificate for cn expiring at notAfter.
func certPEM(t *testing.T, cn string, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t *testing.T) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// replace writes data beside path and renames it over path, as atomic
// writers (certkeeper itself, certbot, package managers) do.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	write(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newWatcher(t *testing.T, o Options) (*Watcher, *cktest.SyncBuffer) {
	t.Helper()
	logs := &cktest.SyncBuffer{}
	o.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return New(o), logs
}

// run starts w and stops it when the test ends.
func run(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func byPath(files []File) map[string]File {
	m := map[string]File{}
	for _, f := range files {
		m[f.Path] = f
	}
	return m
}

// waitFor polls until cond holds for the watcher's files.
func waitFor(t *testing.T, w *Watcher, what string, cond func(map[string]File) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond(byPath(w.Files())) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; files: %+v", what, w.Files())
}

func notAfterOf(f File, cn string) time.Time {
	for _, c := range f.Certificates {
		if strings.Contains(c.Subject, "CN="+cn) {
			return c.NotAfter
		}
	}
	return time.Time{}
}

// A glob, a directory and a named file are all read; every certificate of
// a bundle is reported; keys and dot files in a directory are not.
func TestScanGlobsDirectoriesAndBundles(t *testing.T) {
	dir := t.TempDir()
	na1 := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	na2 := time.Now().Add(60 * 24 * time.Hour).Truncate(time.Second)
	write(t, filepath.Join(dir, "private", "a.pem"), certPEM(t, "a", na1))
	write(t, filepath.Join(dir, "private", "notes.txt"), []byte("not matched by the glob"))
	write(t, filepath.Join(dir, "app", "bundle.crt"), append(certPEM(t, "leaf", na1), certPEM(t, "inter", na2)...))
	write(t, filepath.Join(dir, "app", "server.key"), keyPEM(t))
	write(t, filepath.Join(dir, "app", ".swap"), []byte("editor junk"))
	write(t, filepath.Join(dir, "one.pem"), certPEM(t, "one", na2))

	w, logs := newWatcher(t, Options{Paths: []string{
		filepath.Join(dir, "private", "*.pem"),
		filepath.Join(dir, "app"),
		filepath.Join(dir, "one.pem"),
	}})
	dirs := w.Scan()
	files := byPath(w.Files())
	if len(files) != 3 {
		t.Fatalf("got files %v, want a.pem, bundle.crt, one.pem", files)
	}
	if got := notAfterOf(files[filepath.Join(dir, "private", "a.pem")], "a"); !got.Equal(na1) {
		t.Errorf("a.pem not_after %v, want %v", got, na1)
	}
	bundle := files[filepath.Join(dir, "app", "bundle.crt")]
	if len(bundle.Certificates) != 2 || !notAfterOf(bundle, "leaf").Equal(na1) || !notAfterOf(bundle, "inter").Equal(na2) {
		t.Errorf("bundle = %+v, want leaf and inter", bundle)
	}
	if bundle.Certificates[0].Subject != "CN=leaf,O=Example" {
		t.Errorf("subject %q, want the RFC 2253 form", bundle.Certificates[0].Subject)
	}
	for _, f := range files {
		if f.Err != "" || f.ReadErrors != 0 {
			t.Errorf("%s: unexpected error %q (%d)", f.Path, f.Err, f.ReadErrors)
		}
	}
	wantDirs := []string{dir, filepath.Join(dir, "app"), filepath.Join(dir, "private")}
	if strings.Join(dirs, ",") != strings.Join(wantDirs, ",") {
		t.Errorf("watched dirs %v, want %v", dirs, wantDirs)
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("a key in a watched directory reached the logs")
	}
}

// A file replaced by rename (the usual way) is seen through the parent
// directory's events; the periodic rescan is an hour away, so only events
// can explain it.
func TestReplacedByRenameIsSeen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.pem")
	first := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	write(t, path, certPEM(t, "web", first))
	w, _ := newWatcher(t, Options{Paths: []string{filepath.Join(dir, "*.pem")}, Rescan: time.Hour, Settle: 20 * time.Millisecond})
	run(t, w)
	waitFor(t, w, "first version", func(m map[string]File) bool { return notAfterOf(m[path], "web").Equal(first) })

	for i := 1; i <= 3; i++ {
		next := first.Add(time.Duration(i) * 24 * time.Hour)
		replace(t, path, certPEM(t, "web", next))
		waitFor(t, w, "replaced version", func(m map[string]File) bool { return notAfterOf(m[path], "web").Equal(next) })
	}

	// A new file matching the glob appears; one is removed.
	other := filepath.Join(dir, "api.pem")
	replace(t, other, certPEM(t, "api", first))
	waitFor(t, w, "new file", func(m map[string]File) bool { return len(m[other].Certificates) == 1 })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, "removed file to drop out", func(m map[string]File) bool { _, ok := m[path]; return !ok })
}

// Kubernetes swaps a ..data symlink; the files are links through it. The
// event names the link, yet the certificates must be re-read.
func TestSymlinkSwapIsSeen(t *testing.T) {
	dir := t.TempDir()
	na1 := time.Now().Add(5 * 24 * time.Hour).Truncate(time.Second)
	na2 := na1.Add(24 * time.Hour)
	write(t, filepath.Join(dir, "..v1", "tls.crt"), certPEM(t, "pod", na1))
	write(t, filepath.Join(dir, "..v2", "tls.crt"), certPEM(t, "pod", na2))
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/tls.crt", filepath.Join(dir, "tls.crt")))

	w, _ := newWatcher(t, Options{Paths: []string{dir}, Rescan: time.Hour, Settle: 20 * time.Millisecond})
	run(t, w)
	path := filepath.Join(dir, "tls.crt")
	waitFor(t, w, "first version", func(m map[string]File) bool { return notAfterOf(m[path], "pod").Equal(na1) && len(m) == 1 })

	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	waitFor(t, w, "swapped version", func(m map[string]File) bool { return notAfterOf(m[path], "pod").Equal(na2) })
}

// A file that cannot be parsed is counted and reported, never fatal, and is
// not counted again until it changes; fixed, it is read normally.
func TestUnreadableFileIsCounted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.pem")
	write(t, path, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"))
	missing := filepath.Join(dir, "missing.pem")
	w, logs := newWatcher(t, Options{Paths: []string{path, missing, filepath.Join(dir, "*.txt")}})
	write(t, filepath.Join(dir, "plain.txt"), []byte("hello"))
	w.Scan()
	w.Scan() // unchanged: not counted twice
	files := byPath(w.Files())
	if f := files[path]; f.ReadErrors != 1 || !strings.Contains(f.Err, "parsing certificate") || len(f.Certificates) != 0 {
		t.Errorf("bad.pem = %+v, want one read error", f)
	}
	if f := files[missing]; f.ReadErrors != 1 || !strings.Contains(f.Err, "no such file") {
		t.Errorf("missing.pem = %+v, want one read error saying it is missing", f)
	}
	if f := files[filepath.Join(dir, "plain.txt")]; f.ReadErrors != 1 || f.Err != "no PEM data" {
		t.Errorf("plain.txt = %+v", f)
	}
	if strings.Contains(logs.String(), "bm90IGEgY2VydGlmaWNhdGU") {
		t.Error("the file's bytes reached the logs")
	}

	na := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	replace(t, path, certPEM(t, "fixed", na))
	w.Scan()
	if f := byPath(w.Files())[path]; f.Err != "" || f.ReadErrors != 1 || !notAfterOf(f, "fixed").Equal(na) {
		t.Errorf("after fixing: %+v", f)
	}
	replace(t, path, []byte("garbage again"))
	w.Scan()
	if f := byPath(w.Files())[path]; f.ReadErrors != 2 {
		t.Errorf("broken again: read errors %d, want 2", f.ReadErrors)
	}
}

// With no file system events at all (NFS), the periodic rescan still
// notices a change.
func TestRescanWithoutEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nfs.pem")
	na1 := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	write(t, path, certPEM(t, "nfs", na1))
	w, _ := newWatcher(t, Options{Paths: []string{path}, Rescan: 50 * time.Millisecond})
	w.noEvents = true
	run(t, w)
	waitFor(t, w, "first version", func(m map[string]File) bool { return notAfterOf(m[path], "nfs").Equal(na1) })
	na2 := na1.Add(time.Hour)
	replace(t, path, certPEM(t, "nfs", na2))
	waitFor(t, w, "rescanned version", func(m map[string]File) bool { return notAfterOf(m[path], "nfs").Equal(na2) })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A directory that never goes quiet (something writes beside the watched
// file all the time) still gets its changes read: events only postpone a
// scan up to a bound.
func TestBusyDirectoryStillScanned(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.pem")
	na1 := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	write(t, path, certPEM(t, "web", na1))
	w, _ := newWatcher(t, Options{Paths: []string{path}, Rescan: time.Hour, Settle: 100 * time.Millisecond})
	run(t, w)
	waitFor(t, w, "first version", func(m map[string]File) bool { return notAfterOf(m[path], "web").Equal(na1) })

	stop := make(chan struct{})
	noisy := make(chan struct{})
	go func() {
		defer close(noisy)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				os.WriteFile(filepath.Join(dir, "access.log"), []byte(strings.Repeat("x", i%100)), 0o644)
			}
		}
	}()
	defer func() { close(stop); <-noisy }()
	time.Sleep(300 * time.Millisecond) // the burst is under way
	na2 := na1.Add(time.Hour)
	replace(t, path, certPEM(t, "web", na2))
	waitFor(t, w, "the change in a busy directory", func(m map[string]File) bool { return notAfterOf(m[path], "web").Equal(na2) })
}
