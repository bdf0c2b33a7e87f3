package services

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/internal/notice"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/test/cktest"
)

// renewed is what the agent says about a scheduled renewal of web.
var renewed = notice.Notice{Kind: notice.Certificate, Name: "web", Reason: notice.Renewal}

var fastBackoff = backoff.Backoff{Base: 100 * time.Millisecond, Max: 200 * time.Millisecond, Min: 50 * time.Millisecond}

// fixture is a directory with a certificate-like file set, a config whose
// services run small shell commands that record what they did, and a
// manager.
type fixture struct {
	t   *testing.T
	dir string
	cfg *config.Config
	m   *Manager
	obs *recorder
}

func newFixture(t *testing.T, services ...config.Service) *fixture {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{StateDir: filepath.Join(dir, "state"), Services: services}
	cfg.Certificates = []config.Certificate{{Name: "web", Files: config.Files{Cert: filepath.Join(dir, "web.crt"), Key: filepath.Join(dir, "web.key")}}}
	for _, s := range services {
		cfg.Certificates[0].Notify = append(cfg.Certificates[0].Notify, s.Name)
	}
	f := &fixture{t: t, dir: dir, cfg: cfg, obs: &recorder{}}
	f.m = New(Options{Config: cfg, Backoff: fastBackoff, Observer: f.obs, VerifyInterval: 20 * time.Millisecond})
	return f
}

// shell is a service whose check fails while <dir>/broken exists and whose
// reload appends a line to <dir>/<name>.reloads.
func shell(dir, name string) config.Service {
	return config.Service{
		Name:    name,
		Check:   []string{"sh", "-c", "echo checking " + name + " >> " + filepath.Join(dir, name+".checks") + "; test ! -e " + filepath.Join(dir, "broken")},
		Reload:  []string{"sh", "-c", "echo reload >> " + filepath.Join(dir, name+".reloads")},
		Timeout: 5 * time.Second,
		Settle:  150 * time.Millisecond,
	}
}

func (f *fixture) write(version string) *sinks.Change {
	f.t.Helper()
	c, err := sinks.WriteSet(filepath.Join(f.dir, "web.journal"), []sinks.File{
		{Path: filepath.Join(f.dir, "web.key"), Data: []byte("KEY" + version), Mode: 0o600, UID: -1, GID: -1},
		{Path: filepath.Join(f.dir, "web.crt"), Data: []byte("CERT" + version), Mode: 0o644, UID: -1, GID: -1},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) onDisk() string {
	f.t.Helper()
	k, _ := os.ReadFile(filepath.Join(f.dir, "web.key"))
	c, _ := os.ReadFile(filepath.Join(f.dir, "web.crt"))
	return string(k) + "/" + string(c)
}

func (f *fixture) lines(name string) int {
	data, _ := os.ReadFile(filepath.Join(f.dir, name))
	return strings.Count(string(data), "\n")
}

func (f *fixture) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.m.Run(ctx)
		close(done)
	}()
	f.t.Cleanup(func() {
		cancel()
		<-done
	})
}

func (f *fixture) status(name string) Status {
	for _, st := range f.m.Statuses() {
		if st.Name == name {
			return st
		}
	}
	f.t.Fatalf("no status for %s", name)
	return Status{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type recorder struct {
	mu      sync.Mutex
	results []string
	served  []bool
	reasons []string
	backlog []string
}

var _ Observer = (*recorder)(nil)

func (r *recorder) ServiceReloaded(service, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, service+":"+result)
}

func (r *recorder) ServedMatches(_ string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.served = append(r.served, ok)
}

func (r *recorder) ReloadReason(service, reason string, urgent bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, fmt.Sprintf("%s:%s:%v", service, reason, urgent))
}

func (r *recorder) Backlog(service string, changes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backlog = append(r.backlog, fmt.Sprintf("%s:%d", service, changes))
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.results)
}

// TestBatchReloadsOnce: changes from several sources within the settle
// window lead to one check and one reload.
func TestBatchReloadsOnce(t *testing.T) {
	f := newFixture(t, shell("", "nginx"))
	f.cfg.Services[0] = shell(f.dir, "nginx")
	// The changes come 20ms apart by the manager's clock, however slowly
	// a loaded machine runs this loop; then the clock is real again.
	var clk steppedClock
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Now: clk.now})
	f.run()
	start := time.Now()
	for i := range 5 {
		clk.set(start.Add(time.Duration(i) * 20 * time.Millisecond))
		f.m.Notify("certificate web", []string{"nginx"}, f.write(strconv.Itoa(i)))
		f.m.Notify("trust_bundle clients", []string{"nginx"}, f.write("x"+strconv.Itoa(i)))
	}
	clk.set(time.Time{})
	waitFor(t, "a reload", func() bool { return f.lines("nginx.reloads") >= 1 })
	time.Sleep(400 * time.Millisecond) // more than a settle window
	if n := f.lines("nginx.reloads"); n != 1 {
		t.Errorf("%d reloads for one batch of 10 changes, want 1", n)
	}
	if n := f.lines("nginx.checks"); n != 1 {
		t.Errorf("%d checks for one batch, want 1", n)
	}
	st := f.status("nginx")
	if st.State != StateOK || st.Reloads != 1 || st.Pending || st.LastReload.IsZero() {
		t.Errorf("status after the batch: %+v", st)
	}

	// A change after the batch is a new batch.
	f.m.Notify("certificate web", []string{"nginx"}, f.write("later"))
	waitFor(t, "a second reload", func() bool { return f.lines("nginx.reloads") == 2 })
}

