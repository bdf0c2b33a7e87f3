// Package control is the running daemon's local control channel: HTTP
// over a unix socket in the state directory, so `certkeeper rotate` asks
// the daemon to do a rotation instead of racing it. The socket is mode
// 0600 inside the 0700 state directory: only who may read the keys may
// ask for new ones.
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
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/certkeeper/certkeeper/internal/statedir"
)

// maxSocketPath is the longest path a unix socket can have on Linux.
const maxSocketPath = 107

// Scheduled is when the daemon will start a forced renewal.
type Scheduled struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// RotateRequest asks for forced renewals; no names means every
// certificate.
type RotateRequest struct {
	Names  []string `json:"names,omitempty"`
	Spread Duration `json:"spread,omitempty"`
}

// RotateResponse is the daemon's answer.
type RotateResponse struct {
	Scheduled []Scheduled `json:"scheduled"`
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

// Rotator does rotations for the daemon; the agent is the real one.
type Rotator interface {
	Rotate(names []string, spread time.Duration) ([]Scheduled, error)
}

// RotatorFunc makes a function a Rotator.
type RotatorFunc func(names []string, spread time.Duration) ([]Scheduled, error)

func (f RotatorFunc) Rotate(names []string, spread time.Duration) ([]Scheduled, error) {
	return f(names, spread)
}

// Listen claims the control socket of stateDir. It refuses when another
// daemon answers there (two daemons on one state directory would race
// each other's writes) and replaces a socket left by one that died.
func Listen(stateDir string) (net.Listener, error) {
	path := statedir.Dir(stateDir).ControlSocket()
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s is longer than %d bytes, the most a unix socket path can be; use a shorter state_dir", path, maxSocketPath)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
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
func Serve(ctx context.Context, l net.Listener, r Rotator, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/rotate", func(w http.ResponseWriter, req *http.Request) {
		var body RotateRequest
		if err := json.NewDecoder(io.LimitReader(req.Body, 1<<20)).Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading request: " + err.Error()})
			return
		}
		sched, err := r.Rotate(body.Names, time.Duration(body.Spread))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		log.Info("rotation requested over the control socket", "certificates", len(sched), "spread", time.Duration(body.Spread).String())
		writeJSON(w, http.StatusOK, RotateResponse{Scheduled: sched})
	})
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
	path := statedir.Dir(stateDir).ControlSocket()
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoDaemon
	}
	var dialed atomic.Bool
	hc := &http.Client{
		Timeout: 30 * time.Second,
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
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://certkeeper/v1/rotate", bytes.NewReader(body))
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
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the daemon's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("the daemon refused: %s", e.Error)
		}
		return nil, fmt.Errorf("the daemon answered %d", resp.StatusCode)
	}
	var out RotateResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("reading the daemon's answer: %w", err)
	}
	return &out, nil
}
