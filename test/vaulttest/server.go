// Package vaulttest runs a real HashiCorp Vault server (bin/vault, built by
// `make vault`) on 127.0.0.1 and bootstraps the PKI and AppRole setup that
// certkeeper talks to. It never mocks Vault: what passes here passes against
// the genuine server.
//
// Launch, Bootstrap and CreateAppRole work without package testing so a demo
// program can use them; New and the methods taking a testing.TB are thin
// wrappers that fail the test instead of returning errors.
//
// The package touches only the working directory it is given (config, data,
// log) and the Vault child processes it starts.
package vaulttest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"
)

const (
	modulePath = "github.com/certkeeper/certkeeper"
	binEnv     = "CERTKEEPER_VAULT_BIN"

	devRootToken = "root"
	readyTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
	// rebindTimeout bounds how long Start waits for the old port to be free.
	rebindTimeout = 5 * time.Second
	logTailLines  = 40
)

// Binary returns the path of the Vault server binary: $CERTKEEPER_VAULT_BIN
// if set, otherwise bin/vault at the root of the certkeeper module found by
// walking up from the working directory.
func Binary() (string, error) {
	if p := os.Getenv(binEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("vault binary from $%s: %w", binEnv, err)
		}
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding vault binary: %w", err)
	}
	root, err := moduleRoot(wd)
	if err != nil {
		return "", fmt.Errorf("finding vault binary: %w (or set $%s)", err, binEnv)
	}
	p := filepath.Join(root, "bin", "vault")
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("vault binary %s is missing: run `make vault` in %s first", p, root)
		}
		return "", fmt.Errorf("vault binary: %w", err)
	}
	return p, nil
}

// moduleRoot walks up from dir to the go.mod that declares certkeeper's
// module. Nested modules (test/vaultserver) have their own go.mod, so the
// first go.mod found is not necessarily the right one.
func moduleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if modulePathOf(filepath.Join(d, "go.mod")) == modulePath {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod for module %s above %s", modulePath, dir)
		}
	}
}

// modulePathOf returns the module path declared in a go.mod, or "" if the
// file is missing or has none.
func modulePathOf(gomod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// Options choose how the server keeps its state.
type Options struct {
	// Persistent uses file storage under Dir, initialised with a single
	// unseal key, so Stop and Start keep PKI, AppRoles and tokens. Otherwise
	// the server runs in -dev mode: in memory, root token "root".
	Persistent bool
	// Dir holds the config, data and vault.log. Launch creates a temporary
	// directory when empty; the caller then removes it (see Server.Dir).
	Dir string
	// TLS adds a second listener that serves HTTPS with a certificate from
	// a throwaway test CA (Server.TLSAddr, Server.TLSCA). Vault asks for
	// client certificates there, which cert auth needs.
	TLS bool
}

// Server is a running (or stopped) Vault child process. Its methods are not
// safe for concurrent use.
type Server struct {
	Addr      string      // e.g. "http://127.0.0.1:41234"
	RootToken string      // "root" in dev mode
	Client    *api.Client // root token, MaxRetries 0
	// TLSAddr and TLSCA are set with Options.TLS: the https:// address and
	// the CA that signed the listener's certificate.
	TLSAddr string
	TLSCA   *TestCA

	bin        string
	dir        string
	port       int
	persistent bool
	unsealKey  string
	logPath    string
	proc       *process // nil while stopped
	tlsPort    int
	tlsCert    string
	tlsKey     string
}

// process is one run of the binary. err is valid once done is closed.
type process struct {
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
	logOffset int64 // where this run's output starts in vault.log
}

// Launch starts Vault on a free 127.0.0.1 port and returns once
// /v1/sys/health answers 200, i.e. the server is unsealed and active.
// ctx bounds only the start-up; the server runs until Stop or Kill.
func Launch(ctx context.Context, opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "vaulttest-"); err != nil {
			return nil, fmt.Errorf("creating vault dir: %w", err)
		}
	}
	s := &Server{
		bin:        bin,
		dir:        dir,
		persistent: opts.Persistent,
		logPath:    filepath.Join(dir, "vault.log"),
	}
	if !s.persistent {
		s.RootToken = devRootToken
	}
	if opts.TLS {
		if err := s.setupTLS(); err != nil {
			return nil, err
		}
	}

	// The free port is found by binding and closing, so another process can
	// take it in between: retry once on a fresh port.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		s.Addr = fmt.Sprintf("http://127.0.0.1:%d", s.port)
		err = s.start(ctx)
		if err == nil || !errors.Is(err, errAddrInUse) || attempt == 1 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Start restarts a stopped server on the same address. With Persistent it
