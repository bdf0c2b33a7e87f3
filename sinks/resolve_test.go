package sinks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func errText(err error) string { return fmt.Sprint(err) }

// TestSymlinkedParentIsRefused: a directory on the way to a destination
// that is a symlink (the key's directory, or one above it, pointing where
// an attacker chose) is refused, for writing and for reading, and nothing
// is written where it points, not even a temp file.
func TestSymlinkedParentIsRefused(t *testing.T) {
	root := t.TempDir()
	elsewhere := filepath.Join(root, "elsewhere")
	os.MkdirAll(filepath.Join(elsewhere, "private"), 0o755)
	os.WriteFile(filepath.Join(elsewhere, "web.key"), []byte("precious"), 0o600)
	tls := filepath.Join(root, "tls")
	if err := os.Symlink(elsewhere, tls); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{tls, filepath.Join(tls, "private")} {
		_, err := WriteSet(filepath.Join(root, "state", "j"), []File{
			{Path: filepath.Join(root, "web.crt"), Data: []byte("CERT"), Mode: 0o644, UID: -1, GID: -1},
			{Path: filepath.Join(dest, "web.key"), Data: []byte("KEY"), Mode: 0o600, UID: -1, GID: -1},
		})
		var unsafe *UnsafePathError
		if !errors.As(err, &unsafe) || !strings.Contains(err.Error(), tls+" is a symlink") {
			t.Fatalf("write through %s: err = %v, want a refusal naming the symlinked directory", dest, err)
		}
		if _, err := ReadFile(filepath.Join(dest, "web.key")); !strings.Contains(errText(err), tls+" is a symlink") {
			t.Errorf("read through %s: err = %v, want a refusal naming the symlinked directory", dest, err)
		}
	}
	for _, d := range []string{elsewhere, filepath.Join(elsewhere, "private")} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.Name() != "web.key" && e.Name() != "private" {
				t.Errorf("%s was written through the symlink", filepath.Join(d, e.Name()))
			}
		}
	}
	if got := mustRead(t, filepath.Join(elsewhere, "web.key")); got != "precious" {
		t.Errorf("the file the symlink leads to holds %q", got)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 2 {
		t.Errorf("the rest of the set was written although its key could not be: %v", entries)
	}
}

