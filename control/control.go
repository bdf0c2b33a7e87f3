// Package control is the one channel to a running certkeeper: HTTP over
// a unix socket in the state directory. `certkeeper rotate` and
// `certkeeper once` ask the daemon to do the work instead of racing it,
// and `certkeeper status` asks it what it knows before falling back to
// the files on disk. The
// socket is mode 0600 inside the 0700 state directory: only who may read
// the keys may ask for new ones.
//
// Each kind of request is one field of Handlers, one line in Serve and
// one client function; a process answers only the kinds it was given.
//
// The package creates and removes the socket and nothing else.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/vault"
)

// maxSocketPath is the longest path a unix socket can have on Linux.
const maxSocketPath = 107

// maxBody bounds requests and answers.
const maxBody = 16 << 20

// RotateRequest asks for forced renewals; no names means every
// certificate.
type RotateRequest struct {
	Names  []string `json:"names,omitempty"`
	Spread Duration `json:"spread,omitempty"`
}

// RotateResponse is the daemon's answer.
type RotateResponse struct {
	Scheduled []agent.Scheduled `json:"scheduled"`
}

// StatusRequest asks what the daemon knows; it has no parameters yet.
type StatusRequest struct{}

// StatusResponse is what the running daemon knows of its certificates.
type StatusResponse struct {
	// Config is the absolute path of the config file the daemon runs.
	Config       string         `json:"config"`
	Certificates []agent.Status `json:"certificates"`
	// Telemetry is the state of the telemetry endpoint; nil when it is
	// off.
	Telemetry *TelemetryStatus `json:"telemetry,omitempty"`
	// Auth is the chain of Vault auth methods and which one is in use.
	Auth []vault.AuthMethodStatus `json:"auth,omitempty"`
}

// TelemetryStatus says whether the daemon's telemetry endpoint listens.
// While it cannot bind its address, whatever answers there (/metrics,
// /readyz, /v1/status) is another process.
type TelemetryStatus struct {
	Listen    string `json:"listen"`
	Listening bool   `json:"listening"`
	// Failures counts failed attempts to listen since the daemon started.
	Failures int `json:"listen_failures"`
	// Problem says why it does not listen, and since when; empty while
	// it listens.
	Problem string `json:"problem,omitempty"`
}

// OnceRequest asks the daemon to do what `certkeeper once` does: a pass
// for every certificate and trust bundle, then one batch of reloads.
type OnceRequest struct {
	// Config is the absolute path of the caller's config file; a daemon
	// running another one refuses.
	Config string `json:"config"`
}

// OnceResponse is what a `certkeeper once` did, as the command prints it:
// the same whether the running daemon did the passes (its answer to a
// once request) or the command did them alone.
type OnceResponse struct {
	Certificates []CertificateOutcome `json:"certificates"`
	Bundles      []BundleOutcome      `json:"trust_bundles"`
	Services     []ServiceOutcome     `json:"services"`
}

// CertificateOutcome is what one pass did for one certificate.
type CertificateOutcome struct {
	Name string `json:"name"`
	// Action is what the pass did (agent.Issued, Restored or Kept);
	// empty when Error says why it failed.
	Action   string    `json:"action,omitempty"`
	Reason   string    `json:"reason,omitempty"` // why a new one was needed
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	RenewAt  time.Time `json:"renew_at,omitzero"`
	Restored int       `json:"restored,omitempty"` // files rewritten
	Error    string    `json:"error,omitempty"`
	// RolledBack says which service's check failed after the pass wrote,
	// and why: the files were rolled back, so what Action says was
	// written is not on disk.
	RolledBack string `json:"rolled_back,omitempty"`
}

// BundleOutcome is what one refresh did for one trust bundle.
type BundleOutcome struct {
	Name       string `json:"name"`
	Written    bool   `json:"written,omitempty"`
	CAs        int    `json:"cas"`
	CRLs       int    `json:"crls"`
	Error      string `json:"error,omitempty"`
	RolledBack string `json:"rolled_back,omitempty"` // as in CertificateOutcome
}

// ServiceOutcome is what the batch did for one service.
type ServiceOutcome struct {
	Service string `json:"service"`
	Result  string `json:"result"` // a services.Result* value
	Error   string `json:"error,omitempty"`
}

// Handlers are the requests a process answers. A nil one is refused,
// which clients take as "no daemon answers that".
type Handlers struct {
	Rotate func(RotateRequest) (*RotateResponse, error)
	Status func(StatusRequest) (*StatusResponse, error)
	Once   func(OnceRequest) (*OnceResponse, error)
}

// Duration is a time.Duration written as "90s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("spread %q is not a duration", s)
	}
	*d = Duration(v)
	return nil
}

