//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// onceUmask runs `certkeeper once` under umask 000, as a careless init
// script or config management run might.
func onceUmask(t *testing.T, cfg string) (string, string, int) {
	t.Helper()
	return cktest.Run(t, "sh", cleanEnv(), "-c", `umask 000; exec "$0" once -config "$1"`, certkeeperBin, cfg)
}

// TestHostileFiles: umask 000 does not loosen the key; a key left
// world-readable is repaired without asking Vault; a symlink planted at a
// destination is refused, not followed, and what it points at is left
// alone.
func TestHostileFiles(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(e.cert("web", vaulttest.RoleEC))
	if out, errOut, code := onceUmask(t, cfg); code != 0 {
		t.Fatalf("once under umask 000: %d %s %s", code, out, errOut)
	}
	key, crt := filepath.Join(e.dir, "web.key"), filepath.Join(e.dir, "web.crt")
	if m := mode(t, key); m != 0o600 {
		t.Errorf("key written %o under umask 000, want 600", m)
	}
	if m := mode(t, crt); m != 0o644 {
		t.Errorf("certificate written %o under umask 000, want 644", m)
	}
	for _, p := range []string{filepath.Join(e.dir, "state"), filepath.Join(e.dir, "state", "certs", "web.json")} {
		if m := mode(t, p); m&0o077 != 0 {
			t.Errorf("%s is %o under umask 000: state is certkeeper's alone", p, m)
		}
	}

	// A key left readable by everyone is repaired, from what is held.
	issued := e.vault.CountCerts(t, vaulttest.IntMount)
	keyBytes, _ := os.ReadFile(key)
	os.Chmod(key, 0o644)
	out, errOut, code := onceUmask(t, cfg)
	if code != 0 || !strings.Contains(out, "web: ok, restored 1 files") {
		t.Fatalf("world-readable key: exit %d\n%s\n%s", code, out, errOut)
	}
	if m := mode(t, key); m != 0o600 {
		t.Errorf("key mode after repair %o, want 600", m)
	}
	if now, _ := os.ReadFile(key); !bytes.Equal(now, keyBytes) {
		t.Error("repairing the mode changed the key")
	}
	if n := e.vault.CountCerts(t, vaulttest.IntMount); n != issued {
		t.Errorf("repairing a mode asked Vault for %d certificates", n-issued)
	}

	// A symlink at the key path pointing at something precious.
	precious := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(precious, []byte("root:x:0:0\n"), 0o644)
	os.Remove(key)
	if err := os.Symlink(precious, key); err != nil {
		t.Fatal(err)
	}
	out, _, code = onceUmask(t, cfg)
	if code == 0 || !regexp.MustCompile(`web: FAILED: .*refusing to write .*web\.key: it is a symlink`).MatchString(out) {
		t.Errorf("symlink at the key path: exit %d, want a clear refusal:\n%s", code, out)
	}
	if b, _ := os.ReadFile(precious); string(b) != "root:x:0:0\n" {
		t.Error("the symlink was followed: its target was overwritten")
	}
	if fi, err := os.Lstat(key); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the planted symlink was replaced or removed instead of refused")
	}
	if m := mode(t, precious); m != 0o644 {
		t.Errorf("the symlink's target had its mode changed to %o", m)
	}
}

