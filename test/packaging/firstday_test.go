//go:build integration

package packaging

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// readmeBlock returns the commands of the README's code block marked
// <!-- install:NAME -->, one per line, comments included.
func readmeBlock(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	marker := "<!-- install:" + name + " -->\n```sh\n"
	_, rest, ok := strings.Cut(string(data), marker)
	if !ok {
		t.Fatalf("README.md has no block %q: the install section and this test must say the same", marker)
	}
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatalf("README.md: block %s is not closed", name)
	}
	return strings.Split(block, "\n")
}

// The addresses the documented files use, which the test replaces with
// its own (its Vault, free loopback ports): the only changes it makes.
const (
	docVault     = "https://vault.example.internal:8200"
	docNginxAddr = "127.0.0.1:8443"
	docApache    = "127.0.0.1:8444"
)

// TestFirstDay walks the README's "Install on a fleet" on this machine, as
// a new operator would on a fresh Debian host: the Vault side with
// setup-pki.sh on a real Vault, `make package`, then on the host every
// command of the README, word for word, with Debian's own nginx and Apache
// in their packaged layouts (their /etc, pid files and users). Only
// addresses are changed, and where the README says systemctl, what the
// units run is run instead (no systemd in CI): certkeeper's ExecStart as
// its User= with its capabilities and a notify socket. It then checks that
// the caller gets in, that `certkeeper rotate` reaches both servers, that
// READY=1 came only once every file existed, that nothing is owned by the
// wrong user, and that dpkg -P cleans up. /etc/nginx, /etc/apache2 and
// their logs are put back afterwards.
func TestFirstDay(t *testing.T) {
	needHost(t)
	nginx := needTool(t, "nginx", "nginx")
	apachectl := needTool(t, "apachectl", "apache2")
	needTool(t, "a2enmod", "apache2")
	needTool(t, "sudo", "sudo")
	needTool(t, "visudo", "sudo")
	needTool(t, "setpriv", "util-linux")
	needTool(t, "curl", "curl")
	for _, pid := range []string{"/run/nginx.pid", "/var/run/apache2/apache2.pid"} {
		if alive(pid) {
			t.Skipf("%s names a live process: this machine runs its own server, which the test would take over", pid)
		}
	}
	started := time.Now()
	root := repoRoot(t)
	work := tempDir(t)
	keepMachine(t, work, "/etc/nginx", "/etc/apache2", "/var/log/nginx", "/var/log/apache2")
	if _, err := os.Stat("/etc/ssl/certkeeper"); err != nil {
		t.Cleanup(func() { os.RemoveAll("/etc/ssl/certkeeper") })
	}
	t.Cleanup(stopServers)

	// 1. The Vault side, as a Vault admin, in the source tree.
	v := vaulttest.New(t, vaulttest.Options{})
	vaultBin, err := vaulttest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	admin := filepath.Join(work, "admin")
	os.MkdirAll(filepath.Join(admin, "bin"), 0o755)
	os.Symlink(filepath.Join(root, "examples"), filepath.Join(admin, "examples"))
	os.Symlink(vaultBin, filepath.Join(admin, "bin", "vault"))
	adminEnv := append(cleanRootEnv("VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.RootToken, "HOME="+admin),
		"PATH="+filepath.Join(admin, "bin")+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	for _, line := range readmeBlock(t, "vault") {
		shell(t, admin, adminEnv, line)
	}

	// 2. The package, in the source tree.
	if got := readmeBlock(t, "build"); len(got) != 1 || got[0] != "make package" {
		t.Fatalf("README's build block is %q; this test runs `make package`", got)
	}
	deb := buildDeb(t)

	// 3. The host. The package, role-id and secret-id are copied there.
	host := filepath.Join(work, "host")
	os.MkdirAll(host, 0o755)
	for _, f := range []string{filepath.Join(admin, "role-id"), filepath.Join(admin, "secret-id"), deb} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(host, filepath.Base(f)), data, 0o600)
	}
	t.Cleanup(func() { purge(t) })
	// Test scaffolding, not an install step: this machine is shared, so
	// the servers keep off ports 80 and 443 (Debian's default site and
	// ports.conf); they listen only on the free ports below.
	os.Remove("/etc/nginx/sites-enabled/default")
	os.WriteFile("/etc/apache2/ports.conf", []byte("# emptied by certkeeper's TestFirstDay; restored after it\n"), 0o644)
	nginxAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	apacheAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	addresses := strings.NewReplacer(docVault, v.Addr, docNginxAddr, nginxAddr, docApache, apacheAddr)
	// root's own temporary directory, private as libpam-tmpdir makes it:
	// a root command that runs as certkeeper must not write there.
	rootTmp := filepath.Join(host, "root-tmp")
	if err := os.Mkdir(rootTmp, 0o700); err != nil {
		t.Fatal(err)
	}
	hostEnv := cleanRootEnv("HOME="+host, "TMPDIR="+rootTmp)

	var d *cktest.Daemon
	var notify *notifySocket
	var u unit
	// before holds what nginx and Apache served (EC, RSA) before rotate.
	var before [4]string
	for _, line := range readmeBlock(t, "host") {
		switch {
		case line == "# edit /etc/certkeeper/certkeeper.hcl: the Vault address (and ca_cert)":
			// The dev Vault is http on loopback: no ca_cert; the ports
			// of the two servers are the test's.
			rewrite(t, "/etc/certkeeper/certkeeper.hcl", addresses, docVault, docNginxAddr, docApache)
		case strings.HasPrefix(line, "#"):
			t.Fatalf("README's host block has a comment this test does not know: %q", line)
		case line == "systemctl enable --now certkeeper":
			d, notify, u = startUnit(t, "/lib/systemd/system/certkeeper.service", work)
			notify.waitFor(t, "READY=1", d, 2*time.Minute)
		case line == "systemctl restart nginx":
			// What Debian's nginx.service runs.
			shell(t, host, hostEnv, nginx+" -t -q -g 'daemon on; master_process on;'")
			shell(t, host, hostEnv, nginx+" -g 'daemon on; master_process on;'")
			waitListen(t, nginxAddr)
		case line == "systemctl restart apache2":
			// What Debian's apache2.service runs.
			shell(t, host, hostEnv, apachectl+" start")
			waitListen(t, apacheAddr)
		case strings.HasPrefix(line, "curl "):
			// The URL names the server by its certificate's name, and
			// --resolve points that at nginx: the port is the address.
			port := strings.NewReplacer(":"+strings.Split(docNginxAddr, ":")[1], ":"+strings.Split(nginxAddr, ":")[1])
			out := shell(t, host, hostEnv, port.Replace(line))
			if !strings.Contains(out, "hello CN=caller.example.internal") {
				t.Errorf("curl with the caller's certificate got %q", out)
			}
		case line == "certkeeper rotate":
			before = [4]string{served(t, nginxAddr, false), served(t, nginxAddr, true), served(t, apacheAddr, false), served(t, apacheAddr, true)}
			if out := shell(t, host, hostEnv, line); strings.Count(out, "rotation scheduled by the running daemon") != 3 {
				t.Errorf("rotate did not go through the daemon:\n%s", out)
			}
		default:
			out := shell(t, host, hostEnv, line)
			if strings.HasPrefix(line, "cp ") && strings.HasSuffix(line, "mtls.conf") {
				f := strings.Fields(line)
				rewrite(t, f[len(f)-1], addresses, map[bool]string{true: docNginxAddr, false: docApache}[strings.Contains(line, "nginx")])
			}
			// The release binary (no cgo) keeps CAP_KILL through the switch,
			// as the unit grants it.
			if line == "certkeeper once" && !regexp.MustCompile(`running as the owner of state_dir.* user=certkeeper .*cap_kill=true`).MatchString(out) {
				t.Errorf("root's `certkeeper once` did not switch to certkeeper keeping CAP_KILL:\n%s", out)
			}
		}
	}
	if d == nil || before[0] == "" {
		t.Fatal("README's host block lost `systemctl enable --now certkeeper` or `certkeeper rotate`")
	}
	uid := lookupUID(t, "certkeeper")

	t.Run("READY=1 only once every file existed", func(t *testing.T) {
		notify.mu.Lock()
		defer notify.mu.Unlock()
		if len(notify.missingAtReady) > 0 {
			t.Errorf("READY=1 arrived while these files did not exist: %v", notify.missingAtReady)
		}
	})

	t.Run("the daemon runs as the unit says", func(t *testing.T) {
		st := procStatus(t, d.Cmd.Process.Pid)
		if f := strings.Fields(st["Uid"]); len(f) == 0 || f[0] != strconv.Itoa(uid) {
			t.Errorf("daemon Uid %q, want certkeeper's %d", st["Uid"], uid)
		}
		if st["CapAmb"] != "0000000000000020" || st["CapEff"] != "0000000000000020" {
			t.Errorf("daemon capabilities: ambient %s effective %s, want CAP_KILL alone (0x20)", st["CapAmb"], st["CapEff"])
		}
		if st["NoNewPrivs"] != "0" {
			t.Error("the daemon has no_new_privs: sudo cannot run its checks")
		}
		if got := strings.Join(u.setprivArgs(t), " "); got != "--reuid=certkeeper --regid=certkeeper --init-groups --inh-caps +kill --ambient-caps +kill" {
			t.Errorf("the unit's user and capabilities came out as setpriv %s", got)
		}
	})

	t.Run("rotate reaches both servers", func(t *testing.T) {
		for i, c := range []struct {
			addr string
			rsa  bool
			file string
		}{
			{nginxAddr, false, "/etc/ssl/certkeeper/web.crt"}, {nginxAddr, true, "/etc/ssl/certkeeper/web-rsa.crt"},
			{apacheAddr, false, "/etc/ssl/certkeeper/web.crt"}, {apacheAddr, true, "/etc/ssl/certkeeper/web-rsa.crt"},
		} {
			var got string
			cktest.WaitFor(t, c.addr+" to serve the rotated certificate", 90*time.Second, func() bool {
				got = served(t, c.addr, c.rsa)
				return got != before[i] && got == fileSerial(t, c.file)
			})
		}
		if n := d.Count(`"msg":"check failed`); n > 0 {
			t.Errorf("the daemon logged %d failed checks:\n%s", n, d.Logs.String())
		}
	})

	t.Run("the caller gets in on both servers, with its rotated certificate", func(t *testing.T) {
		for _, addr := range []string{nginxAddr, apacheAddr} {
			resp, err := callerClient(t).Get("https://" + addr + "/")
			if err != nil {
				t.Errorf("%s: %v", addr, err)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s answered %s to the caller", addr, resp.Status)
			}
		}
	})

	t.Run("the certkeeper user's checks need sudo and get exactly it", func(t *testing.T) {
		out, err := exec.Command("setpriv", "--reuid=certkeeper", "--regid=certkeeper", "--init-groups", "/usr/sbin/nginx", "-t", "-q").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "/run/nginx.pid") {
			t.Errorf("nginx -t as certkeeper without sudo: %v %s; want the /run/nginx.pid failure sudo is there for", err, out)
		}
		for _, c := range []struct {
			argv []string
			ok   bool
		}{
			{[]string{"/usr/sbin/nginx", "-t", "-q"}, true},
			{[]string{"/usr/sbin/apache2ctl", "-t"}, true},
			{[]string{"/usr/sbin/nginx", "-t"}, false},
			{[]string{"/usr/sbin/nginx", "-s", "stop"}, false},
			{[]string{"/bin/sh", "-c", "id"}, false},
		} {
			argv := append([]string{"--reuid=certkeeper", "--regid=certkeeper", "--init-groups", "sudo", "-n"}, c.argv...)
			out, err := exec.Command("setpriv", argv...).CombinedOutput()
			if (err == nil) != c.ok {
				t.Errorf("sudo -n %s as certkeeper: %v %s (want allowed=%v)", strings.Join(c.argv, " "), err, out, c.ok)
			}
		}
		info, err := os.Stat("/etc/sudoers.d/certkeeper")
		if err != nil || info.Mode().Perm() != 0o440 || info.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("/etc/sudoers.d/certkeeper: %v %v", info.Mode(), err)
		}
		if out, err := exec.Command("visudo", "-cf", "/etc/sudoers.d/certkeeper").CombinedOutput(); err != nil {
			t.Errorf("visudo -cf: %v %s", err, out)
		}
	})

	t.Run("nothing is owned by the wrong user", func(t *testing.T) {
		ownedBy(t, uid, "/etc/ssl/certkeeper", "/var/lib/certkeeper")
		for _, f := range []string{"/etc/certkeeper/role-id", "/etc/certkeeper/secret-id", "/etc/certkeeper/certkeeper.hcl"} {
			info, err := os.Stat(f)
			if err != nil {
				t.Error(err)
				continue
			}
			if st := info.Sys().(*syscall.Stat_t); st.Uid != 0 || info.Mode().Perm() != 0o640 {
				t.Errorf("%s: uid %d mode %o, want root 0640", f, st.Uid, info.Mode().Perm())
			}
		}
		if info, err := os.Stat("/var/lib/certkeeper"); err != nil || info.Mode().Perm() != 0o700 {
			t.Errorf("/var/lib/certkeeper: %v %v, want 0700", info.Mode(), err)
		}
	})

	t.Run("SIGTERM: STOPPING=1 and exit 0", func(t *testing.T) {
		if code := d.Stop(); code != 0 {
			t.Errorf("certkeeper exited %d after SIGTERM", code)
		}
		notify.waitFor(t, "STOPPING=1", d, time.Second)
	})
	stopServers()
	purge(t)
	t.Logf("MEASURE TestFirstDay: the documented path took %s", time.Since(started).Round(time.Second))
}