// TestCheckFailureRollsBackAndRetries: a failing check puts the previous
// files back and reloads nothing; the new files are written again and
// checked with backoff, and once the check passes they are loaded. A
// change that arrives while the batch waits joins it.
func TestCheckFailureRollsBackAndRetries(t *testing.T) {
	f := newFixture(t)
	f.cfg.Services = []config.Service{shell(f.dir, "nginx")}
	f.cfg.Certificates[0].Notify = []string{"nginx"}
	f.obs = &recorder{}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Observer: f.obs})
	f.write("0")
	os.WriteFile(filepath.Join(f.dir, "broken"), nil, 0o644)
	f.run()

	f.m.Changed(f.cfg.Certificates[0], f.write("1"), renewed)
	waitFor(t, "the check to fail", func() bool { return f.status("nginx").State == StateCheckFailed })
	if got := f.onDisk(); got != "KEY0/CERT0" {
		t.Fatalf("after a failed check the files hold %s, want the previous set KEY0/CERT0", got)
	}
	if n := f.lines("nginx.reloads"); n != 0 {
		t.Fatalf("reloaded %d times although the check failed", n)
	}
	st := f.status("nginx")
	if !strings.Contains(st.LastError, "check failed") || st.NextAttempt.IsZero() || !st.Pending {
		t.Errorf("status does not report the failure and the retry: %+v", st)
	}
	// Each retry writes the new files again for its check, and rolls
	// them back when it fails.
	waitFor(t, "a retry", func() bool { return f.lines("nginx.checks") >= 3 })
	waitFor(t, "the files to be rolled back after the retry", func() bool { return f.onDisk() == "KEY0/CERT0" })

	// A newer set arrives while the batch waits: it is checked with it.
	f.m.Changed(f.cfg.Certificates[0], f.write("2"), renewed)
	waitFor(t, "the newer set to be rolled back too", func() bool { return f.onDisk() == "KEY0/CERT0" })

	os.Remove(filepath.Join(f.dir, "broken"))
	waitFor(t, "the reload after the fix", func() bool { return f.lines("nginx.reloads") == 1 })
	if got := f.onDisk(); got != "KEY2/CERT2" {
		t.Errorf("after the fix the files hold %s, want the newest set KEY2/CERT2", got)
	}
	waitFor(t, "status ok", func() bool { return f.status("nginx").State == StateOK })
	if st := f.status("nginx"); st.LastError != "" || st.Failures != 0 || st.Pending {
		t.Errorf("status after recovery: %+v", st)
	}
	results := f.obs.get()
	if !slices.Contains(results, "nginx:check_failed") || results[len(results)-1] != "nginx:ok" {
		t.Errorf("observer saw %v, want check failures then ok", results)
	}

	// `certkeeper status` reads what the manager saved, in a state
	// directory only certkeeper can read.
	waitFor(t, "the saved status", func() bool {
		saved, err := ReadStatus(f.cfg)
		return err == nil && len(saved) == 1 && saved[0].State == StateOK && saved[0].Reloads == 1
	})
	for path, mode := range map[string]os.FileMode{f.cfg.StateDir: 0o700, statedir.Dir(f.cfg.StateDir).Services(): 0o700, statedir.Dir(f.cfg.StateDir).ServicesState(): 0o600} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		if info.Mode().Perm() != mode || int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
			t.Errorf("%s: mode %o owner %d:%d, want %o owned by %d:%d", path, info.Mode().Perm(), st.Uid, st.Gid, mode, os.Geteuid(), os.Getegid())
		}
	}
}

// TestReloadFailureRetried: a reload that exits non-zero is retried with
// backoff and no file is rolled back.
func TestReloadFailureRetried(t *testing.T) {
	f := newFixture(t)
	svc := shell(f.dir, "apache")
	svc.Reload = []string{"sh", "-c", "test -e " + filepath.Join(f.dir, "ok") + " && echo >> " + filepath.Join(f.dir, "apache.reloads")}
	f.cfg.Services = []config.Service{svc}
	f.cfg.Certificates[0].Notify = []string{"apache"}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff})
	f.write("0")
	f.run()
	f.m.Changed(f.cfg.Certificates[0], f.write("1"), renewed)
	waitFor(t, "the reload to fail twice", func() bool { return f.status("apache").Failures >= 2 })
	st := f.status("apache")
	if st.State != StateReloadFailed || !strings.Contains(st.LastError, "reload failed") {
		t.Errorf("status = %+v", st)
	}
	if got := f.onDisk(); got != "KEY1/CERT1" {
		t.Errorf("a failed reload changed the files to %s", got)
	}
	if n := f.lines("apache.checks"); n != 1 {
		t.Errorf("the check ran %d times; a reload retry must not re-check", n)
	}
	os.WriteFile(filepath.Join(f.dir, "ok"), nil, 0o644)
	waitFor(t, "the reload to succeed", func() bool { return f.status("apache").State == StateOK })
	if n := f.lines("apache.reloads"); n != 1 {
		t.Errorf("%d successful reloads, want 1", n)
	}
}

