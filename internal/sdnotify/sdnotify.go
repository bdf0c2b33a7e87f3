// Package sdnotify speaks systemd's service notification protocol: a
// datagram to $NOTIFY_SOCKET saying READY=1, STOPPING=1 or WATCHDOG=1. It
// is a few lines, so certkeeper carries it rather than a dependency.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends notifications to the service manager. The zero value (no
// socket) does nothing, so the agent runs the same without systemd.
type Notifier struct {
	socket string
}

// FromEnv reads $NOTIFY_SOCKET. systemd sets it for Type=notify services.
func FromEnv() *Notifier {
	return &Notifier{socket: os.Getenv("NOTIFY_SOCKET")}
}

// Enabled reports whether a service manager is listening.
func (n *Notifier) Enabled() bool { return n != nil && n.socket != "" }

// Send sends one notification, e.g. "READY=1".
func (n *Notifier) Send(state string) error {
	if !n.Enabled() {
		return nil
	}
	addr := n.socket
	if addr[0] == '@' {
		// An abstract socket: Go spells it with a leading NUL.
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notifying systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notifying systemd: %w", err)
	}
	return nil
}

// WatchdogInterval is how often systemd expects WATCHDOG=1, from
// $WATCHDOG_USEC (and $WATCHDOG_PID, when set, must be this process); zero
// when no watchdog is configured.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond
}

// Watchdog pings at half the interval systemd asked for until ctx ends.
// alive is asked before each ping: a stuck agent stops pinging and systemd
// restarts it.
func (n *Notifier) Watchdog(ctx context.Context, interval time.Duration, alive func() bool) {
	if !n.Enabled() || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive == nil || alive() {
				n.Send("WATCHDOG=1")
			}
		}
	}
}
