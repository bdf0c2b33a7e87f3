package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/test/cktest"
)

// clock is a settable time for the chain's backoff.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type loginCounts struct {
	mu sync.Mutex
	n  map[string]int // "method/ok" or "method/fail"
}

func (l *loginCounts) ObserveLogin(method string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[string]int{}
	}
	k := method + "/fail"
	if ok {
		k = method + "/ok"
	}
	l.n[k]++
}

func (l *loginCounts) get(k string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[k]
}

// chainClient is a Client for the scripted Vault at addr with the chain
// auth, a settable clock and a login counter.
func chainClient(t *testing.T, addr, caFile string, auth []config.Auth, o Options) (*Client, *cktest.SyncBuffer) {
	t.Helper()
	buf := &cktest.SyncBuffer{}
	o.Log = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.Rand == nil {
		o.Rand = func() float64 { return 0.5 }
	}
	c, err := New(config.Vault{Addresses: []string{addr}, CACert: caFile, Timeout: 5 * time.Second, MaxParallel: 4, Auth: auth}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, buf
}

// dropToken makes the next request log in again, as an expired token does.
func dropToken(c *Client) {
	c.session.mu.Lock()
	gen := c.session.gen
	c.session.mu.Unlock()
	c.session.invalidate(gen)
}

func inUse(c *Client) string {
	for _, st := range c.AuthStatus() {
		if st.InUse {
			return st.Method
		}
	}
	return ""
}

// TestChainFallsBackAndComesBack: the preferred method (a token whose
// lookup Vault refuses) fails, the next (AppRole) logs in. While the
// preferred one backs off, logins go straight to AppRole without asking
// Vault about it; once its backoff has passed and it works again, the next
// login uses it. When every method fails, nobody tries again before the
// first backoff ends, however many callers ask: Vault sees one attempt
// per method per backoff step.
func TestChainFallsBackAndComesBack(t *testing.T) {
	v := newScriptedVault()
	srv := httptest.NewServer(v)
	defer srv.Close()
	dir := t.TempDir()
	tokFile, rid, sid := filepath.Join(dir, "token"), filepath.Join(dir, "role-id"), filepath.Join(dir, "secret-id")
	os.WriteFile(tokFile, []byte("preferred-token\n"), 0o600)
	os.WriteFile(rid, []byte("role"), 0o600)
	os.WriteFile(sid, []byte("the-secret-id"), 0o600)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	logins := &loginCounts{}
	c, logs := chainClient(t, srv.URL, "", []config.Auth{
		{Method: config.AuthToken, Mount: "token", TokenFile: tokFile},
		{Method: config.AuthAppRole, Mount: "approle", RoleIDFile: rid, SecretIDFile: sid},
	}, Options{Now: clk.now, Logins: logins})

	if _, err := c.Obtain(t.Context(), signReq); err != nil {
		t.Fatalf("fallback to approle: %v", err)
	}
	if got := inUse(c); got != "approle" {
		t.Fatalf("in use: %q, want approle", got)
	}
	st := c.AuthStatus()
	if st[0].Failures != 1 || !strings.Contains(st[0].LastError, "looking up token") || st[0].NextAttempt.IsZero() {
		t.Errorf("preferred method's status = %+v, want one failure with its reason and a next attempt", st[0])
	}
	if !strings.Contains(logs.String(), "logged in with a fallback auth method") || !strings.Contains(logs.String(), "preferred_skipped_because=") {
		t.Errorf("the fallback and its reason were not logged:\n%s", logs)
	}
	lookups := v.count("/v1/auth/token/lookup-self")

	// Within the preferred method's backoff: not asked at all.
	for range 20 {
		dropToken(c)
		if _, err := c.Obtain(t.Context(), signReq); err != nil {
			t.Fatal(err)
		}
	}
	if got := v.count("/v1/auth/token/lookup-self"); got != lookups {
		t.Errorf("the backing-off method was tried %d more times within its backoff", got-lookups)
	}
	if got := v.count("/v1/auth/approle/login"); got != 21 {
		t.Errorf("%d approle logins, want 21", got)
	}

	// Repaired, and past its backoff: the next login uses it again.
	v.mu.Lock()
	v.tokens["preferred-token"] = true
	v.mu.Unlock()
	clk.advance(time.Minute)
	dropToken(c)
	if _, err := c.Obtain(t.Context(), signReq); err != nil {
		t.Fatal(err)
	}
	if got := inUse(c); got != "token" {
		t.Errorf("after the repair the token in use is from %q, want the preferred method", got)
	}
	if got := v.count("/v1/auth/approle/login"); got != 21 {
		t.Errorf("approle was asked although the preferred method worked (%d logins)", got)
	}
	if st := c.AuthStatus(); st[0].Failures != 0 || st[0].LastError != "" {
		t.Errorf("the preferred method still shows a failure after it logged in: %+v", st[0])
	}
	if logins.get("token/ok") != 1 || logins.get("token/fail") != 1 || logins.get("approle/ok") != 21 {
		t.Errorf("logins observed: %v", logins.n)
	}

	// Everything broken: one attempt each, then nothing until the first
	// backoff ends.
	v.mu.Lock()
	delete(v.tokens, "preferred-token")
	v.secret = "another-secret"
	v.mu.Unlock()
	clk.advance(time.Minute)
	dropToken(c)
	_, err := c.Obtain(t.Context(), signReq)
	var le *LoginError
	if !errors.As(err, &le) || len(le.Methods) != 2 || !strings.Contains(err.Error(), "auth token: looking up token") ||
		!strings.Contains(err.Error(), "auth approle: approle login") {
		t.Fatalf("all methods failing: err = %v, want a LoginError naming both", err)
	}
	var ve *Error
	if !errors.As(err, &ve) {
		t.Error("the chain's error hides the Vault error inside (callers back off by it)")
	}
	before := v.count("/v1/auth/token/lookup-self") + v.count("/v1/auth/approle/login")
	for range 50 {
		_, err := c.Obtain(t.Context(), signReq)
		// Held back by the chain's backoff: the wait is carried for the
		// caller (whose status says when it tries next), the text names no
		// time of its own, and each method's reason is kept.
		if err == nil || !errors.As(err, &le) || !strings.Contains(err.Error(), "approle login") {
			t.Fatalf("within the backoff: err = %v", err)
		}
		if strings.Contains(err.Error(), "next attempt") || regexp.MustCompile(`\d\d:\d\d:\d\d`).MatchString(err.Error()) {
			t.Fatalf("within the backoff the error names a time of its own: %v", err)
		}
		if !errors.As(err, &ve) || ve.RetryAfter <= 0 || ve.RetryAfter > 5*time.Second {
			t.Fatalf("within the backoff: err = %#v, want a vault.Error carrying the chain's wait (0-5s)", ve)
		}
	}
	if after := v.count("/v1/auth/token/lookup-self") + v.count("/v1/auth/approle/login"); after != before {
		t.Errorf("%d login requests within the backoff of a chain that all failed, want 0", after-before)
	}
	for _, st := range c.AuthStatus() {
		if st.InUse {
			t.Errorf("%s shown in use with no token", st.Method)
		}
	}
}

// TestOneMethodKeepsItsError: a chain of one returns its method's error
// as it is, as before chains.
func TestOneMethodKeepsItsError(t *testing.T) {
	v := newScriptedVault()
	srv := httptest.NewServer(v)
	defer srv.Close()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte("dead"), 0o600)
	c, _ := chainClient(t, srv.URL, "", []config.Auth{{Method: config.AuthToken, Mount: "token", TokenFile: tokFile}}, Options{})
	_, err := c.Obtain(t.Context(), signReq)
	var le *LoginError
	if err == nil || errors.As(err, &le) || !strings.HasPrefix(err.Error(), "pki/sign/web: looking up token:") {
		t.Fatalf("err = %v, want the token method's own error", err)
	}
}

