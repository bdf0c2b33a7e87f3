//go:build integration

package packaging

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/daemon"
	"github.com/certkeeper/certkeeper/test/cktest"
)

// The tests in this file's package change the machine (dpkg, the system
// user, /etc/nginx, /etc/apache2): they run as root only, as CI does in a
// throwaway container, never beside an installed certkeeper, and put back
// what they changed.
func needHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: installing the package and running it as its own user needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is not installed")
	}
	if out, err := exec.Command("dpkg", "-s", "certkeeper").CombinedOutput(); err == nil && strings.Contains(string(out), "Status: install ok installed") {
		t.Skip("a certkeeper package is already installed on this machine; not touching it")
	}
	if _, err := user.Lookup("certkeeper"); err == nil {
		t.Skip("a user certkeeper exists on this machine without the package; not touching it")
	}
}

// needTool returns the path of a program, or skips naming its package.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	t.Skipf("SKIPPED: %s is not installed (Debian package %q; .ci/run installs it)", name, pkg)
	return ""
}

func isExecutable(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode()&0o111 != 0
}

// installDeb installs the package and purges it when the test ends, with
// the checks a purge must pass.
func installDeb(t *testing.T, deb string) {
	t.Helper()
	t.Cleanup(func() { purge(t) })
	run(t, "dpkg", "-i", deb)
}

// purge removes the package (once; later calls find nothing to do) and
// checks that it leaves no user, state, sudoers file or binary behind.
func purge(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("dpkg", "-s", "certkeeper").CombinedOutput(); err != nil || !strings.Contains(string(out), "install ok") {
		return
	}
	if out, err := exec.Command("dpkg", "-P", "certkeeper").CombinedOutput(); err != nil {
		t.Errorf("dpkg -P certkeeper: %v\n%s", err, out)
		return
	}
	for _, p := range []string{"/usr/bin/certkeeper", "/var/lib/certkeeper", "/etc/sudoers.d/certkeeper", "/usr/share/doc/certkeeper", "/etc/certkeeper/certkeeper.hcl", "/lib/systemd/system/certkeeper.service"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after dpkg -P", p)
		}
	}
	if _, err := user.Lookup("certkeeper"); err == nil {
		t.Error("the user certkeeper is left after dpkg -P")
	}
}

// cleanRootEnv is a root shell's environment for the documented commands:
// no VAULT_* of the developer's, the usual sbin directories on PATH.
func cleanRootEnv(extra ...string) []string {
	var env []string
	for _, kv := range cktest.Env() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	return append(env, extra...)
}

// unit is a systemd unit file: each directive's values, by section.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not a directive", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// one is the single value of a [Service] directive.
func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	v := u["Service"][key]
	if len(v) != 1 {
		t.Fatalf("unit: %s has %d values, want 1", key, len(v))
	}
	return v[0]
}

