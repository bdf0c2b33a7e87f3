//go:build integration

package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/daemon"
)

// The configs the package ships or documents for a host, whose output
// directories the unit must let certkeeper write and whose checks the
// sudoers drop-in must allow.
var shippedConfigs = []string{"packaging/certkeeper.hcl", "examples/nginx/certkeeper.hcl", "examples/apache/certkeeper.hcl"}

// TestUnitEveryLineSaysWhy: each directive of the shipped unit sits under
// a comment that says why it is there.
func TestUnitEveryLineSaysWhy(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "examples/systemd/certkeeper.service"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		if i == 0 || !strings.HasPrefix(lines[i-1], "#") {
			t.Errorf("line %d %q has no comment above it saying why", i+1, line)
		}
	}
}

// TestUnitLetsSudoRun: the checks run through sudo, which is setuid, so the
// unit must not set NoNewPrivileges, nor any option with which systemd
// before 255 implies it for a User= service (those that install a seccomp
// filter), nor bound capabilities below what the sudo'd checks need.
func TestUnitLetsSudoRun(t *testing.T) {
	u := parseUnit(t, filepath.Join(repoRoot(t), "examples/systemd/certkeeper.service"))
	for _, k := range []string{"NoNewPrivileges", "CapabilityBoundingSet", "SystemCallFilter", "SystemCallArchitectures",
		"RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "MemoryDenyWriteExecute",
		"LockPersonality", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectClock", "ProtectHostname", "DynamicUser"} {
		if v, ok := u["Service"][k]; ok {
			t.Errorf("the unit sets %s=%s: with User=, sudo could not run the server checks", k, strings.Join(v, " "))
		}
	}
	if got := u.one(t, "ProtectSystem"); got != "full" {
		t.Errorf("ProtectSystem=%s, want full: strict makes /run read-only, where nginx -t writes its pid file", got)
	}
	if got := u.one(t, "User"); got != "certkeeper" {
		t.Errorf("User=%s", got)
	}
	if got := u.one(t, "AmbientCapabilities"); got != "CAP_KILL" {
		t.Errorf("AmbientCapabilities=%s, want CAP_KILL alone", got)
	}
}

// TestUnitWritesWhereExamplesWrite: with ProtectSystem=full, /etc, /usr and
// /boot are read-only; every directory under them that a shipped config or
// example writes to must be in ReadWritePaths.
func TestUnitWritesWhereExamplesWrite(t *testing.T) {
	root := repoRoot(t)
	u := parseUnit(t, filepath.Join(root, "examples/systemd/certkeeper.service"))
	var writable []string
	for _, v := range u["Service"]["ReadWritePaths"] {
		for _, p := range strings.Fields(v) {
			writable = append(writable, strings.TrimPrefix(p, "-"))
		}
	}
	var dirs []string
	for _, f := range shippedConfigs {
		cfg, err := daemon.LoadConfig(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cfg.Certificates {
			for _, p := range c.OutputPaths() {
				dirs = append(dirs, filepath.Dir(p))
			}
		}
		for _, tb := range cfg.TrustBundles {
			dirs = append(dirs, filepath.Dir(tb.CAFile), filepath.Dir(tb.CRLFile))
		}
	}
	playbook, err := os.ReadFile(filepath.Join(root, "examples/ansible/playbook.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)_file:\s*(/\S+)`).FindAllStringSubmatch(string(playbook), -1) {
		dirs = append(dirs, filepath.Dir(m[1]))
	}
	if len(dirs) == 0 {
		t.Fatal("no output directories found: the test would prove nothing")
	}
	slices.Sort(dirs)
	dirs = slices.Compact(dirs)
	for _, d := range dirs {
		readOnly := false
		for _, ro := range []string{"/etc", "/usr", "/boot", "/efi"} {
			if d == ro || strings.HasPrefix(d, ro+"/") {
				readOnly = true
			}
		}
		covered := slices.ContainsFunc(writable, func(w string) bool { return d == w || strings.HasPrefix(d, w+"/") })
		if readOnly && !covered {
			t.Errorf("the examples write to %s, which ProtectSystem=full makes read-only and ReadWritePaths=%v does not open", d, writable)
		}
	}
}

// TestSudoersAllowsExactlyTheChecks: the drop-in is valid (visudo -cf),
// and every check the shipped configs run through sudo is one it allows,
// word for word, and it allows nothing else.
func TestSudoersAllowsExactlyTheChecks(t *testing.T) {
	root := repoRoot(t)
	path := filepath.Join(root, "packaging/sudoers")
	if _, err := exec.LookPath("visudo"); err == nil {
		if out, err := exec.Command("visudo", "-cf", path).CombinedOutput(); err != nil {
			t.Errorf("visudo -cf packaging/sudoers: %v\n%s", err, out)
		}
	} else {
		t.Log("visudo (Debian package sudo) is missing: the syntax is checked by TestFirstDay on the installed file")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			rules = append(rules, line)
		}
	}
	const prefix = "certkeeper ALL=(root) NOPASSWD: "
	if len(rules) != 1 || !strings.HasPrefix(rules[0], prefix) {
		t.Fatalf("sudoers rules %q: want one line for certkeeper, root only, commands with their arguments", rules)
	}
	allowed := strings.Split(strings.TrimPrefix(rules[0], prefix), ", ")
	slices.Sort(allowed)
	if want := []string{"/usr/sbin/apache2ctl -t", "/usr/sbin/nginx -t -q"}; !slices.Equal(allowed, want) {
		t.Errorf("sudoers allows %q, want exactly %q", allowed, want)
	}
	used := map[string]bool{}
	for _, f := range shippedConfigs {
		cfg, err := daemon.LoadConfig(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range cfg.Services {
			if len(s.Check) < 3 || s.Check[0] != "sudo" || s.Check[1] != "-n" {
				t.Errorf("%s: service %s checks with %q, not through sudo -n: as the unit's user it cannot", f, s.Name, s.Check)
				continue
			}
			cmd := strings.Join(s.Check[2:], " ")
			if !slices.Contains(allowed, cmd) {
				t.Errorf("%s: service %s runs sudo -n %s, which the drop-in does not allow", f, s.Name, cmd)
			}
			used[cmd] = true
		}
	}
	for _, a := range allowed {
		if !used[a] {
			t.Errorf("sudoers allows %s, which no shipped config runs", a)
		}
	}
}

// TestShippedConfigHeaderIsTheREADMEs: the first-run steps in the header
// of /etc/certkeeper/certkeeper.hcl are commands of the README's install
// section, which TestFirstDay runs, in the same order.
func TestShippedConfigHeaderIsTheREADMEs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging/certkeeper.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	// The header is the comment block the file starts with.
	header, _, _ := strings.Cut(string(data), "\n\n\n")
	if i := strings.Index(string(data), "\nstate_dir"); i > 0 && i < len(header) {
		header = string(data)[:i]
	}
	host := readmeBlock(t, "host")
	at := -1
	steps := 0
	for _, m := range regexp.MustCompile(`(?m)^#   ([a-z].*)$`).FindAllStringSubmatch(header, -1) {
		i := slices.Index(host, m[1])
		if i < 0 {
			t.Errorf("the shipped config's header says %q, which the README's install section (and so TestFirstDay) does not run", m[1])
			continue
		}
		if i < at {
			t.Errorf("the shipped config's header runs %q earlier than the README does", m[1])
		}
		at = i
		steps++
	}
	if steps < 3 {
		t.Errorf("found %d first-run steps in the shipped config's header", steps)
	}
}