// TestReloadTimeoutKillsProcessGroup: a hanging reload is killed with
// everything it started, reported, and the manager carries on.
func TestReloadTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	childPID := filepath.Join(dir, "child")
	argv := []string{"sh", "-c", "sleep 60 & echo $! > " + childPID + "; wait"}
	start := time.Now()
	err := runCommand(t.Context(), argv, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not finish within 300ms") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("runCommand returned after %v", d)
	}
	data, _ := os.ReadFile(childPID)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid == 0 {
		t.Fatal("the child never started")
	}
	waitFor(t, "the grandchild to die", func() bool { return !alive(pid) })
}

// alive treats a zombie as dead: killed, waiting only to be reaped.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// TestCommandOutputInError: a failing check's output reaches the error,
// so `nginx -t` can say what is wrong.
func TestCommandOutputInError(t *testing.T) {
	// printf assembles the message, so it is in the output and not in the
	// command line the error also quotes.
	err := runCommand(t.Context(), []string{"sh", "-c", "printf 'unknown directive \"%s\" in %s:12\\n' bogus /etc/nginx/nginx.conf >&2; exit 1"}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), `unknown directive "bogus" in /etc/nginx/nginx.conf:12`) || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("err = %v", err)
	}
}

// TestSignalReload: the pid is read from the file at each reload, so a
// restarted server (new pid) gets the next signal; no pid file means the
// server is not running, which is not a failure.
func TestSignalReload(t *testing.T) {
	f := newFixture(t)
	pidFile := filepath.Join(f.dir, "server.pid")
	f.cfg.Services = []config.Service{{Name: "apache", PIDFile: pidFile, Signal: syscall.SIGUSR1, SignalName: "USR1", Timeout: time.Second, Settle: 50 * time.Millisecond}}
	f.cfg.Certificates[0].Notify = []string{"apache"}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff})

	f.m.Changed(f.cfg.Certificates[0], f.write("0"), renewed)
	out := f.m.Flush(t.Context())
	if len(out) != 1 || out[0].Result != ResultNotRunning || out[0].Err != nil {
		t.Fatalf("flush without a running server: %+v", out)
	}

	first := trapper(t, f.dir, "first")
	os.WriteFile(pidFile, []byte(strconv.Itoa(first)+"\n"), 0o644)
	f.m.Changed(f.cfg.Certificates[0], f.write("1"), renewed)
	if out := f.m.Flush(t.Context()); len(out) != 1 || out[0].Err != nil || out[0].Result != ResultOK {
		t.Fatalf("flush: %+v", out)
	}
	waitFor(t, "the first server to get USR1", func() bool { return f.lines("first.signals") == 1 })

	second := trapper(t, f.dir, "second")
	os.WriteFile(pidFile, []byte(strconv.Itoa(second)), 0o644)
	f.m.Changed(f.cfg.Certificates[0], f.write("2"), renewed)
	f.m.Flush(t.Context())
	waitFor(t, "the second server to get USR1", func() bool { return f.lines("second.signals") == 1 })
	if n := f.lines("first.signals"); n != 1 {
		t.Errorf("the old pid got %d signals, want 1", n)
	}
}

