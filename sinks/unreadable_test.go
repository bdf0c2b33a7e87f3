package sinks

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// unreadableDirEnv hands the child run of TestWriteReplacesUnreadable the
// directory its root parent prepared.
const unreadableDirEnv = "CERTKEEPER_SINKS_UNREADABLE_DIR"

// TestWriteReplacesUnreadable: a previous file the writer may not read
// (root's 0600 key, left before the state_dir owner took over) is replaced
// all the same, and a rollback then keeps the new set whole rather than
// mixing it with what it cannot restore. Root reads everything, so as root
// the test runs its body again as nobody, on files root made.
func TestWriteReplacesUnreadable(t *testing.T) {
	if dir := os.Getenv(unreadableDirEnv); dir != "" {
		replaceUnreadable(t, dir)
		return
	}
	if os.Geteuid() != 0 {
		dir := t.TempDir()
		for _, f := range set(dir, "KEY1", "CERT1") {
			if err := os.WriteFile(f.Path, f.Data, 0); err != nil {
				t.Fatal(err)
			}
		}
		replaceUnreadable(t, dir)
		return
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("running as root and there is no user nobody to run the test as: %v", err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("running as root and setpriv (util-linux) is missing: cannot run the test as another user")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	dir, err := os.MkdirTemp("", "sinks-unreadable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, f := range set(dir, "KEY1", "CERT1") {
		if err := os.WriteFile(f.Path, f.Data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The directory is nobody's, the files root's: nobody may replace
	// them but not read them.
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid="+nobody.Uid, "--regid="+nobody.Gid, "--clear-groups", "--",
		self, "-test.run=^TestWriteReplacesUnreadable$", "-test.v")
	cmd.Env = append(os.Environ(), unreadableDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestWriteReplacesUnreadable") {
		t.Fatalf("the test run as nobody failed: %v\n%s", err, out)
	}
}

func replaceUnreadable(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.ReadFile(filepath.Join(dir, "web.key")); err == nil {
		t.Fatal("the previous key is readable: the test would prove nothing")
	}
	journal := filepath.Join(dir, "j")
	change, err := WriteSet(journal, set(dir, "KEY2", "CERT2"))
	if err != nil {
		t.Fatalf("writing over unreadable files: %v", err)
	}
	if got := mustRead(t, filepath.Join(dir, "web.key")); got != "KEY2" {
		t.Fatalf("key holds %q after the write, want KEY2", got)
	}
	if err := (Sets{}).Rollback(change); err == nil || !strings.Contains(err.Error(), "could not be read") {
		t.Errorf("rollback over an unreadable previous file: %v, want an error saying why nothing was put back", err)
	}
	if k, c := mustRead(t, filepath.Join(dir, "web.key")), mustRead(t, filepath.Join(dir, "web.crt")); k != "KEY2" || c != "CERT2" {
		t.Errorf("after the refused rollback the set is %q/%q, want the new set whole", k, c)
	}
}
