//go:build integration

package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// systemUser makes a system user for the test (as `adduser --system`
// would for the package) and removes it, with its group, afterwards.
func systemUser(t *testing.T, prefix string) (name string, uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: the test makes system users and switches between them (CI runs as root)")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd (Debian package passwd) is missing")
	}
	b := make([]byte, 3)
	rand.Read(b)
	name = prefix + hex.EncodeToString(b)
	if out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return name, uid, gid
}

// ownerSetup is a host where a system user owns state_dir and the output
// directory, as the package sets it up for certkeeper: a config every
// user may read, credentials readable by the owner's group, and a copy of
// the binary every user may run.
type ownerSetup struct {
	vault           *vaulttest.Server
	dir, out, state string
	cfg, bin        string
	owner           string
	uid, gid        int
}

func newOwnerSetup(t *testing.T, ttl string) *ownerSetup {
	t.Helper()
	owner, uid, gid := systemUser(t, "ckown")
	v := vaulttest.New(t, vaulttest.Options{})
	v.PKI(t)
	dir, err := os.MkdirTemp("/tmp", "ck-owner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	s := &ownerSetup{vault: v, dir: dir, out: filepath.Join(dir, "tls"), state: filepath.Join(dir, "state"),
		cfg: filepath.Join(dir, "certkeeper.hcl"), bin: filepath.Join(dir, "certkeeper"), owner: owner, uid: uid, gid: gid}
	roleID, secretID := v.AppRole(t, vaulttest.AppRoleOptions{Name: "owner"})
	rf, sf := vaulttest.WriteCreds(t, dir, roleID, secretID)
	for _, f := range []string{rf, sf} {
		os.Chown(f, 0, gid)
		os.Chmod(f, 0o640)
	}
	for d, mode := range map[string]os.FileMode{s.state: 0o700, s.out: 0o755} {
		if err := os.Mkdir(d, mode); err != nil {
			t.Fatal(err)
		}
		os.Chown(d, uid, gid)
	}
	copyFile(t, certkeeperBin, s.bin, 0o755)
	os.WriteFile(s.cfg, []byte(fmt.Sprintf(`
state_dir = %q
vault {
  address = %q
  auth "approle" {
    role_id_file   = %q
    secret_id_file = %q
  }
}
certificate "web" {
  mount          = "pki_int"
  role           = "ec"
  common_name    = "web.example.internal"
  ttl            = %[6]q
  cert_file      = "%[5]s/web.crt"
  key_file       = "%[5]s/web.key"
  fullchain_file = "%[5]s/web.fullchain.pem"
}
telemetry {
  listen = ""
}
`, s.state, v.Addr, rf, sf, s.out, ttl)), 0o644)
	return s
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
}

// allOwnedBy fails the test for anything under the roots not owned by uid.
func allOwnedBy(t *testing.T, uid int, roots ...string) {
	t.Helper()
	for _, root := range roots {
		filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil {
				t.Errorf("walking %s: %v", p, err)
				return nil
			}
			if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
				t.Errorf("%s is owned by uid %d, want %d", p, st.Uid, uid)
			}
			return nil
		})
	}
}