// trapper starts a process that logs each USR1 to <dir>/<name>.signals.
func trapper(t *testing.T, dir, name string) int {
	t.Helper()
	ready := filepath.Join(dir, name+".ready")
	cmd := exec.Command("sh", "-c", `trap 'echo usr1 >> `+filepath.Join(dir, name+".signals")+`' USR1; touch `+ready+`; while :; do sleep 0.05; done`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitFor(t, name+" to install its trap", func() bool { _, err := os.Stat(ready); return err == nil })
	return cmd.Process.Pid
}

// TestPIDFileWithReloadCommand: with both, the command runs only while the
// pid file names a live process.
func TestPIDFileWithReloadCommand(t *testing.T) {
	f := newFixture(t)
	svc := shell(f.dir, "nginx")
	svc.PIDFile = filepath.Join(f.dir, "nginx.pid")
	f.cfg.Services = []config.Service{svc}
	f.cfg.Certificates[0].Notify = []string{"nginx"}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff})
	for i, stale := range []string{"999999999", "", "\n"} { // no such process; what `nginx -t` leaves
		os.WriteFile(svc.PIDFile, []byte(stale), 0o644)
		f.m.Changed(f.cfg.Certificates[0], f.write("1"+strconv.Itoa(i)), renewed)
		if out := f.m.Flush(t.Context()); out[0].Result != ResultNotRunning || out[0].Err != nil || f.lines("nginx.reloads") != 0 {
			t.Fatalf("pid file %q: %+v, %d reloads", stale, out, f.lines("nginx.reloads"))
		}
	}
	os.WriteFile(svc.PIDFile, []byte(strconv.Itoa(os.Getpid())), 0o644)
	f.m.Changed(f.cfg.Certificates[0], f.write("2"), renewed)
	if out := f.m.Flush(t.Context()); out[0].Result != ResultOK || f.lines("nginx.reloads") != 1 {
		t.Fatalf("live pid: %+v, %d reloads", out, f.lines("nginx.reloads"))
	}
	for i, bad := range []string{"-1", "1", "0"} { // a process group, init, ourselves
		os.WriteFile(svc.PIDFile, []byte(bad), 0o644)
		f.m.Changed(f.cfg.Certificates[0], f.write("3"+strconv.Itoa(i)), renewed)
		if out := f.m.Flush(t.Context()); out[0].Err == nil || !strings.Contains(out[0].Err.Error(), "not a process id") {
			t.Fatalf("pid %s must be refused, got %+v", bad, out)
		}
	}
}

// TestSharedSourceChecksEveryService: a certificate read by two services
// must pass both checks; when one fails, neither is reloaded and the
// files go back.
func TestSharedSourceChecksEveryService(t *testing.T) {
	f := newFixture(t)
	a, b := shell(f.dir, "a"), shell(f.dir, "b")
	b.Check = []string{"sh", "-c", "test ! -e " + filepath.Join(f.dir, "broken")}
	a.Check = nil
	f.cfg.Services = []config.Service{a, b}
	f.cfg.Certificates[0].Notify = []string{"a", "b"}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff})
	f.write("0")
	os.WriteFile(filepath.Join(f.dir, "broken"), nil, 0o644)
	f.m.Changed(f.cfg.Certificates[0], f.write("1"), renewed)
	out := f.m.Flush(t.Context())
	if len(out) != 1 || out[0].Service != "b" || out[0].Result != ResultCheckFailed {
		t.Fatalf("outcomes %+v, want b's check failure only", out)
	}
	if f.lines("a.reloads")+f.lines("b.reloads") != 0 || f.onDisk() != "KEY0/CERT0" {
		t.Errorf("a failed check in b still reloaded something (%d, %d) or left %s", f.lines("a.reloads"), f.lines("b.reloads"), f.onDisk())
	}
	os.Remove(filepath.Join(f.dir, "broken"))
	out = f.m.Flush(t.Context())
	if len(out) != 2 || out[0].Err != nil || out[1].Err != nil || f.onDisk() != "KEY1/CERT1" {
		t.Errorf("retry: %+v, files %s", out, f.onDisk())
	}
}

func TestComponents(t *testing.T) {
	cfg := &config.Config{
		Services: []config.Service{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}, {Name: "e"}},
		Certificates: []config.Certificate{
			{Name: "x", Notify: []string{"a", "c"}},
			{Name: "y", Notify: []string{"b"}},
			{Name: "z"},
		},
		TrustBundles: []config.TrustBundle{{Name: "t", Notify: []string{"d", "c"}}},
	}
	got := components(cfg)
	want := [][]string{{"a", "c", "d"}, {"b"}, {"e"}}
	if len(got) != len(want) {
		t.Fatalf("components = %v, want %v", got, want)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("components = %v, want %v", got, want)
		}
	}
}