// TestTLSFailsClosed: certkeeper talks to Vault over TLS only when it can
// verify it. VAULT_SKIP_VERIFY=1 in the environment changes nothing; a
// server certificate from an unknown CA and a redirect from https to http
// are refused; tls_skip_verify = true in the config is the one way out, and
// it is logged as a warning.
func TestTLSFailsClosed(t *testing.T) {
	e := newEnv(t, vaulttest.Options{TLS: true})
	certs := func() string { return e.cert("web", vaulttest.RoleEC) }
	noFiles := func(t *testing.T, what string) {
		t.Helper()
		if _, err := os.Stat(filepath.Join(e.dir, "web.crt")); err == nil {
			t.Errorf("%s: a certificate was written", what)
			os.Remove(filepath.Join(e.dir, "web.crt"))
		}
	}

	t.Run("VAULT_SKIP_VERIFY is ignored", func(t *testing.T) {
		cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", e.vault.TLSAddr)), certs())
		out, _, code := once(t, cfg, "VAULT_SKIP_VERIFY=1", "VAULT_CACERT=")
		if code == 0 || !strings.Contains(out, "certificate signed by unknown authority") {
			t.Errorf("exit %d, want a verification failure:\n%s", code, out)
		}
		noFiles(t, "VAULT_SKIP_VERIFY=1")
	})

	t.Run("unknown CA", func(t *testing.T) {
		// A TLS front with a certificate from another CA, passing to Vault.
		other, err := vaulttest.NewTestCA(t.TempDir(), "other")
		if err != nil {
			t.Fatal(err)
		}
		front := tlsFront(t, other, proxyTo(t, e.vault.Addr))
		cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", front), fmt.Sprintf("ca_cert = %q", e.vault.TLSCA.CertFile)), certs())
		out, _, code := once(t, cfg)
		if code == 0 || !strings.Contains(out, "certificate signed by unknown authority") {
			t.Errorf("exit %d, want a verification failure:\n%s", code, out)
		}
		noFiles(t, "unknown CA")
	})

	t.Run("redirect to plain http", func(t *testing.T) {
		before := e.vault.CountCerts(t, vaulttest.IntMount)
		front := tlsFront(t, e.vault.TLSCA, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, e.vault.Addr+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		}))
		cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", front), fmt.Sprintf("ca_cert = %q", e.vault.TLSCA.CertFile)), certs())
		out, _, code := once(t, cfg)
		if code == 0 || !strings.Contains(out, "redirect would cause protocol downgrade") {
			t.Errorf("exit %d, want a refused downgrade:\n%s", code, out)
		}
		if n := e.vault.CountCerts(t, vaulttest.IntMount); n != before {
			t.Errorf("the redirected request reached Vault over http (%d certificates)", n-before)
		}
		noFiles(t, "redirect")
	})

	t.Run("verified", func(t *testing.T) {
		cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", e.vault.TLSAddr), fmt.Sprintf("ca_cert = %q", e.vault.TLSCA.CertFile)), certs())
		if out, errOut, code := once(t, cfg, "VAULT_SKIP_VERIFY=1"); code != 0 {
			t.Fatalf("with the right CA: exit %d\n%s\n%s", code, out, errOut)
		}
		os.Remove(filepath.Join(e.dir, "web.crt"))
	})

	t.Run("explicit opt-out", func(t *testing.T) {
		cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", e.vault.TLSAddr), "tls_skip_verify = true"), certs())
		out, errOut, code := once(t, cfg)
		if code != 0 {
			t.Fatalf("tls_skip_verify = true: exit %d\n%s\n%s", code, out, errOut)
		}
		if !strings.Contains(errOut, "TLS verification of vault is OFF") {
			t.Error("turning verification off was not logged as a warning")
		}
	})
}

// proxyTo is a reverse proxy to a plain-http Vault.
func proxyTo(t *testing.T, addr string) http.Handler {
	t.Helper()
	u, err := url.Parse(addr)
	if err != nil {
		t.Fatal(err)
	}
	return httputil.NewSingleHostReverseProxy(u)
}

// tlsFront serves h over TLS on 127.0.0.1 with a certificate from ca, and
// returns its https:// address.
func tlsFront(t *testing.T, ca *vaulttest.TestCA, h http.Handler) string {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, err := ca.WriteServerPair(dir, "front")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	go srv.Config.ServeTLS(l, certFile, keyFile)
	t.Cleanup(func() { srv.Config.Close() })
	return "https://" + l.Addr().String()
}

// TestPathsWithoutLinksOrStrangers: a symlink anywhere in a destination's
// path (here the key's directory, pointing at a directory an attacker
// chose) is refused and nothing is written where it leads; a directory
// others may write to without the sticky bit is refused before anything
// is made in it; a 300 MiB file at a destination is refused with its size
// instead of being read. Each is a clear FAILED line in once's output,
// and the other certificates of the run are written.
func TestPathsWithoutLinksOrStrangers(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	elsewhere := t.TempDir()
	linked, open := filepath.Join(e.dir, "linked"), filepath.Join(e.dir, "open")
	if err := os.Symlink(elsewhere, linked); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o777)
	huge := filepath.Join(e.dir, "huge.crt")
	if f, err := os.Create(huge); err == nil {
		f.Truncate(300 << 20)
		f.Close()
	}
	keyAt := func(name, path string) string {
		return strings.Replace(e.cert(name, vaulttest.RoleEC), fmt.Sprintf("%q", filepath.Join(e.dir, name+".key")), fmt.Sprintf("%q", path), 1)
	}
	cfg := e.writeConfig(keyAt("linked", filepath.Join(linked, "web.key")), keyAt("open", filepath.Join(open, "tls", "web.key")),
		e.cert("huge", vaulttest.RoleEC), e.cert("fine", vaulttest.RoleEC))
	out, errOut, code := once(t, cfg)
	if code == 0 {
		t.Fatalf("once succeeded:\n%s\n%s", out, errOut)
	}
	for _, want := range []string{
		`linked: FAILED: .*refusing to write ` + regexp.QuoteMeta(filepath.Join(linked, "web.key")) + `: ` + regexp.QuoteMeta(linked) + ` is a symlink`,
		`open: FAILED: .*refusing to write ` + regexp.QuoteMeta(filepath.Join(open, "tls", "web.key")) + `: directory ` + regexp.QuoteMeta(open) + ` is writable by group or others \(mode 0777\) and not sticky`,
		`huge: FAILED: .*refusing to replace ` + regexp.QuoteMeta(huge) + `: it holds 314572800 bytes, more than the 16777216`,
		`fine: issued`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("once's output lacks %s:\n%s", want, out)
		}
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("written through the symlinked directory: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(open, "tls")); err == nil {
		t.Error("a directory was made in the world-writable one")
	}
	if info, err := os.Stat(huge); err != nil || info.Size() != 300<<20 {
		t.Error("the huge file was replaced")
	}
}