// shell runs one documented command line as root in dir, failing the test
// when it fails, and returns its output.
func shell(t *testing.T, dir string, env []string, line string) string {
	t.Helper()
	cmd := exec.Command("/bin/bash", "-e", "-o", "pipefail", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	t.Logf("$ %s\n%s", line, out)
	return string(out)
}

// rewrite applies the address changes to a file, failing the test when
// one of the addresses the documented files use is not in it.
func rewrite(t *testing.T, path string, r *strings.Replacer, want ...string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !strings.Contains(string(data), w) {
			t.Fatalf("%s no longer contains %q, which the test replaces: update the test with the documented files", path, w)
		}
	}
	info, _ := os.Stat(path)
	if err := os.WriteFile(path, []byte(r.Replace(string(data))), info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// keepMachine copies each tree aside and puts it back, exactly, when the
// test ends.
func keepMachine(t *testing.T, work string, trees ...string) {
	t.Helper()
	saved := filepath.Join(work, "saved")
	for _, tree := range trees {
		if _, err := os.Stat(tree); err != nil {
			continue
		}
		dst := filepath.Join(saved, tree)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		run(t, "cp", "-a", tree, dst)
		t.Cleanup(func() {
			if err := os.RemoveAll(tree); err != nil {
				t.Errorf("restoring %s: %v", tree, err)
			}
			if out, err := exec.Command("cp", "-a", dst, tree).CombinedOutput(); err != nil {
				t.Errorf("restoring %s: %v %s", tree, err, out)
			}
		})
	}
}

// stopServers stops Debian's nginx and Apache the way their units do, if
// they run.
func stopServers() {
	if alive("/run/nginx.pid") {
		exec.Command("/usr/sbin/nginx", "-s", "quit").Run()
	}
	if alive("/var/run/apache2/apache2.pid") {
		exec.Command("apachectl", "stop").Run()
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, pid := range []string{"/run/nginx.pid", "/var/run/apache2/apache2.pid"} {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := pidIn(pid); n > 0 && alive(pid) {
			syscall.Kill(n, syscall.SIGKILL)
		}
	}
}

func pidIn(file string) int {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

func alive(pidFile string) bool {
	n := pidIn(pidFile)
	return n > 0 && syscall.Kill(n, 0) == nil
}

func tempDir(t *testing.T) string {
	t.Helper()
	// Under /tmp with 0755, so the certkeeper user can reach the notify
	// socket in it.
	dir, err := os.MkdirTemp("/tmp", "ck-pkg-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListen(t *testing.T, addr string) {
	t.Helper()
	cktest.WaitFor(t, addr+" to listen", 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// callerTLS is the caller's client certificate and the CA it verifies
// servers with, as certkeeper wrote them.
func callerTLS(t *testing.T) *tls.Config {
	t.Helper()
	// A set is renamed into place file by file: a reader between two
	// renames of a rotation sees a new key beside the old certificate, and
	// reads again, as an application reloading its pair would.
	var pair tls.Certificate
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pair, err = tls.LoadX509KeyPair("/etc/ssl/certkeeper/caller.fullchain.pem", "/etc/ssl/certkeeper/caller.key")
		if err == nil || !strings.Contains(err.Error(), "does not match") || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, err := os.ReadFile("/etc/ssl/certkeeper/caller.ca.pem")
	if err != nil || !roots.AppendCertsFromPEM(ca) {
		t.Fatalf("caller CA file: %v", err)
	}
	return &tls.Config{RootCAs: roots, ServerName: "web1.example.internal", Certificates: []tls.Certificate{pair}}
}

func callerClient(t *testing.T) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: callerTLS(t), DisableKeepAlives: true}}
}

// served is the serial of the EC (or RSA) certificate the server presents.
func served(t *testing.T, addr string, rsa bool) string {
	t.Helper()
	conf := callerTLS(t)
	conf.MaxVersion = tls.VersionTLS12
	conf.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	if rsa {
		conf.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		t.Logf("handshake with %s: %v", addr, err)
		return ""
	}
	defer c.Close()
	return pki.Serial(c.ConnectionState().PeerCertificates[0])
}

func fileSerial(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pki.Serial(cert)
}