// TestVerify: after a reload the served leaf must be the one on disk,
// even from a server that demands a client certificate; a server that
// keeps serving the old one is "written but not served" until it serves
// the new one.
func TestVerify(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			f := newFixture(t)
			oldCert, oldPEM := selfSigned(t)
			newCert, newPEM := selfSigned(t)
			srv := newTLSServer(t, version, oldCert)
			f.cfg.Services = []config.Service{{
				Name: "web", Reload: []string{"true"}, Timeout: time.Second, Settle: 50 * time.Millisecond,
				Verify: &config.Verify{Address: srv.addr, Timeout: 300 * time.Millisecond},
			}}
			f.cfg.Certificates[0].Notify = []string{"web"}
			logs := &cktest.SyncBuffer{}
			f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Observer: f.obs, VerifyInterval: 20 * time.Millisecond, Log: slog.New(slog.NewTextHandler(logs, nil))})
			write := func(data []byte) *sinks.Change {
				c, err := sinks.WriteSet(filepath.Join(f.dir, "j"), []sinks.File{{Path: f.cfg.Certificates[0].Files.Cert, Data: data, Mode: 0o644, UID: -1, GID: -1}})
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			f.m.Changed(f.cfg.Certificates[0], write(oldPEM), renewed)
			if out := f.m.Flush(t.Context()); out[0].Err != nil {
				t.Fatalf("server serves the file on disk, yet: %v", out[0].Err)
			}
			if st := f.status("web"); st.State != StateOK || st.Served != pki.Serial(oldCert.Leaf) {
				t.Errorf("status = %+v", st)
			}

			f.run()
			f.m.Changed(f.cfg.Certificates[0], write(newPEM), renewed)
			waitFor(t, "written but not served", func() bool { return f.status("web").State == StateNotServed })
			st := f.status("web")
			if !strings.Contains(st.LastError, "written but not served") || !strings.Contains(st.LastError, pki.Serial(newCert.Leaf)) || st.Served != pki.Serial(oldCert.Leaf) {
				t.Errorf("status = %+v", st)
			}
			srv.serve(newCert) // what a successful reload does
			waitFor(t, "served after a new reload", func() bool { return f.status("web").State == StateOK })
			if f.status("web").Served != pki.Serial(newCert.Leaf) {
				t.Errorf("status = %+v", f.status("web"))
			}
			// The log says which failure it was and what is served now.
			for _, want := range []string{`does not serve the certificate on disk \(written but not served\)`, `msg="service reloaded" .*served_serial=` + pki.Serial(newCert.Leaf)} {
				if !regexp.MustCompile(want).MatchString(logs.String()) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			f.obs.mu.Lock()
			defer f.obs.mu.Unlock()
			if !slices.Contains(f.obs.served, false) || !f.obs.served[len(f.obs.served)-1] {
				t.Errorf("observer saw %v, want a mismatch then a match", f.obs.served)
			}
		})
	}
}

// TestVerifyAcceptsWhatWasLoaded: a certificate written while a reload is
// being verified belongs to the next batch; the server serving the one it
// was reloaded with is not "written but not served".
func TestVerifyAcceptsWhatWasLoaded(t *testing.T) {
	f := newFixture(t)
	loadedCert, loadedPEM := selfSigned(t)
	_, newerPEM := selfSigned(t)
	srv := newTLSServer(t, tls.VersionTLS13, loadedCert)
	newer := filepath.Join(f.dir, "newer.pem")
	os.WriteFile(newer, newerPEM, 0o644)
	cert := f.cfg.Certificates[0].Files.Cert
	f.cfg.Services = []config.Service{{
		Name: "web", Reload: []string{"cp", newer, cert}, Timeout: time.Second, Settle: 10 * time.Millisecond,
		Verify: &config.Verify{Address: srv.addr, Timeout: 300 * time.Millisecond},
	}}
	f.cfg.Certificates[0].Notify = []string{"web"}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, VerifyInterval: 20 * time.Millisecond})
	c, err := sinks.WriteSet(filepath.Join(f.dir, "j"), []sinks.File{{Path: cert, Data: loadedPEM, Mode: 0o644, UID: -1, GID: -1}})
	if err != nil {
		t.Fatal(err)
	}
	f.m.Changed(f.cfg.Certificates[0], c, renewed)
	if out := f.m.Flush(t.Context()); out[0].Err != nil {
		t.Errorf("a newer file written during verify failed the verify: %v", out[0].Err)
	}
}

// TestReconcileReloadsStaleServer: at start, a server serving another
// certificate than the one on disk is checked and reloaded until it serves
// the one on disk.
func TestReconcileReloadsStaleServer(t *testing.T) {
	f := newFixture(t)
	oldCert, _ := selfSigned(t)
	newCert, newPEM := selfSigned(t)
	srv := newTLSServer(t, tls.VersionTLS13, oldCert)
	svc := shell(f.dir, "web")
	svc.Verify = &config.Verify{Address: srv.addr, Timeout: 200 * time.Millisecond}
	f.cfg.Services = []config.Service{svc}
	f.cfg.Certificates[0].Notify = []string{"web"}
	os.WriteFile(f.cfg.Certificates[0].Files.Cert, newPEM, 0o644)
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, VerifyInterval: 20 * time.Millisecond})
	f.run()
	f.m.Reconcile(t.Context())
	waitFor(t, "a checked reload", func() bool { return f.lines("web.reloads") >= 1 && f.lines("web.checks") == 1 })
	srv.serve(newCert)
	waitFor(t, "the server to be seen serving the file on disk", func() bool { return f.status("web").State == StateOK })

	// A server that serves what is on disk is left alone.
	before := f.lines("web.reloads")
	f.m.Reconcile(t.Context())
	time.Sleep(300 * time.Millisecond)
	if n := f.lines("web.reloads"); n != before {
		t.Errorf("reconcile reloaded a server that serves the right certificate (%d reloads, was %d)", n, before)
	}
}

type tlsServer struct {
	addr string
	mu   sync.Mutex
	cert *tls.Certificate
}

func (s *tlsServer) serve(c *tls.Certificate) {
	s.mu.Lock()
	s.cert = c
	s.mu.Unlock()
}