// TestUnsafeParentIsRefused: a directory on the way that someone other
// than root and the running user could change (world- or group-writable
// without the sticky bit, or another user's) is refused before anything
// is written in it; a sticky one, such as /tmp, is used.
func TestUnsafeParentIsRefused(t *testing.T) {
	cases := []struct {
		name string
		mode os.FileMode
		uid  int
		want string // "" means accepted
	}{
		{"world-writable", 0o777, -1, "writable by group or others (mode 0777) and not sticky"},
		{"group-writable", 0o775, -1, "writable by group or others (mode 0775) and not sticky"},
		{"sticky and world-writable, like /tmp", 0o777 | os.ModeSticky, -1, ""},
		{"private", 0o700, -1, ""},
		{"another user's", 0o755, 65534, "is owned by uid 65534"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.uid >= 0 && os.Geteuid() != 0 {
				t.Skip("needs root to give a directory to another user")
			}
			root := t.TempDir()
			shared := filepath.Join(root, "shared")
			os.Mkdir(shared, 0o755)
			if err := os.Chmod(shared, c.mode); err != nil {
				t.Fatal(err)
			}
			if c.uid >= 0 {
				os.Chown(shared, c.uid, c.uid)
			}
			// The directory is one above the destination's, so the walk,
			// not only the last step, is what refuses.
			key := filepath.Join(shared, "tls", "web.key")
			_, err := WriteSet(filepath.Join(root, "j"), []File{{Path: key, Data: []byte("KEY"), Mode: 0o600, UID: -1, GID: -1}})
			if c.want == "" {
				if err != nil {
					t.Fatalf("write under a %s directory: %v", c.name, err)
				}
				if got, err := ReadFile(key); err != nil || string(got) != "KEY" {
					t.Errorf("read back %q, %v", got, err)
				}
				return
			}
			if !strings.Contains(errText(err), "directory "+shared+" ") || !strings.Contains(errText(err), c.want) {
				t.Fatalf("err = %v, want a refusal of %s saying %q", err, shared, c.want)
			}
			if _, err := os.Stat(filepath.Join(shared, "tls")); err == nil {
				t.Error("a directory was made inside the refused one")
			}
			os.MkdirAll(filepath.Dir(key), 0o755)
			os.WriteFile(key, []byte("KEY"), 0o600)
			if _, err := ReadFile(key); !strings.Contains(errText(err), c.want) {
				t.Errorf("read under it: err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestForeignFileInStickyDirectory: in a directory anyone may create
// files in, a file another user put at a destination first is not taken
// for certkeeper's own: neither read nor replaced.
func TestForeignFileInStickyDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a file another user's")
	}
	shared := t.TempDir()
	os.Chmod(shared, 0o777|os.ModeSticky)
	key := filepath.Join(shared, "web.key")
	os.WriteFile(key, []byte("planted"), 0o600)
	os.Chown(key, 65534, 65534)
	if _, err := ReadFile(key); !strings.Contains(errText(err), "owned by uid 65534") {
		t.Errorf("read: err = %v, want a refusal naming the owner", err)
	}
	_, err := WriteSet(filepath.Join(t.TempDir(), "j"), []File{{Path: key, Data: []byte("KEY"), Mode: 0o600, UID: -1, GID: -1}})
	if !strings.Contains(errText(err), "owned by uid 65534") {
		t.Errorf("write: err = %v, want a refusal naming the owner", err)
	}
	if got := mustRead(t, key); got != "planted" {
		t.Errorf("the other user's file was replaced: %q", got)
	}
}

// TestHugeDestinationIsRefused: a file at a destination larger than any
// file certkeeper writes (300 MiB, sparse, so the test costs no disk) is
// refused by a read and by a write, with an error that says how large it
// is, and without reading it: both together allocate less than 1 MiB.
func TestHugeDestinationIsRefused(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "web.key")
	f, err := os.Create(key)
	if err != nil {
		t.Fatal(err)
	}
	const huge = 300 << 20
	if err := f.Truncate(huge); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Chmod(key, 0o600)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, readErr := ReadFile(key)
	_, writeErr := WriteSet(filepath.Join(dir, "j"), set(dir, "KEY", "CERT"))
	runtime.ReadMemStats(&after)
	for what, err := range map[string]error{"read": readErr, "write": writeErr} {
		var large *TooLargeError
		if !errors.As(err, &large) || large.Size != huge || large.Limit != MaxFile {
			t.Errorf("%s: err = %v, want a TooLargeError of %d bytes over %d", what, err, huge, MaxFile)
		}
		if !strings.Contains(errText(err), key) || !strings.Contains(errText(err), fmt.Sprint(huge)) {
			t.Errorf("%s: %q does not name the file and its size", what, err)
		}
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("refusing a %d-byte file allocated %d bytes", huge, got)
	}
	if _, err := os.Stat(filepath.Join(dir, "web.crt")); err == nil {
		t.Error("the certificate was written although its key could not be")
	}
	if info, _ := os.Stat(key); info.Size() != huge {
		t.Errorf("the huge file was replaced")
	}
}

// TestLimitRaisesTheCap: a writer of files larger than MaxFile (CRL
// files) replaces a previous one up to its own limit, and reads it back
// with ReadFileUpTo; ReadFile still refuses it.
func TestLimitRaisesTheCap(t *testing.T) {
	dir := t.TempDir()
	crl := filepath.Join(dir, "crl.pem")
	big := make([]byte, MaxFile+1)
	os.WriteFile(crl, big, 0o644)
	limit := int64(2 * MaxFile)
	if _, err := WriteSet(filepath.Join(dir, "j"), []File{{Path: crl, Data: []byte("CRL"), Mode: 0o644, UID: -1, GID: -1, Limit: limit}}); err != nil {
		t.Fatalf("replacing a previous file under the writer's own limit: %v", err)
	}
	os.WriteFile(crl, big, 0o644)
	if got, err := ReadFileUpTo(crl, limit); err != nil || len(got) != len(big) {
		t.Errorf("ReadFileUpTo = %d bytes, %v", len(got), err)
	}
	var large *TooLargeError
	if _, err := ReadFile(crl); !errors.As(err, &large) {
		t.Errorf("ReadFile of %d bytes: err = %v, want TooLargeError", len(big), err)
	}
}

// TestReadFileReadsWhatIsThere: the sized read returns a file's bytes
// exactly, empty or not, and refuses what is not a regular file.
func TestReadFileReadsWhatIsThere(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 1, 4096, 100000} {
		p := filepath.Join(dir, fmt.Sprint(size))
		want := strings.Repeat("x", size)
		os.WriteFile(p, []byte(want), 0o644)
		if got, err := ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%d bytes: read %d, %v", size, len(got), err)
		}
	}
	if _, err := ReadFile(dir); !strings.Contains(errText(err), "not a regular file") {
		t.Errorf("reading a directory: %v", err)
	}
}