// TestStateOwnerRootOnceThenDaemon: root's `once` on a state_dir that a
// system user owns runs as that user, so everything it writes is the
// user's, and a root-owned 0600 output left by an older root run, which
// the user cannot read, is replaced rather than failing every write.
// Then the daemon, run as that user the way the packaged unit runs it,
// keeps renewing a short-lived certificate.
func TestStateOwnerRootOnceThenDaemon(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is missing")
	}
	s := newOwnerSetup(t, "45s")
	// What a root `once` of an older certkeeper left: root's files, 0600.
	for _, f := range []string{"web.key", "web.crt"} {
		if err := os.WriteFile(filepath.Join(s.out, f), []byte("left by root\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	stdout, stderr, code := cktest.Run(t, s.bin, cleanEnv(), "once", "-config", s.cfg)
	if code != 0 {
		t.Fatalf("root's once exited %d:\n%s\n%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`msg="running as the owner of state_dir" state_dir=` + regexp.QuoteMeta(s.state) + ` user=` + s.owner + ` uid=` + strconv.Itoa(s.uid) + ` `).MatchString(stderr) {
		t.Errorf("root's once did not say it switched to %s:\n%s", s.owner, stderr)
	}
	if !strings.Contains(stdout, "web: issued") {
		t.Errorf("once output: %s", stdout)
	}
	allOwnedBy(t, s.uid, s.out, s.state)
	first := serialOf(cktest.ReadLeaf(t, filepath.Join(s.out, "web.crt")))

	// The daemon as the packaged unit runs it: User=, its groups, and
	// AmbientCapabilities=CAP_KILL.
	d := cktest.Start(t, cktest.Options{
		Bin: setpriv,
		Args: []string{"--reuid=" + s.owner, "--regid=" + s.owner, "--init-groups", "--inh-caps", "+kill", "--ambient-caps", "+kill",
			"--", s.bin, "run", "-config", s.cfg},
		Env: cleanEnv(),
	})
	// A 45s certificate (75s with Vault's 30s backdating) is due about
	// 15s after it was issued: two renewals show the daemon keeps going.
	d.WaitLog(`msg="certificate issued and written" cert=web .*reason="renewal is due`, 2, 2*time.Minute)
	if n := d.Count(`level=ERROR`); n > 0 {
		t.Errorf("the daemon logged %d errors:\n%s", n, d.Logs.String())
	}
	if now := serialOf(cktest.ReadLeaf(t, filepath.Join(s.out, "web.crt"))); now == first {
		t.Error("the certificate on disk is still the one root's once wrote")
	}
	if code := d.Stop(); code != 0 {
		t.Errorf("the daemon exited %d after SIGTERM", code)
	}
	allOwnedBy(t, s.uid, s.out, s.state)
}

// TestStateOwnerRefusesOtherUsers: a user who neither owns state_dir nor
// is root is refused before anything is touched, with the owner named.
func TestStateOwnerRefusesOtherUsers(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is missing")
	}
	s := newOwnerSetup(t, "24h")
	other, _, _ := systemUser(t, "ckoth")
	for _, cmd := range []string{"once", "status", "rotate", "run"} {
		stdout, stderr, code := cktest.Run(t, setpriv, cleanEnv(), "--reuid="+other, "--regid="+other, "--init-groups", "--",
			s.bin, cmd, "-config", s.cfg)
		want := fmt.Sprintf("certkeeper %s: state_dir %s belongs to %s (uid %d): run this command as %s or as root", cmd, s.state, s.owner, s.uid, s.owner)
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("%s as %s: exit %d\nstdout: %s\nstderr: %s\nwant the refusal %q", cmd, other, code, stdout, stderr, want)
		}
	}
	if entries, _ := os.ReadDir(s.out); len(entries) > 0 {
		t.Errorf("the refused commands wrote %d files", len(entries))
	}
	if entries, _ := os.ReadDir(s.state); len(entries) > 0 {
		t.Errorf("the refused commands left %d entries in state_dir", len(entries))
	}
	if n := s.vault.CountCerts(t, vaulttest.IntMount); n != 0 {
		t.Errorf("the refused commands got %d certificates from Vault", n)
	}
}

// TestStateOfAnotherUserIsRefused: a record in state_dir that its owner
// did not write (here root's, as an older root `once` left them) is never
// trusted: root's `once` runs as the owner, says whose the record is, gets
// a new certificate, and the record written in its place is the owner's.
func TestStateOfAnotherUserIsRefused(t *testing.T) {
	s := newOwnerSetup(t, "24h")
	if stdout, stderr, code := cktest.Run(t, s.bin, cleanEnv(), "once", "-config", s.cfg); code != 0 {
		t.Fatalf("first once exited %d:\n%s\n%s", code, stdout, stderr)
	}
	first := serialOf(cktest.ReadLeaf(t, filepath.Join(s.out, "web.crt")))
	record := filepath.Join(s.state, "certs", "web.json")
	if err := os.Chown(record, 0, 0); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := cktest.Run(t, s.bin, cleanEnv(), "once", "-config", s.cfg)
	want := fmt.Sprintf("refusing to read %s: it is owned by uid 0 (root), not by uid %d (%s), who certkeeper runs as", record, s.uid, s.owner)
	if code != 0 || !strings.Contains(stdout, "web: issued") || !strings.Contains(stdout, want) {
		t.Fatalf("once over root's record: exit %d, want a new certificate and the refusal %q:\n%s\n%s", code, want, stdout, stderr)
	}
	if serialOf(cktest.ReadLeaf(t, filepath.Join(s.out, "web.crt"))) == first {
		t.Error("the certificate the refused record described was kept")
	}
	if n := s.vault.CountCerts(t, vaulttest.IntMount); n != 2 {
		t.Errorf("Vault issued %d certificates, want 2", n)
	}
	allOwnedBy(t, s.uid, s.out, s.state)
}
