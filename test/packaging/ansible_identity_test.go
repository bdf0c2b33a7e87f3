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
	"time"

	"github.com/certkeeper/certkeeper/test/cloudtest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestAnsibleRoleMachineIdentity applies examples/ansible/roles/certkeeper
// with a machine-identity login (auth "jwt" from a token file, the way a
// Kubernetes projected token or an OIDC agent leaves one) instead of an
// AppRole, against the roles setup-auth.sh makes: the play writes no
// secret at all (no role-id, no secret-id), the config it writes has the
// jwt block, and `certkeeper once` logs in with it and issues the
// certificate. A second run changes nothing.
func TestAnsibleRoleMachineIdentity(t *testing.T) {
	needHost(t)
	needTool(t, "ansible-playbook", "ansible")
	needTool(t, "setpriv", "util-linux")
	deb := buildDeb(t)
	v := vaulttest.New(t, vaulttest.Options{})
	work := tempDir(t)
	v.SetupScript(t, filepath.Join(work, "pki"))
	iss := cloudtest.NewIssuer(t)
	v.SetupAuthScript(t, filepath.Join(work, "pki"), "JWT_AUDIENCE=certkeeper", "JWT_JWKS_URL="+iss.JWKSURL, "JWT_ISSUER=https://issuer.example.internal")
	t.Cleanup(func() { purge(t) })

	// Not a secret of this test's making: a short-lived token, readable by
	// the certkeeper user the package creates.
	tokenFile := filepath.Join(work, "token.jwt")
	os.WriteFile(tokenFile, []byte(iss.Mint(map[string]any{"iss": "https://issuer.example.internal", "aud": "certkeeper", "sub": "web1"}, time.Hour)), 0o644)
	out := filepath.Join(work, "out")
	playbook := filepath.Join(work, "site.yml")
	os.WriteFile(playbook, []byte(fmt.Sprintf(`---
- hosts: localhost
  become: true
  roles:
    - role: certkeeper
      vars:
        certkeeper_deb: %q
        certkeeper_vault_address: %q
        certkeeper_manage_service: false
        certkeeper_vault_auth:
          - method: jwt
            role: %s
            token_file: %q
        certkeeper_certificates:
          - name: web
            mount: %s
            role: %s
            common_name: web1.example.internal
            ttl: 24h
            cert_file: %q
            key_file: %q
`, deb, v.Addr, vaulttest.ScriptAuthRole, tokenFile, vaulttest.ScriptServerMount, vaulttest.ScriptServerRole,
		filepath.Join(out, "web.crt"), filepath.Join(out, "web.key"))), 0o644)

	root := repoRoot(t)
	play := func() (int, string) {
		t.Helper()
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
		var changed int
		fmt.Sscan(string(m[1]), &changed)
		return changed, string(b)
	}
	// Another test's AppRole files may be left in /etc/certkeeper (dpkg -P
	// does not remove what the play wrote): what matters is that this
	// play writes none.
	before := map[string]time.Time{}
	for _, f := range []string{"/etc/certkeeper/role-id", "/etc/certkeeper/secret-id"} {
		if info, err := os.Stat(f); err == nil {
			before[f] = info.ModTime()
		}
	}
	changed, output := play()
	if changed == 0 {
		t.Errorf("first run changed nothing:\n%s", output)
	}
	if !regexp.MustCompile(`TASK \[certkeeper : Write the AppRole credentials\] \*+\s+skipping: \[localhost\]`).MatchString(output) {
		t.Errorf("the AppRole credentials task was not skipped:\n%s", output)
	}
	for _, f := range []string{"/etc/certkeeper/role-id", "/etc/certkeeper/secret-id"} {
		if info, err := os.Stat(f); err == nil && !info.ModTime().Equal(before[f]) {
			t.Errorf("%s was written for a machine-identity login", f)
		}
	}
	cfg, err := os.ReadFile("/etc/certkeeper/certkeeper.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `auth "jwt" {`) || strings.Contains(string(cfg), `auth "approle"`) {
		t.Errorf("the config's auth:\n%s", cfg)
	}
	if _, err := os.Stat(filepath.Join(out, "web.crt")); err != nil {
		t.Fatalf("once did not issue the certificate: %v\n%s", err, output)
	}
	if n := v.CountCerts(t, vaulttest.ScriptServerMount); n != 1 {
		t.Errorf("%d certificates issued, want 1", n)
	}
	if changed, output = play(); changed != 0 {
		t.Errorf("second run changed %d tasks, want 0:\n%s", changed, output)
	}
}
