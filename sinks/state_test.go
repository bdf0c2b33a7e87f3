package sinks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadStateTrustsOnlyItsOwn: state is read back only from a file the
// running user owns and nobody else may write, in a directory the same is
// true of; anything else is refused with whose it is (or its mode), and
// not a byte of it is returned.
func TestReadStateTrustsOnlyItsOwn(t *testing.T) {
	const nobody = 65534
	cases := []struct {
		name      string
		root      bool // needs root to set up
		fileMode  os.FileMode
		fileOwner int
		dirMode   os.FileMode
		dirOwner  int
		want      string // "" means read
	}{
		{"its own", false, 0o600, -1, 0o700, -1, ""},
		{"readable by others, still its own", false, 0o644, -1, 0o755, -1, ""},
		{"another user's record", true, 0o600, nobody, 0o700, -1, "it is owned by uid 65534"},
		{"writable by its group", false, 0o620, -1, 0o700, -1, "it is writable by group or others (mode 0620)"},
		{"writable by everyone", false, 0o666, -1, 0o700, -1, "it is writable by group or others (mode 0666)"},
		{"in another user's directory", true, 0o600, -1, 0o700, nobody, "is owned by uid 65534"},
		{"in a sticky directory others may write", false, 0o600, -1, 0o777 | os.ModeSticky, -1, "its directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.root && os.Geteuid() != 0 {
				t.Skip("needs root to give a file to another user")
			}
			state := filepath.Join(t.TempDir(), "state")
			os.Mkdir(state, 0o700)
			path := filepath.Join(state, "web.json")
			os.WriteFile(path, []byte(`{"secret":"kept"}`), 0o600)
			os.Chmod(path, c.fileMode)
			os.Chmod(state, c.dirMode)
			if c.fileOwner >= 0 {
				os.Chown(path, c.fileOwner, c.fileOwner)
			}
			if c.dirOwner >= 0 {
				os.Chown(state, c.dirOwner, c.dirOwner)
			}
			data, err := ReadState(path)
			if c.want == "" {
				if err != nil || string(data) != `{"secret":"kept"}` {
					t.Fatalf("ReadState = %q, %v", data, err)
				}
				return
			}
			var refused *UnsafePathError
			if !errors.As(err, &refused) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "refusing to read "+path) {
				t.Fatalf("err = %v, want a refusal of %s saying %q", err, path, c.want)
			}
			if data != nil {
				t.Errorf("refused, yet returned %q", data)
			}
		})
	}
}

// TestReadStateNamesTheUser: a refusal names the owner the way the user
// database does, and the user certkeeper runs as.
func TestReadStateNamesTheUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	state := t.TempDir()
	path := filepath.Join(state, "web.json")
	os.WriteFile(path, []byte("{}"), 0o600)
	os.Chown(path, 65534, 65534)
	_, err := ReadState(path)
	want := "it is owned by " + DescribeUID(65534) + ", not by uid 0 (root), who certkeeper runs as"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to say %q", err, want)
	}
	if DescribeUID(0) != "uid 0 (root)" || DescribeUID(4242424) != "uid 4242424" {
		t.Errorf("DescribeUID(0) = %q, DescribeUID(4242424) = %q", DescribeUID(0), DescribeUID(4242424))
	}
}
