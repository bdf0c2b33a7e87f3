package sidebyside

import "testing"

// TestRebase: the paths of a Vault Agent config land under the test's
// root once, whatever directory the root is in (t.TempDir follows
// TMPDIR, which may itself be under /var, /etc or /run).
func TestRebase(t *testing.T) {
	src := `ca_cert = "/etc/vault-agent/vault-ca.pem"
pid_file = "/run/vault-agent.pid"
destination = "/var/lib/app/tls.pem"
address = "https://vault.example.internal:8200/v1/"`
	for _, root := range []string{"/tmp/T/002", "/var/tmp/x/T/002", "/etc/x/002", "/run/user/0/T/002"} {
		want := `ca_cert = "` + root + `/etc/vault-agent/vault-ca.pem"
pid_file = "` + root + `/run/vault-agent.pid"
destination = "` + root + `/var/lib/app/tls.pem"
address = "https://vault.example.internal:8200/v1/"`
		if got := rebase(src, root); got != want {
			t.Errorf("root %s:\n%s\nwant\n%s", root, got, want)
		}
	}
}
