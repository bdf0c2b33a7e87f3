package outdirs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestMakeIgnoresUmask: under the unit's UMask=0077, missing directories
// still get 0755 (0750 with a group, and that group), every missing level
// is made and reported, and an existing directory is left alone.
func TestMakeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	base := t.TempDir()
	os.Chmod(base, 0o711)
	gid := os.Getgid()
	for i, tc := range []struct {
		gid  int
		mode os.FileMode
	}{{-1, 0o755}, {gid, 0o750}} {
		top := filepath.Join(base, fmt.Sprint("out", i))
		leaf := filepath.Join(top, "tls", "web")
		made, err := Parents(filepath.Join(leaf, "web.crt"), tc.gid)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{top, filepath.Join(top, "tls"), leaf}; !slices.Equal(made, want) {
			t.Errorf("made %v, want %v", made, want)
		}
		for _, d := range made {
			info, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != tc.mode {
				t.Errorf("%s: mode %v, want %v", d, info.Mode().Perm(), tc.mode)
			}
			if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() || (tc.gid >= 0 && int(st.Gid) != tc.gid) {
				t.Errorf("%s: owner %d:%d", d, st.Uid, st.Gid)
			}
		}
		if made, err := Parents(filepath.Join(leaf, "web.crt"), tc.gid); err != nil || len(made) != 0 {
			t.Errorf("second Make: %v, %v", made, err)
		}
	}
	info, _ := os.Stat(base)
	if info.Mode().Perm() != 0o711 {
		t.Errorf("the existing %s was changed to %v", base, info.Mode().Perm())
	}
}

// TestParentsRefusesWhatWritesRefuse: a missing directory is never made
// under a symlink or in a directory others may write to, the same rule
// the files' own write follows, so nothing is left where it leads.
func TestParentsRefusesWhatWritesRefuse(t *testing.T) {
	base := t.TempDir()
	open, elsewhere, link := filepath.Join(base, "open"), filepath.Join(base, "elsewhere"), filepath.Join(base, "link")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o777)
	os.Mkdir(elsewhere, 0o755)
	os.Symlink(elsewhere, link)
	for _, file := range []string{filepath.Join(open, "tls", "web.crt"), filepath.Join(link, "tls", "web.crt")} {
		made, err := Parents(file, -1)
		if err == nil || len(made) != 0 {
			t.Errorf("Parents(%s) = %v, %v; want a refusal and nothing made", file, made, err)
		}
	}
	for _, d := range []string{open, elsewhere} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Errorf("made in %s: %v", d, entries)
		}
	}
}
