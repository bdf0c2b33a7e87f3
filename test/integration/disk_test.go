//go:build integration && faults

package integration

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestWriteFailuresDoNotLoop: the directory the certificates go to fills
// up, turns read-only, or stops being writable for certkeeper's user, just
// before a renewal. The files stay as they were, the error says what is
// wrong, attempts back off, and Vault signs exactly one certificate for
// all of them: the one obtained is kept and written once the disk is
// fixed.
func TestWriteFailuresDoNotLoop(t *testing.T) {
	cases := []struct {
		name    string
		want    string
		prepare func(t *testing.T, out string) // before the daemon starts
		breakIt func(t *testing.T, out string) // after the first issuance
		fix     func(t *testing.T, out string) // after the failures
		asUser  *syscall.Credential            // run certkeeper as this user
	}{
		{
			name:    "disk full",
			want:    "no space left on device",
			prepare: func(t *testing.T, out string) { mountTmpfs(t, out, "size=96k") },
			breakIt: func(t *testing.T, out string) { fillDisk(t, filepath.Join(out, "filler")) },
			fix: func(t *testing.T, out string) {
				if err := os.Remove(filepath.Join(out, "filler")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:    "read-only directory",
			want:    "read-only file system",
			prepare: func(t *testing.T, out string) { mountTmpfs(t, out, "size=1m") },
			breakIt: func(t *testing.T, out string) { mountCmd(t, "-o", "remount,ro", out) },
			fix:     func(t *testing.T, out string) { mountCmd(t, "-o", "remount,rw", out) },
		},
		{
			name:    "permission denied",
			want:    "permission denied",
			asUser:  &syscall.Credential{Uid: 65534, Gid: 65534},
			breakIt: func(t *testing.T, out string) { chownOrSkip(t, out, 0, 0) },
			fix:     func(t *testing.T, out string) { chownOrSkip(t, out, 65534, 65534) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, vaulttest.Options{})
			out := filepath.Join(e.dir, "out")
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.prepare != nil {
				tc.prepare(t, out)
			}
			bin := certkeeperBin
			if tc.asUser != nil {
				bin = runnableBy(t, e, out, tc.asUser)
			}
			cert := strings.ReplaceAll(shortCert(e, "web"), e.dir+"/web", out+"/web")
			cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", e.vault.Addr)), cert)
			if tc.asUser != nil {
				os.Chown(cfg, int(tc.asUser.Uid), int(tc.asUser.Gid))
			}
			d := startDaemonAs(t, bin, cfg, tc.asUser)
			d.WaitLog(`certificate issued and written.*cert=web`, 1, time.Minute)
			paths := []string{filepath.Join(out, "web.key"), filepath.Join(out, "web.crt"), filepath.Join(out, "web.fullchain.pem")}
			before := fileSum(t, paths...)
			signedBefore := signedSerials(t, e)

			tc.breakIt(t, out)
			mark := d.mark()
			d.waitLogAfter(mark, `renewal failed; keeping the files on disk.*cert=web`, 3, 3*time.Minute)
			failures := linesContaining(d.Logs.String()[mark:], "renewal failed")
			for _, f := range failures {
				if !strings.Contains(f, tc.want) {
					t.Errorf("failure does not say %q:\n%s", tc.want, f)
				}
			}
			if got := fileSum(t, paths...); got != before {
				t.Fatal("files changed although the write failed")
			}
			signed := minus(signedSerials(t, e), signedBefore)
			retries := attemptIntervals(failures)
			tc.fix(t, out)
			fixed := time.Now()
			d.waitLogAfter(mark, `certificate issued and written.*cert=web`, 1, 3*time.Minute)
			t.Logf("%s: %d failed attempts, intervals between them %v, %d certificate(s) signed by Vault during the fault, written %v after the fix",
				tc.name, len(failures), retries, len(signed), time.Since(fixed).Round(100*time.Millisecond))
			if len(signed) != 1 {
				t.Fatalf("Vault signed %d certificates for %d failed writes, want 1: the one obtained must be kept, not re-issued", len(signed), len(failures))
			}
			// What is written after the fix is the certificate kept from
			// the fault (it may be renewed right after, if it fell due).
			written := regexp.MustCompile(`certificate issued and written" cert=web serial=(\S+)`).FindStringSubmatch(d.Logs.String()[mark:])
			if written == nil || written[1] != signed[0] {
				t.Errorf("after the fix certkeeper wrote %v, want the certificate Vault signed during the fault (%s)", written, signed[0])
			}
			if !strings.Contains(d.Logs.String()[mark:], "writing the certificate obtained at an earlier attempt") {
				t.Error("no log line saying the kept certificate was written")
			}
			for _, r := range retries {
				if r < 900*time.Millisecond {
					t.Errorf("retry %v after a failed write: no backoff", r)
				}
			}
			if got := fileSum(t, paths...); got == before {
				t.Error("files unchanged after the fix")
			}
			e.checkPairIn(t, out, "web")
			d.Stop()
		})
	}
}

// attemptIntervals is the time between consecutive failure log lines,
// i.e. how long certkeeper waited before trying again.
func attemptIntervals(lines []string) []time.Duration {
	var times []time.Time
	for _, l := range lines {
		if at, err := time.Parse(time.RFC3339Nano, field(l, "time")); err == nil {
			times = append(times, at)
		}
	}
	return gaps(times)
}

// field returns the value of key=value in a logfmt line.
func field(line, key string) string {
	m := regexp.MustCompile(`(?:^| )` + regexp.QuoteMeta(key) + `=("(?:[^"\\]|\\.)*"|\S+)`).FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	return strings.Trim(m[1], `"`)
}

func mountTmpfs(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs for this fault (needs root with CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

func mountCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v %s", args, err, out)
	}
}

// fillDisk writes path until the filesystem is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			return
		}
	}
}

