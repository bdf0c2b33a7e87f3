package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/certkeeper/certkeeper/config"
)

// outputLimit is how much of a command's output is kept for the error
// message: enough for nginx -t or apachectl to say what is wrong.
const outputLimit = 2048

// rawOutputLimit is how much is kept before secrets are removed: more
// than outputLimit, so a key or token that the final cut would halve is
// still seen whole and removed.
const rawOutputLimit = 16 << 10

// runCommand runs argv and waits at most timeout. The command gets its own
// process group, so a timeout kills whatever it started as well, not just
// the shell at its top, and only the harmless part of certkeeper's
// environment (childEnv), plus extra (what changed: hooks.go). Its output,
// which errors, logs, status and services.json show, is cleared of keys,
// tokens and secret values.
func runCommand(ctx context.Context, argv []string, timeout time.Duration, extra ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	env, secrets := childEnv(os.Environ())
	// A nil Env would mean "inherit everything".
	cmd.Env = append(append([]string{}, env...), extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A daemon the command started may hold its output open forever.
	cmd.WaitDelay = time.Second
	out := &tailBuffer{limit: rawOutputLimit, secrets: secrets}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s did not finish within %s; killed it and its process group%s", quote(argv), timeout, out.suffix())
	case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success():
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w%s", quote(argv), err, out.suffix())
	}
	return nil
}

func quote(argv []string) string {
	return strings.Join(argv, " ")
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	limit   int
	buf     []byte
	cut     bool     // bytes were dropped from the front
	secrets []string // values to remove (childEnv)
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = b.buf[over:]
		b.cut = true
	}
	return len(p), nil
}

// suffix is the output's last outputLimit bytes, on one line, without
// secrets, to append to an error.
func (b *tailBuffer) suffix() string {
	data := b.buf
	if b.cut {
		// The first line may be the end of a secret whose start was
		// dropped: not enough left to recognise, so it goes.
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		} else {
			data = nil
		}
	}
	data = redact(data, b.secrets)
	if len(data) > outputLimit {
		data = data[len(data)-outputLimit:]
	}
	s := strings.Join(strings.Fields(string(bytes.ToValidUTF8(data, nil))), " ")
	if s == "" {
		return ""
	}
	return ": " + s
}

// reloadService reloads s; a reload command is told what h says. ran is
// false when s has a pid file and no process runs under it: a server that
// is not running reads the new files when it starts, so that is not a
// failure.
func reloadService(ctx context.Context, s config.Service, h hook) (ran bool, err error) {
	if s.PIDFile != "" {
		pid, ok, err := running(s.PIDFile)
		if err != nil || !ok {
			return false, err
		}
		if s.Reload == nil {
			// The pid is read now, not at start: servers get new pids on
			// restart and certkeeper may outlive many of them.
			if err := syscall.Kill(pid, s.Signal); err != nil {
				return false, fmt.Errorf("sending SIG%s to pid %d from %s: %w", s.SignalName, pid, s.PIDFile, err)
			}
			return true, nil
		}
	}
	return true, runHook(ctx, s.Reload, s.Timeout, h)
}

// running reads a pid file and says whether its process is alive.
func running(pidFile string) (pid int, ok bool, err error) {
	data, err := os.ReadFile(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading pid file: %w", err)
	}
	if strings.TrimSpace(string(data)) == "" {
		// `nginx -t` leaves an empty pid file when nginx is not running.
		return 0, false, nil
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		// Never signal init or, with a negative number, a process group.
		return 0, false, fmt.Errorf("pid file %s holds %q, not a process id", pidFile, strings.TrimSpace(string(data)))
	}
	switch err := syscall.Kill(pid, 0); {
	case err == nil, errors.Is(err, syscall.EPERM):
		return pid, true, nil
	case errors.Is(err, syscall.ESRCH):
		return pid, false, nil
	default:
		return 0, false, fmt.Errorf("checking pid %d from %s: %w", pid, pidFile, err)
	}
}
