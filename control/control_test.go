package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/internal/statedir"
)

// rotator answers rotate requests the way the agent's Rotate does.
func rotator(f func(names []string, spread time.Duration) ([]agent.Scheduled, error)) Handlers {
	return Handlers{Rotate: func(req RotateRequest) (*RotateResponse, error) {
		sched, err := f(req.Names, time.Duration(req.Spread))
		if err != nil {
			return nil, err
		}
		return &RotateResponse{Scheduled: sched}, nil
	}}
}

func serve(t *testing.T, dir string, h Handlers) {
	t.Helper()
	l, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Serve(ctx, l, h)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// shortDir keeps socket paths under the unix limit whatever TMPDIR is.
func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/tmp", "ck")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestRotateThroughDaemon(t *testing.T) {
	dir := shortDir(t)
	var gotNames []string
	var gotSpread time.Duration
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	serve(t, dir, rotator(func(names []string, spread time.Duration) ([]agent.Scheduled, error) {
		if slices.Contains(names, "nope") {
			return nil, errors.New("no certificate named nope (configured: web)")
		}
		gotNames, gotSpread = names, spread
		return []agent.Scheduled{{Name: "web", At: at}}, nil
	}))
	info, err := os.Stat(statedir.Dir(dir).ControlSocket())
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", info.Mode(), err)
	}
	resp, err := Rotate(t.Context(), dir, RotateRequest{Names: []string{"web"}, Spread: Duration(90 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotNames, []string{"web"}) || gotSpread != 90*time.Second {
		t.Errorf("daemon got names %v spread %v", gotNames, gotSpread)
	}
	if len(resp.Scheduled) != 1 || !resp.Scheduled[0].At.Equal(at) {
		t.Errorf("response = %+v", resp)
	}
	_, err = Rotate(t.Context(), dir, RotateRequest{Names: []string{"nope"}})
	if err == nil || errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "no certificate named nope") {
		t.Errorf("err = %v, want the daemon's refusal", err)
	}
}

// TestOneDaemonPerStateDir: a second daemon on the same state directory
// is refused while the first answers.
func TestOneDaemonPerStateDir(t *testing.T) {
	dir := shortDir(t)
	serve(t, dir, rotator(func([]string, time.Duration) ([]agent.Scheduled, error) { return nil, nil }))
	if _, err := Listen(dir); err == nil || !strings.Contains(err.Error(), "another certkeeper process is running") {
		t.Errorf("second Listen: %v", err)
	}
}

// TestNoDaemon: without a socket, or with one left by a dead daemon,
// Rotate says no daemon answers, and a new daemon takes the stale socket
// over.
func TestNoDaemon(t *testing.T) {
	dir := shortDir(t)
	if _, err := Rotate(t.Context(), dir, RotateRequest{}); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("no socket: %v", err)
	}
	l, err := net.Listen("unix", statedir.Dir(dir).ControlSocket())
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // as if the daemon was killed
	if _, err := Rotate(t.Context(), dir, RotateRequest{}); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("stale socket: %v", err)
	}
	serve(t, dir, rotator(func([]string, time.Duration) ([]agent.Scheduled, error) { return []agent.Scheduled{{Name: "web"}}, nil }))
	if resp, err := Rotate(t.Context(), dir, RotateRequest{}); err != nil || len(resp.Scheduled) != 1 {
		t.Errorf("after taking over the stale socket: %v, %v", resp, err)
	}
}

func TestSocketPathTooLong(t *testing.T) {
	dir := "/tmp/" + strings.Repeat("d", 110)
	if _, err := Listen(dir); err == nil || !strings.Contains(err.Error(), "use a shorter state_dir") {
		t.Errorf("err = %v", err)
	}
}

// TestStatusThroughDaemon: status reaches the daemon of the state
// directory, is refused when that daemon runs another config file (two
// spellings of one path are the same file), and a process that does not
// answer status counts as no daemon.
func TestStatusThroughDaemon(t *testing.T) {
	dir := shortDir(t)
	cfgPath := filepath.Join(dir, "certkeeper.hcl")
	os.WriteFile(cfgPath, nil, 0o600)
	serve(t, dir, Handlers{Status: func(StatusRequest) (*StatusResponse, error) {
		return &StatusResponse{Config: cfgPath, Certificates: []agent.Status{{Name: "web", State: agent.StateValid}}}, nil
	}})
	resp, err := Status(t.Context(), dir, filepath.Join(dir, ".", "certkeeper.hcl"))
	if err != nil || len(resp.Certificates) != 1 || resp.Certificates[0].Name != "web" {
		t.Fatalf("Status = %+v, %v", resp, err)
	}
	_, err = Status(t.Context(), dir, "/etc/other.hcl")
	var other *OtherConfigError
	if !errors.As(err, &other) || other.Config != cfgPath || !strings.Contains(err.Error(), "runs "+cfgPath+", not /etc/other.hcl") {
		t.Errorf("another config: %v, want an OtherConfigError naming %s", err, cfgPath)
	}

	busy := shortDir(t)
	serve(t, busy, rotator(func([]string, time.Duration) ([]agent.Scheduled, error) { return nil, nil }))
	if _, err := Status(t.Context(), busy, cfgPath); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("a process that does not answer status: %v, want ErrNoDaemon", err)
	}
}

// TestOnceWaitsPastShortCalls: a once request is answered whenever the
// daemon is done, even after the bound of the short requests, with the
// caller's config path made absolute; a process without a once handler
// counts as no daemon.
func TestOnceWaitsPastShortCalls(t *testing.T) {
	dir := shortDir(t)
	var got string
	serve(t, dir, Handlers{Once: func(req OnceRequest) (*OnceResponse, error) {
		got = req.Config
		return &OnceResponse{Certificates: []CertificateOutcome{{Name: "web", Action: "issued", RolledBack: "service nginx failed its check: no"}}}, nil
	}})
	resp, err := Once(t.Context(), dir, "certkeeper.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(got) || filepath.Base(got) != "certkeeper.hcl" {
		t.Errorf("the daemon got config %q, want an absolute path", got)
	}
	if len(resp.Certificates) != 1 || resp.Certificates[0].RolledBack == "" {
		t.Errorf("response = %+v", resp)
	}

	other := shortDir(t)
	serve(t, other, rotator(nil))
	if _, err := Once(t.Context(), other, "certkeeper.hcl"); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("a process that does not answer once: %v, want ErrNoDaemon", err)
	}
}