// newTLSServer serves cert and, like nginx with ssl_verify_client on,
// requires a client certificate.
func newTLSServer(t *testing.T, version uint16, cert *tls.Certificate) *tlsServer {
	t.Helper()
	s := &tlsServer{cert: cert}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion: version, MaxVersion: version,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.cert, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s.addr = l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return s
}

func selfSigned(t *testing.T) (*tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "web.example.internal"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pki.EncodeCerts(leaf)
}

// TestChangesDuringACheck: a change that arrives while a batch's check is
// running is not part of that batch (the check never saw its files), and
// it is never lost: when the check fails it is rolled back and retried
// with the batch; when the check passes it gets a check and a reload of
// its own.
func TestChangesDuringACheck(t *testing.T) {
	// blocking is a check that says it started, then waits for <dir>/release
	// before failing while <dir>/broken exists.
	blocking := func(dir string) config.Service {
		svc := shell(dir, "nginx")
		svc.Check = []string{"sh", "-c", "echo >> " + filepath.Join(dir, "nginx.checks") + "; touch " + filepath.Join(dir, "checking") +
			"; while [ ! -e " + filepath.Join(dir, "release") + " ]; do sleep 0.01; done; test ! -e " + filepath.Join(dir, "broken")}
		return svc
	}
	start := func(f *fixture, bo backoff.Backoff, log *slog.Logger) (stop func()) {
		f.cfg.Services = []config.Service{blocking(f.dir)}
		f.cfg.Certificates[0].Notify = []string{"nginx"}
		f.m = New(Options{Config: f.cfg, Backoff: bo, Log: log})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			f.m.Run(ctx)
			close(done)
		}()
		stop = func() { cancel(); <-done }
		f.t.Cleanup(stop)
		return stop
	}
	arriveDuringCheck := func(f *fixture) {
		f.m.Changed(f.cfg.Certificates[0], f.write("1"), renewed)
		waitFor(f.t, "the check to start", func() bool { _, err := os.Stat(filepath.Join(f.dir, "checking")); return err == nil })
		f.m.Changed(f.cfg.Certificates[0], f.write("2"), renewed)
		os.WriteFile(filepath.Join(f.dir, "release"), nil, 0o644)
	}

	t.Run("check fails", func(t *testing.T) {
		f := newFixture(t)
		f.write("0")
		os.WriteFile(filepath.Join(f.dir, "broken"), nil, 0o644)
		// No retry by itself during the test: Flush does it below.
		stop := start(f, backoff.Backoff{Base: time.Hour, Max: time.Hour, Min: time.Hour}, nil)
		arriveDuringCheck(f)
		waitFor(t, "the check to fail", func() bool { return f.status("nginx").State == StateCheckFailed })
		if got := f.onDisk(); got != "KEY0/CERT0" {
			t.Errorf("after the failed check the files hold %s; the change that arrived during it was not rolled back with the batch (want KEY0/CERT0)", got)
		}
		if st := f.status("nginx"); !st.Pending || st.Failures != 1 || strings.Contains(st.LastError, "rolling back failed") {
			t.Errorf("status after one failed check whose rollback worked: %+v", st)
		}
		os.Remove(filepath.Join(f.dir, "broken"))
		stop()
		out := f.m.Flush(t.Context())
		if len(out) != 1 || out[0].Result != ResultOK {
			t.Fatalf("flush after the fix: %+v", out)
		}
		if got := f.onDisk(); got != "KEY2/CERT2" {
			t.Errorf("after the fix the files hold %s, want the newest set KEY2/CERT2: the change that arrived during the check was lost", got)
		}
		if n := f.lines("nginx.reloads"); n != 1 {
			t.Errorf("%d reloads, want 1", n)
		}
	})

	t.Run("check passes", func(t *testing.T) {
		f := newFixture(t)
		f.write("0")
		logs := &cktest.SyncBuffer{}
		start(f, fastBackoff, slog.New(slog.NewTextHandler(logs, nil)))
		arriveDuringCheck(f)
		waitFor(t, "a second checked reload for the change that arrived during the first check", func() bool {
			return f.lines("nginx.reloads") == 2 && f.lines("nginx.checks") == 2
		})
		time.Sleep(400 * time.Millisecond) // more than a settle window
		if r, c := f.lines("nginx.reloads"), f.lines("nginx.checks"); r != 2 || c != 2 {
			t.Errorf("%d reloads and %d checks, want 2 of each", r, c)
		}
		if got := f.onDisk(); got != "KEY2/CERT2" {
			t.Errorf("files hold %s, want KEY2/CERT2", got)
		}
		if st := f.status("nginx"); st.State != StateOK || st.Pending {
			t.Errorf("status after both batches: %+v", st)
		}
		// Nothing was rolled back, so nothing is "written again", and
		// the state file was saved.
		for _, wrong := range []string{"wrote the rolled-back files again", "cannot save service states"} {
			if strings.Contains(logs.String(), wrong) {
				t.Errorf("logs say %q:\n%s", wrong, logs)
			}
		}
	})
}

