//go:build integration

// Package packaging tests the .deb a fleet installs: it builds it with
// `make package`, installs it with dpkg (or unpacks it with dpkg -x when
// this machine cannot install packages), and runs what it ships.
package packaging

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/certkeeper/certkeeper").Output()
	if err != nil {
		t.Fatalf("finding the module root: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func buildDeb(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed (Debian package dpkg): cannot inspect a .deb here")
	}
	root := repoRoot(t)
	run(t, "make", "-C", root, "package")
	debs, _ := filepath.Glob(filepath.Join(root, "dist", "certkeeper_*_amd64.deb"))
	if len(debs) == 0 {
		t.Fatal("make package produced no dist/certkeeper_*_amd64.deb")
	}
	newest := debs[0]
	for _, d := range debs[1:] {
		a, _ := os.Stat(d)
		b, _ := os.Stat(newest)
		if a.ModTime().After(b.ModTime()) {
			newest = d
		}
	}
	return newest
}

func TestDebContents(t *testing.T) {
	deb := buildDeb(t)
	listing := run(t, "dpkg-deb", "-c", deb)
	for _, want := range []string{"./usr/bin/certkeeper", "./lib/systemd/system/certkeeper.service", "./etc/certkeeper/certkeeper.hcl",
		"./usr/share/man/man1/certkeeper.1.gz", "./usr/share/doc/certkeeper/README.md",
		"./usr/share/doc/certkeeper/examples/nginx/mtls.conf", "./usr/share/doc/certkeeper/examples/nginx/certkeeper.hcl",
		"./usr/share/doc/certkeeper/examples/apache/mtls.conf", "./usr/share/doc/certkeeper/examples/apache/certkeeper.hcl",
		"./usr/share/doc/certkeeper/examples/vault/setup-pki.sh", "./usr/share/doc/certkeeper/examples/ansible/roles/certkeeper/tasks/main.yml"} {
		if !strings.Contains(listing, want) {
			t.Errorf("package lacks %s:\n%s", want, listing)
		}
	}
	// The sudoers drop-in: root's, 0440, or sudo ignores it.
	if !regexp.MustCompile(`(?m)^-r--r----- root/root .* \./etc/sudoers\.d/certkeeper$`).MatchString(listing) {
		t.Errorf("package lacks ./etc/sudoers.d/certkeeper as -r--r----- root/root:\n%s", listing)
	}
	if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Recommends")); got != "sudo" {
		t.Errorf("Recommends: %q, want sudo (the shipped checks go through it)", got)
	}
	if conffiles := run(t, "dpkg-deb", "-f", deb, "Package"); strings.TrimSpace(conffiles) != "certkeeper" {
		t.Errorf("package name %q", conffiles)
	}
	dir := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, dir)
	cf, err := os.ReadFile(filepath.Join(dir, "conffiles"))
	if err != nil || strings.TrimSpace(string(cf)) != "/etc/certkeeper/certkeeper.hcl\n/etc/sudoers.d/certkeeper" {
		t.Errorf("conffiles = %q, %v; the config and the sudoers drop-in must survive upgrades", cf, err)
	}
	// The binary is static: it runs on any glibc or none. Read from the
	// ELF headers themselves, so no tool (file(1)) can be missing: a
	// dynamic binary names an interpreter and the libraries it needs.
	x := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, x)
	if interp, libs := elfDynamic(t, filepath.Join(x, "usr/bin/certkeeper")); interp != "" || len(libs) > 0 {
		t.Errorf("binary is not static: interpreter %q, needs %v", interp, libs)
	}
	man := run(t, "sh", "-c", "gzip -dc "+filepath.Join(x, "usr/share/man/man1/certkeeper.1.gz"))
	for _, want := range []string{".SH CONFIGURATION", ".SH WHO RUNS WHAT", `\fBrenew_before = "DURATION"\fR`, "/etc/sudoers.d/certkeeper"} {
		if !strings.Contains(man, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	usage := run(t, filepath.Join(x, "usr/bin/certkeeper"), "help")
	for _, line := range strings.Split(strings.TrimSpace(usage), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.Contains(man, strings.ReplaceAll(line, `\`, `\e`)) {
			t.Errorf("man page lacks help line %q: it drifted from the command", line)
		}
	}
}

// TestDebInstall installs the package for real, runs the shipped binary on
// the shipped config, checks the unit with systemd-analyze, and purges it.
func TestDebInstall(t *testing.T) {
	deb := buildDeb(t)
	if os.Geteuid() != 0 {
		t.Skip("not root: dpkg -i needs root (CI runs as root); TestDebContents covers the unpacked package")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is not installed")
	}
	if out, err := exec.Command("dpkg", "-s", "certkeeper").CombinedOutput(); err == nil && strings.Contains(string(out), "Status: install ok installed") {
		t.Skip("a certkeeper package is already installed on this machine; not touching it")
	}
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "--purge", "certkeeper").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, out)
		}
		if _, err := os.Stat("/usr/bin/certkeeper"); err == nil {
			t.Error("/usr/bin/certkeeper left after purge")
		}
	})
	run(t, "dpkg", "-i", deb)
	if out := run(t, "/usr/bin/certkeeper", "version"); !strings.HasPrefix(out, "certkeeper ") {
		t.Errorf("version printed %q", out)
	}
	// The shipped config is valid but names credentials the operator
	// installs first (its header's first step): until they are there,
	// validate says which, at their lines, rather than ok. (A machine
	// that ran the first-day test may have them already.)
	out, err := exec.Command("/usr/bin/certkeeper", "validate").CombinedOutput()
	var missing []string
	for _, f := range []string{"role_id_file /etc/certkeeper/role-id", "secret_id_file /etc/certkeeper/secret-id"} {
		if _, err := os.Stat(strings.Fields(f)[1]); err != nil {
			missing = append(missing, f)
		}
	}
	switch {
	case len(missing) == 0 && (err != nil || !strings.Contains(string(out), "/etc/certkeeper/certkeeper.hcl: ok")):
		t.Errorf("validate on the shipped config, credentials in place: %v\n%s", err, out)
	case len(missing) > 0 && (err == nil || strings.Count(string(out), "does not exist") != len(missing)):
		t.Errorf("validate on the shipped config, without %v: %v\n%s", missing, err, out)
	}
	for _, f := range missing {
		if !regexp.MustCompile(`certkeeper\.hcl:\d+:\d+: ` + regexp.QuoteMeta(f) + ` does not exist`).Match(out) {
			t.Errorf("validate does not name %s at its line:\n%s", f, out)
		}
	}
	run(t, "id", "certkeeper") // the system user exists
	// What the documented first run needs before systemd ever started
	// the unit: certkeeper's own state and output directories.
	uid := lookupUID(t, "certkeeper")
	for dir, mode := range map[string]os.FileMode{"/var/lib/certkeeper": 0o700, "/etc/ssl/certkeeper": 0o755} {
		info, err := os.Stat(dir)
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid || info.Mode().Perm() != mode {
			t.Errorf("%s: uid %d mode %o, want certkeeper (%d) %o", dir, st.Uid, info.Mode().Perm(), uid, mode)
		}
	}
	if info, err := os.Stat("/etc/certkeeper/certkeeper.hcl"); err != nil || info.Mode().Perm() != 0o640 {
		t.Errorf("config mode: %v %v", info.Mode(), err)
	}
	t.Run("systemd-analyze verify", func(t *testing.T) {
		if _, err := exec.LookPath("systemd-analyze"); err != nil {
			t.Skip("systemd-analyze is not installed (Debian package systemd): the installed unit cannot be verified here")
		}
		out, _ := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/certkeeper.service").CombinedOutput()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			// Without man-db the Documentation= check cannot run; that
			// says nothing about the unit.
			if line != "" && !strings.Contains(line, "man certkeeper(1)") {
				t.Errorf("systemd-analyze verify: %s", line)
			}
		}
	})
}

// elfDynamic returns the program interpreter and the shared libraries an
// ELF binary needs; a static binary has neither.
func elfDynamic(t *testing.T, path string) (interp string, libs []string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("reading %s as ELF: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			p.ReadAt(b, 0)
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	libs, err = f.ImportedLibraries()
	if err != nil {
		t.Fatalf("reading %s's dynamic section: %v", path, err)
	}
	return interp, libs
}
