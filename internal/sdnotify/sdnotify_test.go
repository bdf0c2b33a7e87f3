package sdnotify

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listen is a stand-in for systemd: a datagram socket collecting messages.
func listen(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}

func recv(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no notification arrived")
		return ""
	}
}

func TestSend(t *testing.T) {
	path, msgs := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	n := FromEnv()
	if !n.Enabled() {
		t.Fatal("not enabled with NOTIFY_SOCKET set")
	}
	for _, want := range []string{"READY=1", "STOPPING=1"} {
		if err := n.Send(want); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, msgs); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestDisabledWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := FromEnv().Send("READY=1"); err != nil {
		t.Errorf("Send without a socket: %v", err)
	}
}

func TestWatchdog(t *testing.T) {
	path, msgs := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	iv := WatchdogInterval()
	if iv != 100*time.Millisecond {
		t.Fatalf("interval %v", iv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go FromEnv().Watchdog(ctx, iv, func() bool { return true })
	for range 2 {
		if got := recv(t, msgs); got != "WATCHDOG=1" {
			t.Errorf("got %q", got)
		}
	}
}

func TestWatchdogSilentWhenStuck(t *testing.T) {
	path, msgs := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	FromEnv().Watchdog(ctx, 50*time.Millisecond, func() bool { return false })
	select {
	case m := <-msgs:
		t.Errorf("a stuck agent pinged the watchdog: %q", m)
	default:
	}
}

func TestWatchdogForAnotherPID(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", "1")
	if iv := WatchdogInterval(); iv != 0 {
		t.Errorf("watchdog meant for pid 1 enabled here: %v", iv)
	}
}
