package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/config"
)

// An output reaching an input or state_dir by another name is refused:
// through a symlinked directory, as a hard link of the input, or below a
// symlink to state_dir. role-id does not exist yet, so only the resolved
// directory can tell. overlaps resolves each directory once for all
// outputs; this guards that the shortcut still sees every spelling.
func TestOverlapsThroughLinks(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	state := filepath.Join(dir, "state")
	for _, d := range []string{creds, state} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(creds, "secret-id")
	if err := os.WriteFile(secret, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(creds, filepath.Join(dir, "creds-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(state, filepath.Join(dir, "state-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(secret, filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`state_dir = %q
vault {
  address = "http://127.0.0.1:8200"
  auth "approle" {
    role_id_file   = %q
    secret_id_file = %q
  }
}
certificate "symlinked" {
  mount       = "pki_int"
  role        = "web"
  common_name = "a.example.internal"
  cert_file   = %q
  key_file    = %q
}
certificate "hardlinked" {
  mount       = "pki_int"
  role        = "web"
  common_name = "b.example.internal"
  cert_file   = %q
  key_file    = %q
}
certificate "instate" {
  mount       = "pki_int"
  role        = "web"
  common_name = "c.example.internal"
  cert_file   = %q
  key_file    = %q
}
certificate "fine" {
  mount       = "pki_int"
  role        = "web"
  common_name = "d.example.internal"
  cert_file   = %q
  key_file    = %q
}
`, state, filepath.Join(creds, "role-id"), secret,
		filepath.Join(dir, "a.crt"), filepath.Join(dir, "creds-link", "role-id"),
		filepath.Join(dir, "b.crt"), filepath.Join(dir, "hard"),
		filepath.Join(dir, "c.crt"), filepath.Join(dir, "state-link", "c.key"),
		filepath.Join(dir, "d.crt"), filepath.Join(dir, "d.key"))
	_, err := config.Parse(filepath.Join(dir, "certkeeper.hcl"), []byte(src), config.Options{})
	if err == nil {
		t.Fatal("config accepted outputs that overwrite an input or land in state_dir")
	}
	msg := err.Error()
	for _, want := range []string{
		`certificate "symlinked" key_file ` + filepath.Join(dir, "creds-link", "role-id") + ` is the auth role_id_file`,
		`certificate "hardlinked" key_file ` + filepath.Join(dir, "hard") + ` is the auth secret_id_file`,
		`certificate "instate" key_file ` + filepath.Join(dir, "state-link", "c.key") + ` is inside state_dir`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 3 {
		t.Errorf("want exactly 3 problems, got %d:\n%s", n, msg)
	}
}