// unseals the existing data, so every mount, role and token survives; in dev
// mode the new server starts empty.
func (s *Server) Start(ctx context.Context) error {
	if s.proc != nil {
		return fmt.Errorf("starting vault on %s: already running", s.Addr)
	}
	// The old socket may linger briefly after a stop; keep retrying the same
	// port, since clients under test were configured with this address.
	deadline := time.Now().Add(rebindTimeout)
	for {
		err := s.start(ctx)
		if err == nil || !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restarting vault on %s: %w", s.Addr, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM and waits for the process to exit, killing it after 10s.
// The address stays reserved in s for Start. Stopping a stopped server is a
// no-op, so tests may Stop explicitly and still rely on cleanup.
func (s *Server) Stop() error {
	p := s.proc
	if p == nil {
		return nil
	}
	defer func() { s.proc = nil }()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping vault: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("stopping vault: no exit within %s of SIGTERM, killed it", stopTimeout)
}

// Kill sends SIGKILL, as a crash would, and reaps the process.
func (s *Server) Kill() error {
	p := s.proc
	if p == nil {
		return nil
	}
	defer func() { s.proc = nil }()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing vault: %w", err)
	}
	<-p.done
	return nil
}

// PID is the running server's process id (0 while stopped), so a test can
// read what the server costs (its CPU time in /proc).
func (s *Server) PID() int {
	if s.proc == nil || s.proc.cmd.Process == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Dir is the directory holding the server's config, data and vault.log.
func (s *Server) Dir() string { return s.dir }

// LogTail returns the last lines the server wrote to vault.log.
func (s *Server) LogTail() string { return tail(s.logPath, 0, logTailLines) }

// NewClient returns an API client for addr with the given token. It starts
// from api.DefaultConfig but discards what the caller's environment would
// otherwise leak in: VAULT_TOKEN, VAULT_NAMESPACE, retries and proxies.
func NewClient(addr, token string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault client config: %w", cfg.Error)
	}
	cfg.Address = addr
	// Retries would hide the very failures integration tests look for.
	cfg.MaxRetries = 0
	if tr, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		tr.Proxy = nil
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetToken(token)
	c.ClearNamespace()
	return c, nil
}

var errAddrInUse = errors.New("address already in use")

// start runs the binary once on s.port and waits until it is ready.
func (s *Server) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()

	args, err := s.args()
	if err != nil {
		return err
	}
	p, err := spawn(s.bin, args, s.dir, s.logPath)
	if err != nil {
		return err
	}
	s.proc = p

	if err := s.waitReady(ctx, p); err != nil {
		_ = s.Kill()
		logTail := tail(s.logPath, p.logOffset, logTailLines)
		if strings.Contains(logTail, "address already in use") {
			err = fmt.Errorf("%w: %w", errAddrInUse, err)
		}
		return fmt.Errorf("vault on %s did not become ready: %w\n--- last lines of %s ---\n%s",
			s.Addr, err, s.logPath, logTail)
	}
	return nil
}

