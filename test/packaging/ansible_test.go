//go:build integration

package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestAnsibleRole applies examples/ansible/roles/certkeeper to this machine
// the way the README says to try it (ansible-playbook -c local -i
// localhost,), against the Vault that setup-pki.sh makes: it installs the
// .deb, writes the config and credentials, creates the directory of every
// kind of output file (each in its own, none existing before), and runs
// `certkeeper once` as root, which works as certkeeper. Then the packaged
// daemon runs as its unit would, and a second run of the play changes
// nothing and issues nothing.
func TestAnsibleRole(t *testing.T) {
	needHost(t)
	needTool(t, "ansible-playbook", "ansible")
	needTool(t, "setpriv", "util-linux")
	deb := buildDeb(t)
	v := vaulttest.New(t, vaulttest.Options{})
	work := tempDir(t)
	roleID, secretID := v.SetupScript(t, filepath.Join(work, "pki"))
	t.Cleanup(func() { purge(t) })

	out := filepath.Join(work, "out")
	file := map[string]string{
		"cert_file":      filepath.Join(out, "cert", "web.crt"),
		"key_file":       filepath.Join(out, "key", "web.key"),
		"chain_file":     filepath.Join(out, "chain", "web.chain.pem"),
		"fullchain_file": filepath.Join(out, "fullchain", "web.fullchain.pem"),
		"ca_file":        filepath.Join(out, "ca", "web.ca.pem"),
		"pkcs12_file":    filepath.Join(out, "pkcs12", "web.p12"),
		"template":       filepath.Join(out, "haproxy", "web.pem"),
		"bundle_ca":      filepath.Join(out, "bundle-ca", "clients-ca.pem"),
		"bundle_crl":     filepath.Join(out, "bundle-crl", "clients.crl.pem"),
	}
	playbook := filepath.Join(work, "site.yml")
	os.WriteFile(playbook, []byte(fmt.Sprintf(`---
- hosts: localhost
  become: true
  roles:
    - role: certkeeper
      vars:
        certkeeper_deb: %q
        certkeeper_vault_address: %q
        certkeeper_role_id: %q
        certkeeper_secret_id: %q
        certkeeper_manage_service: false
        certkeeper_certificates:
          - name: web
            mount: %s
            role: %s
            common_name: web1.example.internal
            alt_names: [web1.example.internal]
            ttl: 24h
            cert_file: %q
            key_file: %q
            chain_file: %q
            fullchain_file: %q
            ca_file: %q
            pkcs12_file: %q
            template:
              - stock: haproxy
                destination: %q
        certkeeper_trust_bundles:
          - name: clients
            mounts: [%s, %s]
            ca_file: %q
            crl_file: %q
`, deb, v.Addr, roleID, secretID, vaulttest.ScriptServerMount, vaulttest.ScriptServerRole,
		file["cert_file"], file["key_file"], file["chain_file"], file["fullchain_file"], file["ca_file"], file["pkcs12_file"],
		file["template"], vaulttest.ScriptClientMount, vaulttest.ScriptRootMount, file["bundle_ca"], file["bundle_crl"])), 0o644)

	root := repoRoot(t)
	play := func() (changed int, output string) {
		t.Helper()
		// The README's way to try the role on one machine.
		cmd := exec.Command("ansible-playbook", "-c", "local", "-i", "localhost,", "site.yml")
		cmd.Dir = work
		cmd.Env = append(cleanRootEnv("ANSIBLE_ROLES_PATH="+filepath.Join(root, "examples", "ansible", "roles"),
			"ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCAL_TEMP="+filepath.Join(work, "ansible-tmp")), "HOME="+work)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ansible-playbook: %v\n%s", err, b)
		}
		m := regexp.MustCompile(`localhost\s+:\s+ok=\d+\s+changed=(\d+)`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no PLAY RECAP in:\n%s", b)
		}
		fmt.Sscan(string(m[1]), &changed)
		return changed, string(b)
	}

	changed, output := play()
	if changed == 0 {
		t.Errorf("first run changed nothing:\n%s", output)
	}
	if strings.Contains(output, secretID) {
		t.Error("the play's output shows the secret_id")
	}
	uid := lookupUID(t, "certkeeper")
	for kind, f := range file {
		info, err := os.Stat(f)
		if err != nil {
			t.Errorf("%s: %v", kind, err)
			continue
		}
		if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			t.Errorf("%s %s is owned by uid %d, want certkeeper (%d)", kind, f, st.Uid, uid)
		}
		dir, _ := os.Stat(filepath.Dir(f))
		if st := dir.Sys().(*syscall.Stat_t); int(st.Uid) != uid || dir.Mode().Perm() != 0o755 {
			t.Errorf("%s's directory: uid %d mode %o, want certkeeper's, 0755 (made by the role)", kind, st.Uid, dir.Mode().Perm())
		}
	}
	// Everything under the output directories (out itself is made by
	// install -d as a missing parent, root's) and the state.
	kinds, _ := os.ReadDir(out)
	for _, k := range kinds {
		ownedBy(t, uid, filepath.Join(out, k.Name()))
	}
	ownedBy(t, uid, "/var/lib/certkeeper")
	for _, f := range []string{"role-id", "secret-id", "certkeeper.hcl"} {
		info, err := os.Stat(filepath.Join("/etc/certkeeper", f))
		if err != nil || info.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, err %v; want 0640", f, info.Mode().Perm(), err)
		}
	}

	// The daemon, as the packaged unit runs it, between the two runs.
	d, notify, _ := startUnit(t, "/lib/systemd/system/certkeeper.service", work)
	notify.waitFor(t, "READY=1", d, 2*time.Minute)
	issued := d.Count(`certificate issued`)
	servers, clients := v.CountCerts(t, vaulttest.ScriptServerMount), v.CountCerts(t, vaulttest.ScriptClientMount)

	changed, output = play()
	if changed != 0 {
		t.Errorf("second run, with the daemon running, changed %d tasks, want 0 (idempotence):\n%s", changed, output)
	}
	if a, b := v.CountCerts(t, vaulttest.ScriptServerMount), v.CountCerts(t, vaulttest.ScriptClientMount); a != servers || b != clients {
		t.Errorf("the second run issued %d certificates", a-servers+b-clients)
	}
	if n := d.Count(`certificate issued`); n != issued {
		t.Errorf("the daemon issued %d certificates during the second run", n-issued)
	}
	select {
	case <-d.Done():
		t.Fatalf("the daemon exited during the second run: %v", d.Err())
	default:
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("certkeeper exited %d after SIGTERM", code)
	}
}
