//go:build integration

package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestAnsibleRole applies examples/ansible/roles/certkeeper to this machine
// (ansible-playbook -c local) with a dev Vault: it installs the .deb,
// writes the config and credentials, and runs `certkeeper once`, so the
// certificates are on disk when the play ends. A second run changes nothing.
func TestAnsibleRole(t *testing.T) {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		t.Skip("ansible-playbook is not installed (Debian package ansible)")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: the role installs a package and creates a user (CI runs as root)")
	}
	if out, err := exec.Command("dpkg", "-s", "certkeeper").CombinedOutput(); err == nil && strings.Contains(string(out), "Status: install ok installed") {
		t.Skip("a certkeeper package is already installed on this machine; not touching it")
	}
	deb := buildDeb(t)
	v := vaulttest.New(t, vaulttest.Options{})
	v.PKI(t)
	roleID, secretID := v.AppRole(t, vaulttest.AppRoleOptions{Name: "ansible-host"})
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "--purge", "certkeeper").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, out)
		}
	})

	// Output directories must be reachable by the unprivileged agent.
	work := t.TempDir()
	os.Chmod(work, 0o755)
	os.Chmod(filepath.Dir(work), 0o755) // t.TempDir's parent is 0700
	tls := filepath.Join(work, "tls")
	etc := filepath.Join(work, "etc")
	playbook := filepath.Join(work, "site.yml")
	os.WriteFile(playbook, []byte(fmt.Sprintf(`---
- hosts: localhost
  gather_facts: true
  roles:
    - role: certkeeper
      vars:
        certkeeper_deb: %q
        certkeeper_config_path: %q
        certkeeper_vault_address: %q
        certkeeper_role_id: %q
        certkeeper_secret_id: %q
        certkeeper_manage_service: false
        certkeeper_certificates:
          - name: web
            mount: pki_int
            role: ec
            common_name: web1.example.internal
            alt_names: [web1.example.internal, localhost]
            ttl: 24h
            cert_file: %q
            key_file: %q
            fullchain_file: %q
`, deb, filepath.Join(etc, "certkeeper.hcl"), v.Addr, roleID, secretID,
		filepath.Join(tls, "web.crt"), filepath.Join(tls, "web.key"), filepath.Join(tls, "web.fullchain.pem"))), 0o644)

	root := repoRoot(t)
	play := func() (changed int, output string) {
		t.Helper()
		cmd := exec.Command("ansible-playbook", "-c", "local", "-i", "localhost,", playbook)
		cmd.Env = append(os.Environ(), "ANSIBLE_ROLES_PATH="+filepath.Join(root, "examples", "ansible", "roles"),
			"ANSIBLE_NOCOLOR=1", "ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_LOCAL_TEMP="+filepath.Join(work, "ansible-tmp"),
			"HOME="+work)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ansible-playbook: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`localhost\s+:\s+ok=\d+\s+changed=(\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no PLAY RECAP in:\n%s", out)
		}
		fmt.Sscan(string(m[1]), &changed)
		return changed, string(out)
	}

	changed, out := play()
	if changed == 0 {
		t.Errorf("first run changed nothing:\n%s", out)
	}
	for _, f := range []string{"web.crt", "web.key", "web.fullchain.pem"} {
		info, err := os.Stat(filepath.Join(tls, f))
		if err != nil {
			t.Fatalf("%s not on disk after the play: %v", f, err)
		}
		if f == "web.key" && info.Mode().Perm() != 0o600 {
			t.Errorf("key mode %o", info.Mode().Perm())
		}
	}
	cmd := exec.Command("openssl", "verify", "-partial_chain", "-CAfile", filepath.Join(tls, "web.fullchain.pem"), filepath.Join(tls, "web.crt"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("openssl verify: %v %s", err, b)
	}
	for _, f := range []string{"role-id", "secret-id", "certkeeper.hcl"} {
		info, err := os.Stat(filepath.Join(etc, f))
		if err != nil || info.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, err %v; want 0640", f, info.Mode().Perm(), err)
		}
	}
	if strings.Contains(out, secretID) {
		t.Error("the play's output shows the secret_id")
	}

	before := v.CountCerts(t, "pki_int")
	changed, out = play()
	if changed != 0 {
		t.Errorf("second run changed %d tasks, want 0 (idempotence):\n%s", changed, out)
	}
	if after := v.CountCerts(t, "pki_int"); after != before {
		t.Errorf("second run issued %d certificates", after-before)
	}
}