// TestFlushRetriesAFailedReload: Flush (one-shot commands, shutdown)
// reloads a service whose reload failed earlier even with no change
// waiting, and tries a failing reload flushReloadAttempts times, no more.
func TestFlushRetriesAFailedReload(t *testing.T) {
	f := newFixture(t)
	svc := shell(f.dir, "apache")
	svc.Check = nil
	attempts := filepath.Join(f.dir, "attempts")
	svc.Reload = []string{"sh", "-c", "echo >> " + attempts + "; test -e " + filepath.Join(f.dir, "ok")}
	f.cfg.Services = []config.Service{svc}
	f.cfg.Certificates[0].Notify = []string{"apache"}
	f.m = New(Options{Config: f.cfg, Backoff: backoff.Backoff{Base: time.Hour, Max: time.Hour, Min: time.Hour}})
	f.m.Changed(f.cfg.Certificates[0], f.write("1"), renewed)
	out := f.m.Flush(t.Context())
	if len(out) != 1 || out[0].Result != ResultReloadFailed {
		t.Fatalf("flush with a failing reload: %+v", out)
	}
	if n := f.lines("attempts"); n != flushReloadAttempts {
		t.Errorf("flush tried the reload %d times, want %d", n, flushReloadAttempts)
	}
	// Nothing new is written; the reload is still owed.
	os.WriteFile(filepath.Join(f.dir, "ok"), nil, 0o644)
	out = f.m.Flush(t.Context())
	if len(out) != 1 || out[0].Result != ResultOK || out[0].Err != nil {
		t.Fatalf("flush owing a reload: %+v", out)
	}
	if out := f.m.Flush(t.Context()); len(out) != 0 {
		t.Errorf("a flush with nothing owed did %+v", out)
	}
}

// TestManagerDefaults: zero options mean the documented defaults, and the
// n-th consecutive failure waits the backoff of attempt n-1.
func TestManagerDefaults(t *testing.T) {
	m := New(Options{Config: &config.Config{}})
	if m.interval != 200*time.Millisecond || m.backoff != backoff.Default || m.rand == nil || m.log == nil || m.now == nil || m.files != FileSets(sinks.Sets{}) {
		t.Errorf("defaults: interval %v, backoff %+v, files %T", m.interval, m.backoff, m.files)
	}
	if m := New(Options{Config: &config.Config{}, VerifyInterval: 20 * time.Millisecond}); m.interval != 20*time.Millisecond {
		t.Errorf("VerifyInterval 20ms became %v", m.interval)
	}
	b := backoff.Backoff{Base: time.Second, Max: time.Minute}
	m = New(Options{Config: &config.Config{}, Backoff: b, Rand: func() float64 { return 0.5 }})
	for failures, want := range map[int]time.Duration{1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second} {
		if got := m.retryDelay(failures); got != want {
			t.Errorf("after %d failures: wait %v, want %v", failures, got, want)
		}
	}
}

// TestVerifyWaitsForTheReload: a server that takes a moment after its
// reload to serve the new certificate (nginx's old workers finish first)
// is retried until the verify timeout, not reported as not serving it.
func TestVerifyWaitsForTheReload(t *testing.T) {
	f := newFixture(t)
	oldCert, oldPEM := selfSigned(t)
	newCert, newPEM := selfSigned(t)
	srv := newTLSServer(t, tls.VersionTLS13, oldCert)
	reloaded := filepath.Join(f.dir, "reloaded")
	f.cfg.Services = []config.Service{{
		Name: "web", Reload: []string{"sh", "-c", "echo >> " + reloaded}, Timeout: time.Second, Settle: 10 * time.Millisecond,
		Verify: &config.Verify{Address: srv.addr, Timeout: 3 * time.Second},
	}}
	f.cfg.Certificates[0].Notify = []string{"web"}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Observer: f.obs, VerifyInterval: 20 * time.Millisecond})
	cert := f.cfg.Certificates[0].Files.Cert
	if err := os.WriteFile(cert, oldPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := os.Stat(reloaded); err == nil {
				time.Sleep(300 * time.Millisecond)
				srv.serve(newCert)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	c, err := sinks.WriteSet(filepath.Join(f.dir, "j"), []sinks.File{{Path: cert, Data: newPEM, Mode: 0o644, UID: -1, GID: -1}})
	if err != nil {
		t.Fatal(err)
	}
	f.m.Changed(f.cfg.Certificates[0], c, renewed)
	if out := f.m.Flush(t.Context()); len(out) != 1 || out[0].Result != ResultOK || out[0].Err != nil {
		t.Fatalf("a server that serves the new certificate 300ms after its reload: %+v", out)
	}
	if got := f.obs.get(); !slices.Equal(got, []string{"web:ok"}) {
		t.Errorf("observer saw %v, want one ok", got)
	}
	if n := f.lines("reloaded"); n != 1 {
		t.Errorf("%d reloads, want 1: the first one took hold", n)
	}
}

// refusingSets is a file-set owner that cannot roll back.
type refusingSets struct {
	sinks.Sets
	rollbacks int
}

var _ FileSets = (*refusingSets)(nil)

func (r *refusingSets) Rollback(*sinks.Change) error {
	r.rollbacks++
	return errors.New("disk is read-only")
}

// TestRollbackGoesThroughTheOwner: a failed check asks the file sets'
// owner to roll the batch back, never rewrites the files itself, and a
// rollback the owner cannot do is part of the error.
func TestRollbackGoesThroughTheOwner(t *testing.T) {
	f := newFixture(t)
	f.cfg.Services = []config.Service{shell(f.dir, "nginx")}
	f.cfg.Certificates[0].Notify = []string{"nginx"}
	owner := &refusingSets{}
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff, Files: owner})
	f.write("1")
	os.WriteFile(filepath.Join(f.dir, "broken"), nil, 0o600)
	f.m.Notify("certificate web", []string{"nginx"}, f.write("2"))
	out := f.m.Flush(t.Context())
	if len(out) != 1 || out[0].Result != ResultCheckFailed || !strings.Contains(fmt.Sprint(out[0].Err), "and rolling back failed, files may hold the new set: disk is read-only") {
		t.Fatalf("Flush = %+v, want a failed check whose rollback failed", out)
	}
	if owner.rollbacks != 1 {
		t.Errorf("%d rollbacks asked of the owner, want 1", owner.rollbacks)
	}
	if got := f.onDisk(); !strings.Contains(got, "2") {
		t.Errorf("files on disk %q: the owner refused, so the new set must still be there", got)
	}
}

