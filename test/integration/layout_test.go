//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// layoutConfig is two certificates, one named "services", and a service
// they notify, so a run writes records and the services' state.
func layoutConfig(e *env) string {
	return e.writeConfig(`
service "front" {
  reload = ["/bin/true"]
  settle = "10ms"
}
`, e.cert("web", vaulttest.RoleEC, `notify = ["front"]`), e.cert("services", vaulttest.RoleEC, `notify = ["front"]`))
}

// toFlatLayout moves a state_dir into the flat layout certkeeper kept up
// to 170922d: records and the services' state at the top (the services'
// state wins services.json, as the later writer there did).
func toFlatLayout(t *testing.T, state string) {
	t.Helper()
	for from, to := range map[string]string{
		"certs/web.json":       "web.json",
		"services/status.json": "services.json",
	} {
		if err := os.Rename(filepath.Join(state, from), filepath.Join(state, to)); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(state, "certs", "services.json")) // clobbered by the services' state
	for _, d := range []string{"certs", "services", "trust/bundles", "trust"} {
		if err := os.Remove(filepath.Join(state, d)); err != nil {
			t.Fatal(err)
		}
	}
}

func topOf(t *testing.T, state string) []string {
	t.Helper()
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestCertificateNamedServices: a certificate named "services" and the
// services' state each keep their own file, so a second run keeps the
// certificate (Vault not asked) and the service states are intact. In the
// flat layout both were state_dir/services.json.
func TestCertificateNamedServices(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := layoutConfig(e)
	if out, errOut, code := once(t, cfg); code != 0 {
		t.Fatalf("first once: %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code := once(t, cfg)
	if code != 0 || !strings.Contains(out, "services: ok serial=") || !strings.Contains(out, "web: ok serial=") {
		t.Fatalf("second once: exit %d, want both kept:\n%s\n%s", code, out, errOut)
	}
	if n := e.vault.CountCerts(t, vaulttest.IntMount); n != 2 {
		t.Errorf("Vault issued %d certificates, want 2", n)
	}
	state := filepath.Join(e.dir, "state")
	for _, p := range []string{"certs/services.json", "services/status.json"} {
		if _, err := os.Stat(filepath.Join(state, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if saved, _ := os.ReadFile(filepath.Join(state, "services", "status.json")); !strings.Contains(string(saved), `"name": "front"`) {
		t.Errorf("the services' state holds %s", saved)
	}
}

// TestOldLayoutMigrates: a state_dir an older certkeeper left in its flat
// layout is migrated by `once`, then by the daemon: the certificate whose
// record was there is kept (Vault not asked), the services' state moves,
// and nothing is left at the top but the per-kind directories. The one
// whose record the flat layout clobbered gets a new certificate.
func TestOldLayoutMigrates(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := layoutConfig(e)
	if out, errOut, code := once(t, cfg); code != 0 {
		t.Fatalf("first once: %d\n%s\n%s", code, out, errOut)
	}
	state := filepath.Join(e.dir, "state")
	toFlatLayout(t, state)
	issued := e.vault.CountCerts(t, vaulttest.IntMount)

	out, errOut, code := once(t, cfg)
	if code != 0 || !strings.Contains(out, "web: ok serial=") || !strings.Contains(errOut, `msg="moved state to its per-kind directories in state_dir"`) {
		t.Fatalf("once on the flat layout: exit %d, want web kept and the migration logged:\n%s\n%s", code, out, errOut)
	}
	if n := e.vault.CountCerts(t, vaulttest.IntMount) - issued; n != 1 || !strings.Contains(out, "services: issued") {
		t.Errorf("Vault issued %d certificates, want 1 (for services, whose record the flat layout lost):\n%s", n, out)
	}
	if got := topOf(t, state); !slices.Equal(got, []string{"ca", "certs", "rotations", "services", "superseded", "trust"}) {
		t.Errorf("state_dir holds %v after the migration", got)
	}
	if saved, _ := os.ReadFile(filepath.Join(state, "services", "status.json")); !strings.Contains(string(saved), `"name": "front"`) {
		t.Errorf("the services' state did not move: %s", saved)
	}

	// The daemon, from the flat layout again.
	toFlatLayout(t, state)
	issued = e.vault.CountCerts(t, vaulttest.IntMount)
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, 30*time.Second)
	if n := e.vault.CountCerts(t, vaulttest.IntMount) - issued; n != 1 {
		t.Errorf("the daemon got %d certificates from Vault, want 1 (services)", n)
	}
	if d.Count(`msg="moved state to its per-kind directories in state_dir"`) != 1 || d.Count(`certificate issued and written" cert=web`) != 0 {
		t.Errorf("the daemon did not migrate, or reissued web:\n%s", d.Logs.String())
	}
	d.Stop()
	if got := topOf(t, state); !slices.Equal(got, []string{"ca", "certs", "rotations", "services", "superseded", "trust"}) {
		t.Errorf("state_dir holds %v after the daemon", got)
	}
}