func chownOrSkip(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatalf("chown %s: %v", path, err)
	}
}

// runnableBy prepares the env so that user can run certkeeper: a copy of
// the binary it may execute, directories it may enter, credentials and
// state it may read, and out as its own. It skips when not root.
func runnableBy(t *testing.T, e *env, out string, user *syscall.Credential) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running certkeeper as another user needs root")
	}
	uid, gid := int(user.Uid), int(user.Gid)
	// t.TempDir makes 0700 directories; the user must be able to enter them.
	for dir := e.dir; dir != "/" && dir != os.TempDir(); dir = filepath.Dir(dir) {
		os.Chmod(dir, 0o755)
	}
	bin := filepath.Join(e.dir, "certkeeper")
	src, err := os.Open(certkeeperBin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	for _, p := range []string{e.roleIDFile, e.secretIDFile, out} {
		chownOrSkip(t, p, uid, gid)
	}
	state := filepath.Join(e.dir, "state")
	os.Mkdir(state, 0o700)
	chownOrSkip(t, state, uid, gid)
	return bin
}

// startDaemonAs is startDaemon with another binary and, optionally, user.
func startDaemonAs(t *testing.T, bin, cfg string, user *syscall.Credential) *daemon {
	t.Helper()
	if bin == certkeeperBin && user == nil {
		return startDaemon(t, cfg)
	}
	return &daemon{cktest.Start(t, cktest.Options{
		Bin:  bin,
		Args: []string{"run", "-config", cfg, "-log-level", "debug"},
		Env:  cleanEnv(),
		User: user,
	})}
}

// checkPairIn is checkPair for a set written into dir.
func (e *env) checkPairIn(t *testing.T, dir, name string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(dir, name+s) }
	if openssl(t, "x509", "-in", p(".crt"), "-noout", "-pubkey") != openssl(t, "pkey", "-in", p(".key"), "-pubout") {
		t.Errorf("%s: key does not match certificate", name)
	}
	openssl(t, "verify", "-CAfile", p(".ca.pem"), p(".fullchain.pem"))
}

// signedSerials lists the serials Vault's intermediate has issued.
func signedSerials(t *testing.T, e *env) []string {
	t.Helper()
	sec, err := e.vault.Client.Logical().List(vaulttest.IntMount + "/certs")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if sec != nil {
		keys, _ := sec.Data["keys"].([]any)
		for _, k := range keys {
			out = append(out, strings.ReplaceAll(fmt.Sprint(k), "-", ":"))
		}
	}
	return out
}

// minus returns the elements of a not in b.
func minus(a, b []string) []string {
	seen := map[string]bool{}
	for _, s := range b {
		seen[s] = true
	}
	var out []string
	for _, s := range a {
		if !seen[s] {
			out = append(out, s)
		}
	}
	return out
}