// certVault is a scripted Vault behind TLS that asks for client
// certificates and lets cert auth in with a certificate whose CN it
// trusts.
func certVault(t *testing.T, trusted string) (*scriptedVault, *httptest.Server, string) {
	t.Helper()
	v := newScriptedVault()
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/auth/cert/login" {
			v.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		v.mu.Lock()
		v.hits[r.URL.Path]++
		v.mu.Unlock()
		if len(r.TLS.PeerCertificates) == 0 {
			vaultErr(w, 400, "client certificate must be supplied")
			return
		}
		if cn := r.TLS.PeerCertificates[0].Subject.CommonName; cn != trusted {
			vaultErr(w, 400, "invalid certificate or no client certificate supplied")
			return
		}
		v.mu.Lock()
		v.issued++
		tok := fmt.Sprintf("cert-tok-%d", v.issued)
		v.tokens[tok] = true
		v.mu.Unlock()
		fmt.Fprintf(w, `{"auth":{"client_token":%q,"accessor":"acc-%s","lease_duration":3600,"renewable":false}}`, tok, tok)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "vault-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	return v, srv, caFile
}

// writePairValid writes a self-signed pair named cn, valid in [from, to).
func writePairValid(t *testing.T, a config.Auth, cn string, from, to time.Time) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: from, NotAfter: to}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(a.ClientKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	os.WriteFile(a.ClientCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// TestCertAuthReissuedAfterFallback: cert auth is refused while its
// certificate is valid (revoked, say): another method logs in, and the
// certificate is asked to be renewed, once for the spell, not at every
// login. A missing certificate (the first boot) or an expired one is not
// asked for, since the agent renews those anyway. When cert auth works
// again, a later refusal asks again.
func TestCertAuthReissuedAfterFallback(t *testing.T) {
	v, srv, caFile := certVault(t, "trusted")
	dir := t.TempDir()
	rid, sid := filepath.Join(dir, "role-id"), filepath.Join(dir, "secret-id")
	os.WriteFile(rid, []byte("role"), 0o600)
	os.WriteFile(sid, []byte("the-secret-id"), 0o600)
	cert := config.Auth{Method: config.AuthCert, Mount: "cert", Certificate: "vault-id",
		ClientCert: filepath.Join(dir, "id.crt"), ClientKey: filepath.Join(dir, "id.key")}
	clk := &clock{t: time.Now()}
	var mu sync.Mutex
	var asked []string
	c, logs := chainClient(t, srv.URL, caFile, []config.Auth{cert,
		{Method: config.AuthAppRole, Mount: "approle", RoleIDFile: rid, SecretIDFile: sid}},
		Options{Now: clk.now, Reissue: func(name string) { mu.Lock(); asked = append(asked, name); mu.Unlock() }})
	reissues := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(asked)
	}
	login := func(want string) {
		t.Helper()
		clk.advance(10 * time.Minute) // past any backoff
		dropToken(c)
		if _, err := c.Obtain(t.Context(), signReq); err != nil {
			t.Fatal(err)
		}
		if got := inUse(c); got != want {
			t.Fatalf("logged in with %q, want %q\n%s", got, want, logs)
		}
	}

	// First boot: no certificate yet. The handshake goes on without one
	// (approle gets through), cert auth says which file is missing, and
	// nothing is asked of the agent.
	login("approle")
	if st := c.AuthStatus(); !strings.Contains(st[0].LastError, "id.crt") {
		t.Errorf("cert auth's error does not name the missing file: %q", st[0].LastError)
	}
	if v.count("/v1/auth/cert/login") != 0 {
		t.Error("cert login was sent without a certificate")
	}
	if n := reissues(); n != 0 {
		t.Errorf("%d renewals asked for a missing certificate", n)
	}

	// Valid but refused: asked once, whatever the number of logins.
	writePairValid(t, cert, "revoked", clk.now().Add(-time.Hour), clk.now().Add(24*time.Hour))
	login("approle")
	login("approle")
	login("approle")
	if n := reissues(); n != 1 || asked[0] != "vault-id" {
		t.Errorf("renewals asked: %v, want one for vault-id", asked)
	}

	// Renewed and trusted: cert auth is back.
	writePairValid(t, cert, "trusted", clk.now().Add(-time.Hour), clk.now().Add(24*time.Hour))
	login("cert")

	// Expired: the agent renews it anyway; nothing is asked.
	writePairValid(t, cert, "revoked", clk.now().Add(-48*time.Hour), clk.now().Add(-time.Hour))
	login("approle")
	if n := reissues(); n != 1 {
		t.Errorf("a renewal was asked for an expired certificate (%d asked)", n)
	}

	// Valid and refused again, after cert auth had worked: asked again.
	writePairValid(t, cert, "revoked", clk.now().Add(-time.Hour), clk.now().Add(24*time.Hour))
	login("approle")
	if n := reissues(); n != 2 {
		t.Errorf("%d renewals asked, want a second after cert auth had worked in between", n)
	}
}