// steppedClock reads a set time, or the real clock while none is set.
type steppedClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *steppedClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = t
}

func (c *steppedClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() {
		return time.Now()
	}
	return c.at
}

// TestReadStatusTrustsOnlyItsOwn: `certkeeper status` shows saved service
// states only from a file certkeeper itself wrote; another user's (or a
// group-writable one) is refused with whose it is, and none of it shown.
func TestReadStatusTrustsOnlyItsOwn(t *testing.T) {
	f := newFixture(t, shell(t.TempDir(), "nginx"))
	path := statedir.Dir(f.cfg.StateDir).ServicesState()
	os.MkdirAll(filepath.Dir(path), 0o700)
	os.WriteFile(path, []byte(`{"version":1,"services":[{"name":"nginx","state":"ok","served_serial":"planted"}]}`), 0o600)
	if saved, err := ReadStatus(f.cfg); err != nil || saved[0].Served != "planted" {
		t.Fatalf("its own file: %+v, %v", saved, err)
	}
	spoil := map[string]func() string{"group-writable": func() string { os.Chmod(path, 0o620); return "(mode 0620)" }}
	if os.Geteuid() == 0 {
		spoil["another user's"] = func() string { os.Chown(path, 65534, 65534); return "owned by uid 65534" }
	}
	for name, do := range spoil {
		os.Chmod(path, 0o600)
		os.Chown(path, os.Geteuid(), os.Getegid())
		want := do()
		saved, err := ReadStatus(f.cfg)
		if err == nil || !strings.Contains(err.Error(), "refusing to read "+path) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want a refusal saying %q", name, err, want)
		}
		if len(saved) != 0 {
			t.Errorf("%s: shown anyway: %+v", name, saved)
		}
	}
}

// TestMigrateStateMovesServicesJSON: the services' state an older
// certkeeper kept at <state_dir>/services.json moves to services/, once;
// a certificate's record found there (a certificate named "services") is
// not the services' and stays for the agent.
func TestMigrateStateMovesServicesJSON(t *testing.T) {
	f := newFixture(t, shell(t.TempDir(), "nginx"))
	dir := statedir.Dir(f.cfg.StateDir)
	os.MkdirAll(f.cfg.StateDir, 0o700)
	old := dir.Legacy().ServicesState()
	saved := `{"version":1,"services":[{"name":"nginx","state":"ok","reloads":3,"served_serial":"01:02"}]}`
	os.WriteFile(old, []byte(saved), 0o600)
	if moved, err := MigrateState(f.cfg); err != nil || !moved {
		t.Fatalf("moved %v, %v", moved, err)
	}
	st, err := ReadStatus(f.cfg)
	if err != nil || st[0].Served != "01:02" {
		t.Errorf("after migration: %+v, %v", st, err)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("the old file is still there")
	}
	if moved, err := MigrateState(f.cfg); err != nil || moved {
		t.Errorf("a second migration: %v, %v", moved, err)
	}

	record := `{"version":1,"mount":"pki_int","role":"web","serial":"0a"}`
	os.WriteFile(old, []byte(record), 0o600)
	if moved, err := MigrateState(f.cfg); err != nil || moved {
		t.Errorf("a record at services.json: moved %v, %v", moved, err)
	}
	if got, _ := os.ReadFile(old); string(got) != record {
		t.Errorf("the record at services.json was touched: %q", got)
	}
}
