//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sample is what one run of one job measured.
type sample struct {
	Job   job
	Round int
	// Elapsed is from process start until every certificate set is on
	// disk (for the floor: until every certificate was issued).
	Elapsed time.Duration
	// CPU is the process's user+system time when the last set landed.
	CPU time.Duration
	// PeakRSS is VmHWM at the end of the idle window; SteadyRSS is VmRSS
	// then.
	PeakRSS, SteadyRSS int64
	// SteadyAnon is the anonymous part of SteadyRSS (RssAnon).
	SteadyAnon int64
	// IdleCPU is the share of one core used during the idle window.
	IdleCPU float64
	// Requests are what Vault saw during the initial pass (start to the
	// end of the idle window); RestartRequests during a restart with
	// valid files on disk.
	Requests, RestartRequests requests
	// Conns is how many TCP connections the initial pass's requests came
	// over.
	Conns int
	// RestartReady is how long a restarted certkeeper took to look at
	// every certificate (0 when not known).
	RestartReady time.Duration
	Valid        int
	Err          string
}

// proc is a child process under measurement.
type proc struct {
	cmd    *exec.Cmd
	start  time.Time
	exited chan struct{}
	log    string
}

func startProc(bin string, args []string, dir, logPath string, stdout io.Writer) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv(dir)
	cmd.Stderr = logf
	cmd.Stdout = logf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), log: logPath}
	if stdout != nil {
		// The floor reports on stdout and waits for stdin to close.
		if _, err := cmd.StdinPipe(); err != nil {
			return nil, err
		}
	}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM and waits, killing after a grace period.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// cleanEnv is our environment without VAULT_* and with HOME in dir, so
// neither agent picks up a developer's token or ~/.vault-token.
func cleanEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+dir)
}

// runJob runs j once in a fresh directory: the initial pass, the idle
// window, then a restart with the files it wrote.
func runJob(ctx context.Context, o *options, bv *benchVault, j job, round int) sample {
	s := sample{Job: j, Round: round}
	dir, err := os.MkdirTemp(o.work, strings.ReplaceAll(j.Tool, "/", "-")+"-")
	if err != nil {
		s.Err = err.Error()
		return s
	}
	// The directory stays until the whole bench ends (main removes the
	// work directory). Removing it here made the next run slower: on an
	// ext4 without a journal, as these VMs have, every file created
	// skips the inodes freed in the last minutes (ext4's
	// recently_deleted), one by one, so thousands of files removed by
	// the harness cost the tool that ran next up to 0.6 ms per file
	// created, more the more files it writes.
	if err := measure(ctx, o, bv, j, dir, &s); err != nil {
		s.Err = err.Error()
		if log, _ := os.ReadFile(filepath.Join(dir, "run.log")); len(log) > 0 {
			s.Err += "\n" + lastLines(string(log), 15)
		}
	}
	return s
}

func measure(ctx context.Context, o *options, bv *benchVault, j job, dir string, s *sample) error {
	l, err := prepare(o, bv, j, dir)
	if err != nil {
		return err
	}
	timeout := o.timeout + time.Duration(j.N)*100*time.Millisecond
	mark := bv.auditMark()

	var done time.Time
	var p *proc
	if j.Tool == toolFloor {
		pr, pw := io.Pipe()
		if p, err = startProc(l.bin, l.args, dir, filepath.Join(dir, "run.log"), pw); err != nil {
			return err
		}
		defer p.stop()
		doneCh := make(chan time.Time, 1)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				if sc.Text() == "done" {
					doneCh <- time.Now()
				}
			}
		}()
		select {
		case done = <-doneCh:
		case <-p.exited:
			return errors.New("floor exited before issuing everything")
		case <-time.After(timeout):
			return fmt.Errorf("floor not done after %s", timeout)
		}
	} else {
		w, err := newWatcher(l.tlsDir, l.sets, l.nonEmpty)
		if err != nil {
			return err
		}
		defer w.close()
		if p, err = startProc(l.bin, l.args, dir, filepath.Join(dir, "run.log"), nil); err != nil {
			return err
		}
		defer p.stop()
		if done, err = w.wait(timeout, p.exited); err != nil {
			return err
		}
	}
	s.Elapsed = done.Sub(p.start)
	if s.CPU, err = procCPU(p.pid()); err != nil {
		return err
	}
	if j.Tool == toolFloor {
		s.PeakRSS, s.SteadyRSS, s.SteadyAnon, err = procMem(p.pid())
		p.stop()
		s.Valid, _ = l.check()
		s.Requests, s.Conns, err = bv.requestsSince(mark)
		return err
	}

	// Idle: let stragglers (a last log line, a journal removal) settle,
	// then watch the process do nothing.
	sleep(ctx, o.settle)
	r0, err := procRuntime(p.pid())
	if err != nil {
		return err
	}
	sleep(ctx, o.idle)
	r1, err := procRuntime(p.pid())
	if err != nil {
		return err
	}
	s.IdleCPU = float64(r1-r0) / float64(o.idle)
	if s.PeakRSS, s.SteadyRSS, s.SteadyAnon, err = procMem(p.pid()); err != nil {
		return err
	}
	if s.Requests, s.Conns, err = bv.requestsSince(mark); err != nil {
		return err
	}
	p.stop()

	// Restart with valid files on disk: what does it ask of Vault?
	mark = bv.auditMark()
	rp, err := startProc(l.bin, l.args, dir, filepath.Join(dir, "restart.log"), nil)
	if err != nil {
		return err
	}
	defer rp.stop()
	if l.readyLine != "" {
		ready, err := waitLogLine(rp, l.readyLine, timeout)
		if err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		s.RestartReady = ready.Sub(rp.start)
		sleep(ctx, time.Second)
	} else {
		// Vault Agent says nothing when its files are already good: give
		// it as long as its first pass took, and at least the restart
		// window.
		sleep(ctx, max(o.restartWindow, s.Elapsed))
	}
	if s.RestartRequests, _, err = bv.requestsSince(mark); err != nil {
		return err
	}
	rp.stop()
	s.Valid, err = l.check()
	if err != nil {
		return fmt.Errorf("%d of %d sets valid: %w", s.Valid, j.N, err)
	}
	return nil
}

// waitLogLine polls the process's own log for a line containing want.
func waitLogLine(p *proc, want string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(p.log); strings.Contains(string(b), want) {
			return time.Now(), nil
		}
		select {
		case <-p.exited:
			return time.Time{}, errors.New("process exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Time{}, fmt.Errorf("no %q in the log after %s", want, timeout)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freeLoopback returns a free 127.0.0.1 address for a pprof listener.
func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// fetch saves url's body to path.
func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