// args returns the command line for this server, writing its config file
// when persistent.
func (s *Server) args() ([]string, error) {
	listen := fmt.Sprintf("127.0.0.1:%d", s.port)
	if !s.persistent {
		args := []string{"server", "-dev",
			"-dev-root-token-id=" + devRootToken,
			"-dev-listen-address=" + listen,
			"-dev-no-store-token",
		}
		if s.tlsPort != 0 {
			// Dev mode merges listeners from -config with its own.
			path := filepath.Join(s.dir, "tls-listener.hcl")
			if err := os.WriteFile(path, []byte(s.tlsListener()), 0o600); err != nil {
				return nil, fmt.Errorf("writing vault tls listener config: %w", err)
			}
			args = append(args, "-config="+path)
		}
		return args, nil
	}
	cfg := fmt.Sprintf(`storage "file" {
  path = %q
}
listener "tcp" {
  address     = %q
  tls_disable = true
}
disable_mlock = true
api_addr      = %q
ui            = false
`, filepath.Join(s.dir, "data"), listen, s.Addr) + s.tlsListener()
	path := filepath.Join(s.dir, "vault.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("writing vault config: %w", err)
	}
	return []string{"server", "-config=" + path}, nil
}

// childEnv is our environment without VAULT_* (a developer's VAULT_TOKEN or
// VAULT_ADDR must not steer the server) and with HOME in dir, so nothing
// touches the real ~/.vault-token.
func childEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+dir)
}

// waitReady polls until sys/health answers 200, initialising and unsealing a
// persistent server on the way.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	unsealed := !s.persistent
	for code := 0; code != http.StatusOK; {
		select {
		case <-p.done:
			return fmt.Errorf("vault exited: %w", p.err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for sys/health: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		var err error
		if code, err = healthCode(ctx, hc, s.Addr); err != nil {
			continue // not listening yet
		}
		if code != http.StatusOK && !unsealed {
			if err := s.unseal(ctx); err != nil {
				return err
			}
			unsealed = true
		}
	}
	if s.Client == nil {
		c, err := NewClient(s.Addr, s.RootToken)
		if err != nil {
			return err
		}
		s.Client = c
	}
	return nil
}

// healthCode returns the status of GET /v1/sys/health: 200 active, 429
// standby, 501 not initialised, 503 sealed.
func healthCode(ctx context.Context, hc *http.Client, addr string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/v1/sys/health", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// unseal initialises the storage on first start, keeping the only key share
// and the root token in s, then unseals with that key.
func (s *Server) unseal(ctx context.Context) error {
	c, err := NewClient(s.Addr, "")
	if err != nil {
		return err
	}
	initialized, err := c.Sys().InitStatusWithContext(ctx)
	if err != nil {
		return fmt.Errorf("reading init status: %w", err)
	}
	if !initialized {
		resp, err := c.Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return fmt.Errorf("initialising vault: %w", err)
		}
		s.unsealKey, s.RootToken = resp.Keys[0], resp.RootToken
	}
	if s.unsealKey == "" {
		return fmt.Errorf("vault data in %s is already initialised but its unseal key is unknown", s.dir)
	}
	st, err := c.Sys().UnsealWithContext(ctx, s.unsealKey)
	if err != nil {
		return fmt.Errorf("unsealing vault: %w", err)
	}
	if st.Sealed {
		return fmt.Errorf("unsealing vault: still sealed after the only key share")
	}
	return nil
}

// freePort asks the kernel for an unused port P on 127.0.0.1 such that P+1
// is free too: Vault puts its cluster listener on P+1 in both modes, and two
// test servers must not collide there.
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		cl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l.Close()
		if err == nil {
			cl.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("finding a free port: no P with P+1 free after 20 tries")
}

// tail returns the last n lines of path from byte offset on, for error
// messages; it never fails, since it only decorates another error.
func tail(path string, offset int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if offset > 0 && offset <= int64(len(b)) {
		b = b[offset:]
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "(vault wrote nothing)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// spawn starts bin with args in dir, appending its output to logPath, and
// reaps it in the background. The process remembers where its own output
// starts in the log, for error messages.
func spawn(bin string, args []string, dir, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening vault log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor
	fi, err := logf.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening vault log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv(dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), logOffset: fi.Size()}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}
