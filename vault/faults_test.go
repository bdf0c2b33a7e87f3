package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/test/cktest"
)

// scriptedVault answers the few endpoints certkeeper uses, with faults the
// test chooses. It stands in for Vault only to inject what a real server
// will not do on demand; test/integration runs the real one.
type scriptedVault struct {
	mu      sync.Mutex
	hits    map[string]int
	tokens  map[string]bool // live tokens
	issued  int
	sign    func(w http.ResponseWriter, n int) bool // handles the n-th sign; false: answer normally
	lookup  func(w http.ResponseWriter) bool
	wrapped map[string]string // wrapping token -> creation path
	secret  string            // the secret_id a login needs
	// tokenPrefix begins every token (then the login's number); lease
	// and renewable describe them, and renew-self renews them.
	tokenPrefix string
	lease       int
	renewable   bool
}

func newScriptedVault() *scriptedVault {
	return &scriptedVault{hits: map[string]int{}, tokens: map[string]bool{}, wrapped: map[string]string{}, secret: "the-secret-id", tokenPrefix: "tok-", lease: 3600}
}

func (v *scriptedVault) count(path string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.hits[path]
}

func vaultErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"errors":[%q]}`, msg)
}

func (v *scriptedVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	json.Unmarshal(body, &in)
	v.mu.Lock()
	v.hits[r.URL.Path]++
	n := v.hits[r.URL.Path]
	token := r.Header.Get("X-Vault-Token")
	live := v.tokens[token]
	v.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/v1/auth/approle/login":
		if in["secret_id"] != v.secret {
			vaultErr(w, 400, "invalid role or secret ID")
			return
		}
		v.mu.Lock()
		v.issued++
		tok := fmt.Sprintf("%s%d", v.tokenPrefix, v.issued)
		v.tokens[tok] = true
		n, lease, renewable := v.issued, v.lease, v.renewable
		v.mu.Unlock()
		fmt.Fprintf(w, `{"auth":{"client_token":%q,"accessor":"acc-%d","lease_duration":%d,"renewable":%t}}`, tok, n, lease, renewable)
	case r.URL.Path == "/v1/auth/token/renew-self":
		if !live {
			vaultErr(w, 403, "permission denied")
			return
		}
		fmt.Fprintf(w, `{"auth":{"client_token":%q,"accessor":"acc-renewed","lease_duration":%d,"renewable":true}}`, token, v.lease)
	case r.URL.Path == "/v1/auth/token/lookup-self":
		if v.lookup != nil && v.lookup(w) {
			return
		}
		if !live {
			vaultErr(w, 403, "permission denied")
			return
		}
		fmt.Fprint(w, `{"data":{"ttl":3000,"renewable":false}}`)
	case r.URL.Path == "/v1/sys/wrapping/lookup":
		v.mu.Lock()
		path, ok := v.wrapped[fmt.Sprint(in["token"])]
		v.mu.Unlock()
		if !ok {
			vaultErr(w, 400, "wrapping token is not valid or does not exist")
			return
		}
		fmt.Fprintf(w, `{"data":{"creation_path":%q,"creation_ttl":300}}`, path)
	case r.URL.Path == "/v1/sys/wrapping/unwrap":
		v.mu.Lock()
		_, ok := v.wrapped[token]
		delete(v.wrapped, token)
		v.mu.Unlock()
		if !ok {
			vaultErr(w, 400, "wrapping token is not valid or does not exist")
			return
		}
		fmt.Fprintf(w, `{"data":{"secret_id":%q,"secret_id_accessor":"x"}}`, v.secret)
	case strings.Contains(r.URL.Path, "/sign/"):
		if !live {
			vaultErr(w, 403, "permission denied")
			return
		}
		if v.sign != nil && v.sign(w, n) {
			return
		}
		fmt.Fprint(w, `{"data":{"certificate":"C","issuing_ca":"I","ca_chain":["I"],"serial_number":"01"}}`)
	default:
		vaultErr(w, 404, "no handler for "+r.URL.Path)
	}
}

func (v *scriptedVault) revoke(token string) {
	v.mu.Lock()
	delete(v.tokens, token)
	v.mu.Unlock()
}

// newTestClient makes a Client for addrs with AppRole credentials in a temp
// dir, logging into buf.
func newTestClient(t *testing.T, addrs []string, mutate func(*config.Vault)) (*Client, *cktest.SyncBuffer) {
	t.Helper()
	dir := t.TempDir()
	rid, sid := filepath.Join(dir, "role-id"), filepath.Join(dir, "secret-id")
	os.WriteFile(rid, []byte("role"), 0o600)
	os.WriteFile(sid, []byte("the-secret-id"), 0o600)
	cfg := config.Vault{
		Addresses: addrs, Timeout: 5 * time.Second, MaxParallel: 4,
		Auth: []config.Auth{{Method: config.AuthAppRole, Mount: "approle", RoleIDFile: rid, SecretIDFile: sid}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	buf := &cktest.SyncBuffer{}
	c, err := New(cfg, Options{Log: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, buf
}

var signReq = CertRequest{Certificate: config.Certificate{Mount: "pki", Role: "web", CommonName: "web.example.internal"}, CSR: []byte("CSR")}

// TestElectionErrorIsRetriedNotReloggedIn: during a Raft election a standby
// answers 500 "local node not active but active cluster node not found".
// That is transient: the caller gets a retryable error, and nobody logs in
// again for it.
func TestElectionErrorIsRetriedNotReloggedIn(t *testing.T) {
	v := newScriptedVault()
	v.sign = func(w http.ResponseWriter, n int) bool {
		if n <= 3 {
			vaultErr(w, 500, "local node not active but active cluster node not found")
			return true
		}
		return false
	}
	srv := httptest.NewServer(v)
	defer srv.Close()
	c, _ := newTestClient(t, []string{srv.URL}, nil)
	for i := 1; i <= 3; i++ {
		_, err := c.Obtain(t.Context(), signReq)
		var denied *DeniedError
		if err == nil || !Transient(err) || errors.As(err, &denied) {
			t.Fatalf("attempt %d: err = %v, want a transient error", i, err)
		}
		if !strings.Contains(err.Error(), "active cluster node not found") {
			t.Errorf("error lost Vault's reason: %v", err)
		}
	}
	if _, err := c.Obtain(t.Context(), signReq); err != nil {
		t.Fatalf("after the election: %v", err)
	}
	if n := v.count("/v1/auth/approle/login"); n != 1 {
		t.Errorf("%d logins, want 1: an election is not an auth failure", n)
	}
}

// TestPolicyDenialDoesNotLoop: a 403 that a live token gets is a policy
// problem. The caller gets a DeniedError saying so, and repeated attempts
// do not log in again.
func TestPolicyDenialDoesNotLoop(t *testing.T) {
	v := newScriptedVault()
	v.sign = func(w http.ResponseWriter, n int) bool {
		vaultErr(w, 403, "1 error occurred:\n\t* permission denied\n\n")
		return true
	}
	srv := httptest.NewServer(v)
	defer srv.Close()
	c, _ := newTestClient(t, []string{srv.URL}, nil)
	for i := range 5 {
		_, err := c.Obtain(t.Context(), signReq)
		var denied *DeniedError
		if !errors.As(err, &denied) || !strings.Contains(err.Error(), "permission denied by vault policy") {
			t.Fatalf("attempt %d: err = %v, want a policy denial", i, err)
		}
	}
	if n := v.count("/v1/auth/approle/login"); n != 1 {
		t.Errorf("%d logins for 5 denied requests, want 1", n)
	}
	if n := v.count("/v1/pki/sign/web"); n != 5 {
		t.Errorf("%d sign requests for 5 attempts, want 5 (no hidden retries)", n)
	}
}

// TestDeniedEvenWithFreshToken: a token that cannot even look itself up
// gets one new login; when the fresh token is refused too, that is final
// for this token, and later attempts do not log in again.
func TestDeniedEvenWithFreshToken(t *testing.T) {
	v := newScriptedVault()
	v.lookup = func(w http.ResponseWriter) bool { vaultErr(w, 403, "permission denied"); return true }
	v.sign = func(w http.ResponseWriter, n int) bool { vaultErr(w, 403, "permission denied"); return true }
	srv := httptest.NewServer(v)
	defer srv.Close()
	c, _ := newTestClient(t, []string{srv.URL}, nil)
	for range 4 {
		var denied *DeniedError
		if _, err := c.Obtain(t.Context(), signReq); !errors.As(err, &denied) {
			t.Fatalf("err = %v, want a policy denial", err)
		}
	}
	if n := v.count("/v1/auth/approle/login"); n != 2 {
		t.Errorf("%d logins, want 2 (the first, and one to rule out a dead token)", n)
	}
}

// TestRevokedTokenLogsInAgain: a 403 on a dead token is cured by one login.
func TestRevokedTokenLogsInAgain(t *testing.T) {
	v := newScriptedVault()
	srv := httptest.NewServer(v)
	defer srv.Close()
	c, _ := newTestClient(t, []string{srv.URL}, nil)
	if _, err := c.Obtain(t.Context(), signReq); err != nil {
		t.Fatal(err)
	}
	v.revoke("tok-1")
	if _, err := c.Obtain(t.Context(), signReq); err != nil {
		t.Fatalf("after revocation: %v", err)
	}
	if n := v.count("/v1/auth/approle/login"); n != 2 {
		t.Errorf("%d logins, want 2", n)
	}
}

// closedAddr is an address where nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()
	return addr
}

// TestFailoverMovesOnAndSticks: with address = [down, b, c], requests go to
// b, stay on b while it works, and move to c once b answers 503 (sealed).
func TestFailoverMovesOnAndSticks(t *testing.T) {
	vb, vc := newScriptedVault(), newScriptedVault()
	sealed := false
	var mu sync.Mutex
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s := sealed
		mu.Unlock()
		if s {
			vaultErr(w, 503, "Vault is sealed")
			return
		}
		vb.ServeHTTP(w, r)
	}))
	defer b.Close()
	cs := httptest.NewServer(vc)
	defer cs.Close()
	client, logs := newTestClient(t, []string{closedAddr(t), b.URL, cs.URL}, nil)
	for range 3 {
		if _, err := client.Obtain(t.Context(), signReq); err != nil {
			t.Fatalf("with the first address down: %v", err)
		}
	}
	if vb.count("/v1/pki/sign/web") != 3 || vc.count("/v1/pki/sign/web") != 0 {
		t.Fatalf("signs b=%d c=%d, want all 3 on b", vb.count("/v1/pki/sign/web"), vc.count("/v1/pki/sign/web"))
	}
	mu.Lock()
	sealed = true
	mu.Unlock()
	if _, err := client.Obtain(t.Context(), signReq); err == nil || !Transient(err) {
		t.Fatalf("sealed node: err = %v, want a transient error", err)
	}
	// The token from b is unknown to c's scripted store; a real cluster
	// shares it. Count c's sign attempts, whatever their answer.
	client.Obtain(t.Context(), signReq)
	if vc.count("/v1/auth/approle/login")+vc.count("/v1/pki/sign/web") == 0 {
		t.Error("after b answered 503 the next request did not go to c")
	}
	if !strings.Contains(logs.String(), "switching to the next one") {
		t.Errorf("no log line about the switch:\n%s", logs)
	}
}

// TestFailoverOnHang: an address that accepts and never answers costs one
// timed-out request; the next goes to the next address.
func TestFailoverOnHang(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c) // read forever, answer never
		}
	}()
	v := newScriptedVault()
	srv := httptest.NewServer(v)
	defer srv.Close()
	c, _ := newTestClient(t, []string{"http://" + l.Addr().String(), srv.URL}, func(cfg *config.Vault) { cfg.Timeout = 300 * time.Millisecond })
	if _, err := c.Obtain(t.Context(), signReq); err == nil {
		t.Fatal("a hung vault gave an answer")
	}
	// The failed login holds further logins back for a moment (the
	// session's own backoff); then they go to the next address.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := c.Obtain(t.Context(), signReq)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the hang: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := v.count("/v1/auth/approle/login"); n != 1 {
		t.Errorf("the working address saw %d logins, want 1", n)
	}
}

// TestWrappedSecretID: the wrapping token is looked up, checked and
// unwrapped once; logins use the secret_id from memory; a used token and a
// token made by something other than a secret-id request are clear errors.
func TestWrappedSecretID(t *testing.T) {
	v := newScriptedVault()
	v.wrapped["wrap-1"] = "auth/approle/role/web/secret-id"
	v.wrapped["wrap-evil"] = "sys/wrapping/wrap"
	srv := httptest.NewServer(v)
	defer srv.Close()
	dir := t.TempDir()
	wrapFile := filepath.Join(dir, "wrapped")
	os.WriteFile(wrapFile, []byte("wrap-1\n"), 0o600)
	wrapped := func(cfg *config.Vault) {
		cfg.Auth[0].SecretIDFile = wrapFile
		cfg.Auth[0].SecretIDWrapped = true
	}
	c, logs := newTestClient(t, []string{srv.URL}, wrapped)
	if err := c.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Obtain(t.Context(), signReq); err != nil {
			t.Fatal(err)
		}
		c.session.invalidate(c.session.gen) // force a fresh login each time
	}
	if n := v.count("/v1/sys/wrapping/unwrap"); n != 1 {
		t.Errorf("unwrapped %d times, want once", n)
	}
	if n := v.count("/v1/auth/approle/login"); n != 2 {
		t.Errorf("%d logins, want 2 with the secret_id kept in memory", n)
	}
	if strings.Contains(logs.String(), "wrap-1") || strings.Contains(logs.String(), "the-secret-id") {
		t.Errorf("logs hold the wrapping token or secret_id:\n%s", logs)
	}

	// A second agent given the same (now used) token.
	c2, _ := newTestClient(t, []string{srv.URL}, wrapped)
	err := c2.Prepare(t.Context())
	var we *WrappingError
	if !errors.As(err, &we) || !strings.Contains(err.Error(), "was already unwrapped or has expired; provision a new one") {
		t.Fatalf("used token: err = %v", err)
	}
	if _, err := c2.Obtain(t.Context(), signReq); !errors.As(err, &we) {
		t.Errorf("login with a used wrapping token: err = %v, want the same clear error", err)
	}

	os.WriteFile(wrapFile, []byte("wrap-evil"), 0o600)
	c3, _ := newTestClient(t, []string{srv.URL}, wrapped)
	if err := c3.Prepare(t.Context()); !errors.As(err, &we) || !strings.Contains(err.Error(), `creation path is "sys/wrapping/wrap"`) {
		t.Fatalf("foreign wrapping token: err = %v", err)
	}
	if _, ok := v.wrapped["wrap-evil"]; !ok {
		t.Error("a wrapping token with the wrong creation path was unwrapped (used up)")
	}
}

// TestRedirectToPlainHTTPRefused: Vault over https answering with a
// redirect to http:// must not get the request (and its token) sent in
// clear.
func TestRedirectToPlainHTTPRefused(t *testing.T) {
	var plainHits int
	var mu sync.Mutex
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		plainHits++
		mu.Unlock()
		newScriptedVault().ServeHTTP(w, r)
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer tlsSrv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644)
	c, _ := newTestClient(t, []string{tlsSrv.URL}, func(cfg *config.Vault) { cfg.CACert = caFile })
	_, err := c.Obtain(t.Context(), signReq)
	if err == nil || !strings.Contains(err.Error(), "protocol downgrade") {
		t.Fatalf("err = %v, want a refused downgrade", err)
	}
	if plainHits != 0 {
		t.Errorf("%d requests reached the plain-http server", plainHits)
	}
}

// TestTLSFailsClosed: VAULT_SKIP_VERIFY in the environment does not turn
// verification off; only tls_skip_verify in the config does.
func TestTLSFailsClosed(t *testing.T) {
	srv := httptest.NewTLSServer(newScriptedVault())
	defer srv.Close()
	t.Setenv("VAULT_SKIP_VERIFY", "1")
	t.Setenv("VAULT_CACERT", "")
	t.Setenv("VAULT_AGENT_ADDR", "http://127.0.0.1:1") // must not reroute either
	c, _ := newTestClient(t, []string{srv.URL}, nil)
	_, err := c.Obtain(t.Context(), signReq)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unknown CA with VAULT_SKIP_VERIFY=1: err = %v, want a verification failure", err)
	}
	c, logs := newTestClient(t, []string{srv.URL}, func(cfg *config.Vault) { cfg.TLSSkipVerify = true })
	if _, err := c.Obtain(t.Context(), signReq); err != nil {
		t.Fatalf("with tls_skip_verify = true: %v", err)
	}
	if !strings.Contains(logs.String(), "TLS verification of vault is OFF") {
		t.Error("opting out of TLS verification was not logged as a warning")
	}
}

// TestClientCertSourceFollowsRotation: the pair is read at each handshake,
// and a replaced file is noticed once. Missing files make a handshake
// without a certificate (the other auth methods still reach Vault), and
// the check cert auth's login makes names the file.
func TestClientCertSourceFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	a := config.Auth{ClientCert: filepath.Join(dir, "id.crt"), ClientKey: filepath.Join(dir, "id.key")}
	s := newClientCertSource(a)
	if got, err := s.get(nil); err != nil || got == nil || len(got.Certificate) != 0 {
		t.Fatalf("missing files: handshake gets %v, %v; want no certificate and no error", got, err)
	}
	if _, err := s.check(); err == nil || !strings.Contains(err.Error(), "id.crt") {
		t.Fatalf("missing files: check = %v, want an error naming the file", err)
	}
	writePair(t, a, "first")
	s.rotated()
	got, err := s.get(nil)
	if err != nil || leafCN(t, got) != "first" {
		t.Fatalf("first pair: %v %v", got, err)
	}
	if s.rotated() {
		t.Error("rotated() with no change")
	}
	writePair(t, a, "second")
	if !s.rotated() {
		t.Error("a replaced certificate was not noticed")
	}
	if s.rotated() {
		t.Error("one replacement noticed twice")
	}
	if got, _ := s.get(nil); leafCN(t, got) != "second" {
		t.Errorf("after rotation the handshake gets %q", leafCN(t, got))
	}
}

func writePair(t *testing.T, a config.Auth, cn string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	// Replace by rename, as certkeeper does.
	for path, data := range map[string][]byte{
		a.ClientKey:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		a.ClientCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	} {
		if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
}

func leafCN(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	if c == nil || len(c.Certificate) == 0 {
		return ""
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

// TestRedirectToAConfiguredAddressIsFollowed: a standby that cannot
// forward redirects to the active node, which may be one of the configured
// addresses. The redirect must reach it, not be routed back to the
// standby.
func TestRedirectToAConfiguredAddressIsFollowed(t *testing.T) {
	active := newScriptedVault()
	var mu sync.Mutex
	sealedOnce := true
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := sealedOnce && strings.Contains(r.URL.Path, "/sign/")
		if first {
			sealedOnce = false
		}
		mu.Unlock()
		if first {
			vaultErr(w, 503, "Vault is sealed")
			return
		}
		active.ServeHTTP(w, r)
	}))
	defer a.Close()
	standbyHits := 0
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		standbyHits++
		mu.Unlock()
		http.Redirect(w, r, a.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer b.Close()
	c, _ := newTestClient(t, []string{a.URL, b.URL}, nil)
	if _, err := c.Obtain(t.Context(), signReq); err == nil {
		t.Fatal("the 503 was not reported")
	}
	if _, err := c.Obtain(t.Context(), signReq); err != nil {
		t.Fatalf("redirect from the standby to the first address: %v", err)
	}
	if standbyHits != 1 || active.count("/v1/pki/sign/web") != 1 {
		t.Errorf("standby hits %d, signs on the active %d; want the request to go to the standby and follow its redirect", standbyHits, active.count("/v1/pki/sign/web"))
	}
}

// TestNoTokenInDebugLogs: a whole client lifecycle at debug level (login,
// token renewals, a token revoked behind the agent's back and the login
// that follows, a request Vault refuses, a login Vault refuses) never puts
// a token or the secret_id in a log line or an error; logins are named by
// their accessor. TestNoSecretsAnywhere proves the same against Vault in
// minutes; this one fails in seconds.
func TestNoTokenInDebugLogs(t *testing.T) {
	v := newScriptedVault()
	v.tokenPrefix = "hvs.CAESIJxqUtUbb8QuvV8xC6jAXnAdAdm0a9Ss-"
	v.lease, v.renewable = 2, true // the lifetime watcher renews within a second or two
	srv := httptest.NewServer(v)
	defer srv.Close()
	c, logs := newTestClient(t, []string{srv.URL}, nil)
	var errs []string
	obtain := func() {
		if _, err := c.Obtain(t.Context(), signReq); err != nil {
			errs = append(errs, err.Error())
		}
	}
	obtain()
	waitUntil(t, "a token renewal", func() bool { return v.count("/v1/auth/token/renew-self") >= 1 })
	v.revoke(v.tokenPrefix + "1")
	obtain() // 403, then a new login
	v.mu.Lock()
	v.sign = func(w http.ResponseWriter, _ int) bool {
		vaultErr(w, 400, "common name web.example.internal not allowed by this role")
		return true
	}
	v.secret = "another-secret-id"
	v.mu.Unlock()
	obtain() // refused
	c.session.invalidate(c.session.gen)
	obtain() // login refused

	out := logs.String() + "\n" + strings.Join(errs, "\n")
	if v.count("/v1/auth/approle/login") < 3 || len(errs) < 2 || !strings.Contains(out, "accessor=acc-2") {
		t.Fatalf("the lifecycle did not run: %d logins, errors %q, logs:\n%s", v.count("/v1/auth/approle/login"), errs, logs)
	}
	for i := 1; i <= v.count("/v1/auth/approle/login"); i++ {
		if tok := fmt.Sprintf("%s%d", v.tokenPrefix, i); strings.Contains(out, tok) {
			t.Errorf("token %d is in the logs or an error", i)
		}
	}
	if strings.Contains(out, v.tokenPrefix) || strings.Contains(out, "the-secret-id") {
		t.Errorf("a token or the secret_id is in the logs or an error:\n%s", out)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