// setprivArgs are the setpriv flags that give a command the unit's User=,
// Group=, the user's supplementary groups (systemd calls initgroups for
// User=) and its AmbientCapabilities=.
func (u unit) setprivArgs(t *testing.T) []string {
	t.Helper()
	args := []string{"--reuid=" + u.one(t, "User"), "--regid=" + u.one(t, "Group"), "--init-groups"}
	var caps []string
	for _, v := range u["Service"]["AmbientCapabilities"] {
		for _, c := range strings.Fields(v) {
			caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
	}
	if len(caps) > 0 {
		args = append(args, "--inh-caps", strings.Join(caps, ","), "--ambient-caps", strings.Join(caps, ","))
	}
	// What the unit must not set, reproduced should it come back, so the
	// run shows what it breaks.
	if v := u["Service"]["NoNewPrivileges"]; len(v) > 0 && v[len(v)-1] == "yes" {
		args = append(args, "--no-new-privs")
	}
	if v := u["Service"]["CapabilityBoundingSet"]; len(v) > 0 {
		bset := []string{"-all"}
		for _, c := range strings.Fields(v[len(v)-1]) {
			bset = append(bset, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
		args = append(args, "--bounding-set", strings.Join(bset, ","))
	}
	return args
}

// asUnit is argv run the way systemd runs the unit's commands: its
// UMask=, then setpriv to its user and capabilities.
func (u unit) asUnit(t *testing.T, argv string) []string {
	t.Helper()
	cmd := []string{"/bin/sh", "-c", `umask "$0" && exec "$@"`, u.one(t, "UMask"), "setpriv"}
	cmd = append(cmd, u.setprivArgs(t)...)
	return append(append(cmd, "--"), strings.Fields(argv)...)
}

// unitEnv is what systemd gives a User= service: a fixed PATH and the
// user's HOME, USER, LOGNAME and SHELL, and for Type=notify the socket
// and watchdog interval.
func (u unit) unitEnv(t *testing.T, notifySocket string) []string {
	t.Helper()
	usr, err := user.Lookup(u.one(t, "User"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + usr.HomeDir,
		"USER=" + usr.Username, "LOGNAME=" + usr.Username, "SHELL=/usr/sbin/nologin", "NOTIFY_SOCKET=" + notifySocket}
	if w := u["Service"]["WatchdogSec"]; len(w) == 1 {
		d, err := time.ParseDuration(strings.ReplaceAll(w[0], "min", "m"))
		if err != nil {
			t.Fatalf("WatchdogSec=%s: %v", w[0], err)
		}
		env = append(env, fmt.Sprintf("WATCHDOG_USEC=%d", d.Microseconds()))
	}
	return env
}

// notifySocket stands in for systemd's: it records each notification, and
// when READY=1 arrives, whether every output file of the config existed.
type notifySocket struct {
	path string
	conn *net.UnixConn

	mu       sync.Mutex
	messages []string
	readyAt  time.Time
	// missingAtReady lists the output files that did not exist when
	// READY=1 arrived.
	missingAtReady []string
}

func listenNotify(t *testing.T, dir, configPath string) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(dir, "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	// The daemon runs as its own user: it must be able to write to the
	// socket, as to systemd's.
	os.Chmod(n.path, 0o777)
	n.conn = conn
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			msg := string(buf[:k])
			n.mu.Lock()
			n.messages = append(n.messages, msg)
			if strings.Contains(msg, "READY=1") && n.readyAt.IsZero() {
				n.readyAt = time.Now()
				n.missingAtReady = missingOutputs(configPath)
			}
			n.mu.Unlock()
		}
	}()
	return n
}

// missingOutputs lists every file the config writes that is not on disk.
func missingOutputs(configPath string) []string {
	cfg, err := daemon.LoadConfig(configPath)
	if err != nil {
		return []string{"(config: " + err.Error() + ")"}
	}
	var paths []string
	for _, c := range cfg.Certificates {
		paths = append(paths, c.OutputPaths()...)
	}
	for _, tb := range cfg.TrustBundles {
		paths = append(paths, tb.CAFile, tb.CRLFile)
	}
	var missing []string
	for _, p := range paths {
		if _, err := os.Stat(p); p != "" && err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

func (n *notifySocket) waitFor(t *testing.T, msg string, d *cktest.Daemon, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n.mu.Lock()
		got := strings.Join(n.messages, "\n")
		n.mu.Unlock()
		if strings.Contains(got, msg) {
			return
		}
		select {
		case <-d.Done():
			t.Fatalf("certkeeper exited (%v) before sending %s", d.Err(), msg)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s from certkeeper within %v (got %q)", msg, timeout, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startUnit runs the unit's ExecStartPre and then its ExecStart exactly as
// systemd would run them, with a notify socket in dir.
func startUnit(t *testing.T, unitPath, dir string) (*cktest.Daemon, *notifySocket, unit) {
	t.Helper()
	u := parseUnit(t, unitPath)
	if got := u.one(t, "Type"); got != "notify" {
		t.Fatalf("unit Type=%s; this test speaks the notify protocol", got)
	}
	start := u.one(t, "ExecStart")
	configPath := configOf(t, start)
	n := listenNotify(t, dir, configPath)
	env := u.unitEnv(t, n.path)
	for _, pre := range u["Service"]["ExecStartPre"] {
		argv := u.asUnit(t, pre)
		cmd := osexec(argv, env)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ExecStartPre=%s as the unit runs it: %v\n%s", pre, err, out)
		}
	}
	argv := u.asUnit(t, start)
	d := cktest.Start(t, cktest.Options{Bin: argv[0], Args: argv[1:], Env: env})
	return d, n, u
}

// configOf is the -config argument of a unit command line.
func configOf(t *testing.T, cmdline string) string {
	t.Helper()
	f := strings.Fields(cmdline)
	for i := range f[:len(f)-1] {
		if f[i] == "-config" {
			return f[i+1]
		}
	}
	return config.DefaultPath
}

func osexec(argv, env []string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	return cmd
}

// procStatus reads the fields of /proc/<pid>/status the unit decides.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// ownedBy checks that every file under each root belongs to uid, and that
// keys are 0600.
func ownedBy(t *testing.T, uid int, roots ...string) {
	t.Helper()
	for _, root := range roots {
		filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil {
				t.Errorf("walking %s: %v", p, err)
				return nil
			}
			st := info.Sys().(*syscall.Stat_t)
			if int(st.Uid) != uid {
				t.Errorf("%s is owned by uid %d, want %d (certkeeper)", p, st.Uid, uid)
			}
			if strings.HasSuffix(p, ".key") && info.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %o, want 600", p, info.Mode().Perm())
			}
			return nil
		})
	}
}

func lookupUID(t *testing.T, name string) int {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uid
}