// Listen claims the control socket of stateDir. It refuses when another
// daemon answers there (two daemons on one state directory would race
// each other's writes) and replaces a socket left by one that died.
func Listen(stateDir string) (net.Listener, error) {
	path := statedir.Dir(stateDir).ControlSocket()
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s is longer than %d bytes, the most a unix socket path can be; use a shorter state_dir", path, maxSocketPath)
	}
	if err := os.MkdirAll(stateDir, statedir.Mode); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if info, err := os.Lstat(path); err == nil {
		if info.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another certkeeper process is running with state_dir %s: a daemon, or a rotate without one (it answers on %s)", stateDir, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale control socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// Serve answers requests on l until ctx ends, then closes l (which
// removes the socket).
func Serve(ctx context.Context, l net.Listener, h Handlers) error {
	mux := http.NewServeMux()
	route(mux, "rotate", h.Rotate)
	route(mux, "status", h.Status)
	route(mux, "once", h.Once)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// route serves POST /v1/<name>: a JSON request in, a JSON answer or
// {"error": ...} out.
func route[Req, Resp any](mux *http.ServeMux, name string, fn func(Req) (*Resp, error)) {
	mux.HandleFunc("POST /v1/"+name, func(w http.ResponseWriter, r *http.Request) {
		if fn == nil {
			writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "this certkeeper process does not answer " + name})
			return
		}
		var req Req
		if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading request: " + err.Error()})
			return
		}
		resp, err := fn(req)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// ErrNoDaemon means no daemon answers on the control socket.
var ErrNoDaemon = errors.New("no certkeeper daemon answers on the control socket")

// Rotate asks the daemon of stateDir to rotate. It returns an error
// wrapping ErrNoDaemon when none runs, so the caller can do the rotation
// itself.
func Rotate(ctx context.Context, stateDir string, req RotateRequest) (*RotateResponse, error) {
	return call[RotateRequest, RotateResponse](ctx, stateDir, "rotate", req, shortCall)
}

// Once asks the daemon of stateDir to do a once for the config at
// configPath and waits, for as long as ctx allows, for what it did. It
// returns an error wrapping ErrNoDaemon when none runs, so the caller can
// do the passes itself.
func Once(ctx context.Context, stateDir, configPath string) (*OnceResponse, error) {
	// The passes may wait for Vault with retries and for checks and
	// reloads: no deadline beyond the caller's.
	return call[OnceRequest, OnceResponse](ctx, stateDir, "once", OnceRequest{Config: canonical(configPath)}, 0)
}

// SameConfig reports whether two spellings of a config path name one
// file.
func SameConfig(a, b string) bool { return canonical(a) == canonical(b) }

// Status asks the daemon of stateDir what it knows. It fails with an
// error wrapping ErrNoDaemon when none runs, and with *OtherConfigError
// when the daemon there runs another config file than configPath.
func Status(ctx context.Context, stateDir, configPath string) (*StatusResponse, error) {
	resp, err := call[StatusRequest, StatusResponse](ctx, stateDir, "status", StatusRequest{}, shortCall)
	if err != nil {
		return nil, err
	}
	if canonical(resp.Config) != canonical(configPath) {
		return nil, &OtherConfigError{Socket: statedir.Dir(stateDir).ControlSocket(), Config: resp.Config, Want: canonical(configPath)}
	}
	return resp, nil
}

// OtherConfigError is a daemon on this state directory that runs another
// config file.
type OtherConfigError struct {
	Socket, Config, Want string
}

func (e *OtherConfigError) Error() string {
	return fmt.Sprintf("the daemon on %s runs %s, not %s", e.Socket, e.Config, e.Want)
}

// canonical makes two spellings of one config path compare equal.
func canonical(p string) string {
	if p == "" {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return p
}

// shortCall bounds a request the daemon answers at once.
const shortCall = 30 * time.Second

// call sends one request to the daemon of stateDir and waits for the
// answer at most timeout (0: as long as ctx allows).
func call[Req, Resp any](ctx context.Context, stateDir, name string, req Req, timeout time.Duration) (*Resp, error) {
	path := statedir.Dir(stateDir).ControlSocket()
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoDaemon
	}
	var dialed atomic.Bool
	hc := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
			dialed.Store(err == nil)
			return c, err
		}},
	}
	defer hc.CloseIdleConnections()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://certkeeper/v1/"+name, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(hreq)
	if err != nil {
		if !dialed.Load() {
			// A socket nobody listens on: the daemon died without
			// removing it.
			return nil, fmt.Errorf("%w (%v)", ErrNoDaemon, err)
		}
		return nil, fmt.Errorf("asking the daemon: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading the daemon's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusNotImplemented {
				return nil, fmt.Errorf("%w: %s", ErrNoDaemon, e.Error)
			}
			return nil, fmt.Errorf("the daemon refused: %s", e.Error)
		}
		return nil, fmt.Errorf("the daemon answered %d", resp.StatusCode)
	}
	var out Resp
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("reading the daemon's answer: %w", err)
	}
	return &out, nil
}
