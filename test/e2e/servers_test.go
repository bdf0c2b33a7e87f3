//go:build integration

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
)

// webServer is nginx or Apache running one of the examples on a loopback
// port, with its config, pid file and logs in a temporary directory.
type webServer struct {
	service string // the service name in the example config
	example string // directory under examples/
	// exampleAddr is where the example listens; the test takes a free
	// port instead.
	exampleAddr string
	port        int
	dir         string
	conf        string // the main config file, written by the test
	errorLog    string
	pidFile     string
	tlsDir      string
	// mainConf is the main config with %s where a broken directive goes.
	mainConf string
	startCmd []string
	// reloadLine matches the line the server logs for each reload.
	reloadLine string
	// subs turn the example certkeeper.hcl into one for this server.
	subs [][2]string
	// rejected says whether a request was refused for its client
	// certificate, and how.
	rejected func(resp *http.Response, body string, err error) (bool, string)

	cmd  *exec.Cmd
	done chan struct{}
}

func (w *webServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", w.port) }
func (w *webServer) url() string  { return "https://" + w.addr() + "/" }

func newNginx(t *testing.T, s *stack) *webServer {
	bin := need(t, "nginx", "nginx")
	dir := filepath.Join(s.dir, "nginx")
	w := &webServer{
		service: "nginx", example: "nginx", exampleAddr: "127.0.0.1:8443", port: freePort(t), dir: dir,
		conf: filepath.Join(dir, "nginx.conf"), errorLog: filepath.Join(dir, "error.log"),
		pidFile: filepath.Join(dir, "nginx.pid"), tlsDir: filepath.Join(dir, "tls"),
		reloadLine: `signal 1 \(SIGHUP\) received`,
	}
	site := render(t, "nginx/mtls.conf", [][2]string{
		{w.exampleAddr, w.addr()},
		{"/etc/ssl/certkeeper", w.tlsDir},
	})
	writeFile(t, filepath.Join(dir, "mtls.conf"), site)
	// The main config is the test's: everything nginx writes goes to dir.
	w.mainConf = fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
daemon off;
worker_processes 2;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/mtls.conf;
    %%s
}
`, dir)
	w.startCmd = []string{bin, "-c", w.conf}
	// Root runs these tests against an nginx of their own: its check
	// needs no sudo, only this config.
	w.subs = [][2]string{
		{`"sudo", "-n", "/usr/sbin/nginx", "-t", "-q"`, fmt.Sprintf(`%q, "-t", "-q", "-c", %q`, bin, w.conf)},
		{"/run/nginx.pid", w.pidFile},
		{"/etc/ssl/certkeeper", w.tlsDir},
	}
	// nginx completes the handshake and refuses at the HTTP layer, with a
	// 400 page, when the client certificate is missing or does not verify.
	w.rejected = func(resp *http.Response, body string, err error) (bool, string) {
		if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "SSL certificate") {
			return false, ""
		}
		m := regexp.MustCompile(`<center>([^<]*SSL[^<]*)</center>`).FindStringSubmatch(body)
		if m == nil {
			return true, "HTTP 400"
		}
		return true, "HTTP 400: " + m[1]
	}
	w.writeConf(t, "")
	return w
}

func newApache(t *testing.T, s *stack) *webServer {
	bin := need(t, "apache2", "apache2")
	modules := "/usr/lib/apache2/modules"
	for _, m := range []string{"mod_mpm_event.so", "mod_ssl.so", "mod_authz_core.so", "mod_socache_shmcb.so", "mod_dir.so"} {
		if _, err := os.Stat(filepath.Join(modules, m)); err != nil {
			t.Skipf("SKIPPED: %s/%s is missing (Debian package \"apache2\")", modules, m)
		}
	}
	dir := filepath.Join(s.dir, "apache")
	w := &webServer{
		service: "apache2", example: "apache", exampleAddr: "127.0.0.1:8444", port: freePort(t), dir: dir,
		conf: filepath.Join(dir, "httpd.conf"), errorLog: filepath.Join(dir, "error.log"),
		pidFile: filepath.Join(dir, "apache2.pid"), tlsDir: filepath.Join(dir, "tls"),
		reloadLine: `SIGUSR1 received`,
	}
	docroot := filepath.Join(dir, "www")
	writeFile(t, filepath.Join(docroot, "index.html"), "hello from apache\n")
	for _, d := range []string{dir, docroot, filepath.Join(dir, "mutex"), filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
	}
	site := render(t, "apache/mtls.conf", [][2]string{
		{w.exampleAddr, w.addr()},
		{"/etc/ssl/certkeeper", w.tlsDir},
		{"/var/www/html", docroot},
	})
	writeFile(t, filepath.Join(dir, "mtls.conf"), site)
	// Apache refuses to run its children as root: as root, they run as
	// www-data, which can read the document root and the mutex directory
	// (the parent, still root, reads keys and certificates).
	userLines := ""
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("www-data"); err != nil {
			t.Skip("SKIPPED: running as root, Apache needs an unprivileged user for its children, and there is no www-data")
		}
		userLines = "User www-data\nGroup www-data\n"
	}
	w.mainConf = fmt.Sprintf(`ServerRoot %[1]s
PidFile %[1]s/apache2.pid
ErrorLog %[1]s/error.log
LogLevel notice
DefaultRuntimeDir %[1]s/run
Mutex file:%[1]s/mutex default
LoadModule mpm_event_module %[2]s/mod_mpm_event.so
LoadModule authz_core_module %[2]s/mod_authz_core.so
LoadModule socache_shmcb_module %[2]s/mod_socache_shmcb.so
LoadModule ssl_module %[2]s/mod_ssl.so
LoadModule dir_module %[2]s/mod_dir.so
%[3]sServerName localhost
SSLSessionCache shmcb:%[1]s/run/ssl_scache(512000)
Include %[1]s/mtls.conf
%%s
`, dir, modules, userLines)
	w.startCmd = []string{bin, "-f", w.conf, "-d", dir, "-DFOREGROUND"}
	w.subs = [][2]string{
		{`"sudo", "-n", "/usr/sbin/apache2ctl", "-t"`, fmt.Sprintf(`%q, "-t", "-f", %q, "-d", %q`, bin, w.conf, dir)},
		{"/var/run/apache2/apache2.pid", w.pidFile},
		{"/etc/ssl/certkeeper", w.tlsDir},
	}
	// Apache refuses in the TLS handshake itself.
	w.rejected = func(resp *http.Response, body string, err error) (bool, string) {
		if err == nil || !strings.Contains(err.Error(), "tls") {
			return false, ""
		}
		return true, err.Error()
	}
	w.writeConf(t, "")
	return w
}

// writeConf writes the main config, with extra (a broken directive, say)
// at the end of its body.
func (w *webServer) writeConf(t *testing.T, extra string) {
	t.Helper()
	writeFile(t, w.conf, fmt.Sprintf(w.mainConf, extra))
}

// breakConfig makes the server's config test fail.
func (w *webServer) breakConfig(t *testing.T) {
	if w.service == "nginx" {
		w.writeConf(t, "certkeeper_test_bogus_directive on;")
	} else {
		w.writeConf(t, "CertkeeperTestBogusDirective on")
	}
}

func (w *webServer) start(t *testing.T) {
	t.Helper()
	w.cmd = exec.Command(w.startCmd[0], w.startCmd[1:]...)
	out, err := os.Create(filepath.Join(w.dir, "server.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w.cmd.Stdout, w.cmd.Stderr = out, out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.done = make(chan struct{})
	go func() {
		w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(15 * time.Second):
			w.cmd.Process.Kill()
			<-w.done
		}
		if t.Failed() {
			log, _ := os.ReadFile(w.errorLog)
			t.Logf("%s error log:\n%s", w.service, tail(string(log), 40))
		}
	})
	cktest.WaitFor(t, w.service+" to listen on "+w.addr(), 30*time.Second, func() bool {
		select {
		case <-w.done:
			log, _ := os.ReadFile(filepath.Join(w.dir, "server.out"))
			t.Fatalf("%s exited at start: %s", w.service, log)
		default:
		}
		c, err := net.DialTimeout("tcp", w.addr(), time.Second)
		if err == nil {
			c.Close()
		}
		_, perr := os.Stat(w.pidFile)
		return err == nil && perr == nil
	})
}

// running says whether the server process is still alive.
func (w *webServer) running() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// reloads counts the reloads the server itself logged.
func (w *webServer) reloads(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(w.errorLog)
	if err != nil {
		t.Fatal(err)
	}
	return len(regexp.MustCompile(w.reloadLine).FindAllIndex(data, -1))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func readBody(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return string(b)
}
