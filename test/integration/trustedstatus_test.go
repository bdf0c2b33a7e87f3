//go:build integration

package integration

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// squatter serves HTTP on addr as the user nobody, answering every
// request with 200 "ready" (a /readyz or status that lies), until the
// test ends or stop is called.
func squatter(t *testing.T, addr string) (stop func()) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	script := fmt.Sprintf(`
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ready\n")
    def log_message(self, *a):
        pass
http.server.HTTPServer((%q, %s), H).serve_forever()
`, host, port)
	cmd := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
	}
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			stop()
		}
	})
	waitFor(t, "the squatter to listen", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return stop
}

// TestTelemetryPortSquatted: another user's process holds the telemetry
// port when the daemon starts. The daemon keeps its certificates, and the
// failed bind is not only a retried log line: `certkeeper status` (over
// the control socket, never the port) says whatever answers there is not
// certkeeper and exits 1, text and JSON; once the squatter is gone the
// daemon takes the port, /readyz is its own, and the failures counter
// tells the port was taken.
func TestTelemetryPortSquatted(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	addr := freeAddr(t)
	stop := squatter(t, addr)
	cfg := e.writeConfigWith(telemetryBlock(addr), e.cert("web", vaulttest.RoleEC))
	d := startDaemon(t, cfg)
	d.WaitLog(`ready: every certificate and trust bundle is in place`, 1, time.Minute)
	d.WaitLog(`telemetry endpoint cannot listen`, 1, 10*time.Second)

	out, errOut, code := ckRun(t, "status", "-config", cfg)
	if code != 1 || !strings.Contains(out, "TELEMETRY: telemetry endpoint cannot listen on "+addr) ||
		!strings.Contains(out, "address already in use") || !strings.Contains(out, "whatever answers there is not this certkeeper") {
		t.Errorf("status while the port is squatted: exit %d\n%s\n%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^web +web\.example\.internal +valid `).MatchString(out) {
		t.Errorf("status does not show the certificate as the daemon has it:\n%s", out)
	}
	out, _, code = ckRun(t, "status", "-config", cfg, "-json")
	if code != 1 || !regexp.MustCompile(`"listening": false,\s+"listen_failures": [1-9]`).MatchString(out) {
		t.Errorf("status -json while the port is squatted: exit %d\n%s", code, out)
	}

	stop()
	d.WaitLog(`telemetry endpoint listening`, 1, 45*time.Second)
	if code, body := httpGet(t, "http://"+addr+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	s := scrape(t, addr)
	if v := cktest.MustFind(t, s, "certkeeper_telemetry_listen_failures_total"); v < 1 {
		t.Errorf("certkeeper_telemetry_listen_failures_total = %v after a squatted start", v)
	}
	if out, errOut, code := ckRun(t, "status", "-config", cfg); code != 0 || strings.Contains(out, "TELEMETRY") {
		t.Errorf("status once the port is certkeeper's: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestStatusStripsEscapes: terminal escapes in a service check's output
// (which becomes the service's error) and in a Vault error (a role name
// Vault does not know, echoed back) reach `status` as visible text, never
// as escapes, in its table and its JSON alike.
func TestStatusStripsEscapes(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(`
service "web" {
  check  = ["/bin/sh", "-c", "printf 'syntax ok\\033[2J\\033[H\\033]0;owned\\007all good\\302\\233m'; exit 1"]
  reload = ["/bin/true"]
  settle = "100ms"
}
`, e.cert("web", vaulttest.RoleEC, `notify = ["web"]`),
		strings.Replace(e.cert("api", vaulttest.RoleEC), `role           = "`+vaulttest.RoleEC+`"`, `role = "nope\u001b[31m"`, 1))
	d := startDaemon(t, cfg)
	d.WaitLog(`check failed; rolled back`, 1, time.Minute)
	d.WaitLog(`renewal failed.*cert=api`, 1, time.Minute)

	visible := map[bool][]string{ // by -json: JSON doubles the backslashes
		false: {`syntax ok\x1b[2J\x1b[H\x1b]0;owned\x07all good\u009bm`, `nope\x1b[31m`},
		true:  {`syntax ok\\x1b[2J\\x1b[H\\x1b]0;owned\\x07all good\\u009bm`, `nope\\x1b[31m`},
	}
	for _, args := range [][]string{{"status", "-config", cfg}, {"status", "-config", cfg, "-json"}} {
		out, errOut, code := ckRun(t, args...)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1 (api missing, web's check failed)", args, code)
		}
		for _, c := range out + errOut {
			if (unicode.IsControl(c) && c != '\n') || c == '\u202e' {
				t.Errorf("%v prints %U:\n%q", args, c, out)
				break
			}
		}
		if strings.Contains(out, `\u001b`) {
			t.Errorf("%v prints an escaped ESC that a JSON reader turns back into one:\n%s", args, out)
		}
		for _, want := range visible[len(args) == 4] {
			if !strings.Contains(out, want) {
				t.Errorf("%v does not show %q visibly:\n%s", args, want, out)
			}
		}
	}
}
