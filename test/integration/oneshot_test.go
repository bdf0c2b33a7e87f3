//go:build integration

package integration

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// checkedService is a service "web" whose check fails while the file
// e.dir/break exists, and whose reload appends a line to e.dir/reloads.
func (e *env) checkedService() string {
	return fmt.Sprintf(`
service "web" {
  check  = ["/bin/sh", "-c", "if [ -e %[1]s/break ]; then echo 'config test failed' >&2; exit 1; fi"]
  reload = ["/bin/sh", "-c", "echo reloaded >> %[1]s/reloads"]
  settle = "100ms"
}
`, e.dir)
}

// reloads is how many times the checked service was reloaded.
func (e *env) reloads(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(e.path("reloads"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "reloaded\n")
}

// TestRolledBackIsNotIssued: when a service's check fails after `once`
// or `rotate` (without a daemon) wrote a new certificate, the files are
// rolled back, and the command says so and exits 1: it never claims the
// certificate was issued or rotated.
func TestRolledBackIsNotIssued(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.checkedService(), e.cert("web", vaulttest.RoleEC, `notify = ["web"]`))
	out, errOut, code := once(t, cfg)
	if code != 0 || !strings.Contains(out, "web: issued") || !strings.Contains(out, "service web: reloaded") {
		t.Fatalf("first once exited %d:\n%s\n%s", code, out, errOut)
	}
	first := cktest.ReadLeaf(t, e.path("web.crt"))
	if err := os.WriteFile(e.path("break"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rolledBack := regexp.MustCompile(`(?m)^web: FAILED: rolled back: service web failed its check: .*config test failed.*; serial=\S+ is not on disk, the files are those from before this run$`)

	out, errOut, code = ckRun(t, "rotate", "-config", cfg)
	if code != 1 || !rolledBack.MatchString(out) || strings.Contains(out, "rotated") {
		t.Errorf("rotate whose check failed: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := cktest.ReadLeaf(t, e.path("web.crt")); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("web.crt does not hold the certificate from before the rotation")
	}

	// A new SAN: once obtains a new certificate, the check fails.
	cfg = e.writeConfig(e.checkedService(), withSAN(e.cert("web", vaulttest.RoleEC, `notify = ["web"]`), "www.example.internal"))
	out, errOut, code = once(t, cfg)
	if code != 1 || !rolledBack.MatchString(out) || strings.Contains(out, "issued") {
		t.Errorf("once whose check failed: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "service web: FAILED (check_failed)") {
		t.Errorf("once does not report the service's failed check:\n%s", out)
	}
	if got := cktest.ReadLeaf(t, e.path("web.crt")); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("web.crt does not hold the certificate from before once")
	}
	if n := e.reloads(t); n != 1 {
		t.Errorf("%d reloads, want 1 (the first once; the failed checks reload nothing)", n)
	}
}

// withSAN is a certificate block from e.cert with one more DNS name.
func withSAN(block, name string) string {
	return strings.Replace(block, `"localhost"]`, fmt.Sprintf(`"localhost", %q]`, name), 1)
}
