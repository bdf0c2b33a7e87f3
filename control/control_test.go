package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/statedir"
)

func serve(t *testing.T, dir string, r Rotator) {
	t.Helper()
	l, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Serve(ctx, l, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	serve(t, dir, RotatorFunc(func(names []string, spread time.Duration) ([]Scheduled, error) {
		if slices.Contains(names, "nope") {
			return nil, errors.New("no certificate named nope (configured: web)")
		}
		gotNames, gotSpread = names, spread
		return []Scheduled{{Name: "web", At: at}}, nil
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
	serve(t, dir, RotatorFunc(func([]string, time.Duration) ([]Scheduled, error) { return nil, nil }))
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
	serve(t, dir, RotatorFunc(func([]string, time.Duration) ([]Scheduled, error) { return []Scheduled{{Name: "web"}}, nil }))
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
