//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/certkeeper/certkeeper/control"
)

// host is one `certkeeper run` process with its own directory: config,
// AppRole credentials, state directory, certificate files and log.
type host struct {
	i      int
	dir    string
	config string
	state  string
	log    string
	certs  []string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error

	// scanned is how far the log has been read; the rest is parsed from
	// it as it grows.
	mu      sync.Mutex
	offset  int64
	partial []byte
	issued  []issuance
	ready   time.Time
	warns   []string // WARN and ERROR lines
}

// issuance is one "certificate issued and written" line.
type issuance struct {
	At     time.Time
	Cert   string
	Serial string
	Reason string
}

var (
	issuedRe = regexp.MustCompile(`^time=(\S+) level=INFO msg="certificate issued and written" cert=(\S+) serial=(\S+) .*reason="?([^"]*)"?$`)
	readyRe  = regexp.MustCompile(`^time=(\S+) level=INFO msg="ready: `)
	warnRe   = regexp.MustCompile(`level=(WARN|ERROR) `)
)

func newHost(root string, i int, addrs []string, roleID, secretID string, certs int, ttl time.Duration) (*host, error) {
	h := &host{i: i, dir: filepath.Join(root, fmt.Sprintf("h%03d", i))}
	h.state = filepath.Join(h.dir, "state")
	h.config = filepath.Join(h.dir, "certkeeper.hcl")
	h.log = filepath.Join(h.dir, "certkeeper.log")
	if err := os.MkdirAll(filepath.Join(h.dir, "tls"), 0o700); err != nil {
		return nil, err
	}
	roleFile, secretFile := filepath.Join(h.dir, "role-id"), filepath.Join(h.dir, "secret-id")
	for path, v := range map[string]string{roleFile: roleID, secretFile: secretID} {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			return nil, err
		}
	}
	// Hosts start at different nodes, as behind a round-robin name: every
	// node takes a share, and standbys forward to the active one.
	var quoted []string
	for k := range addrs {
		quoted = append(quoted, fmt.Sprintf("%q", addrs[(i+k)%len(addrs)]))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir = %q\n", h.state)
	// Off: every host would claim the same default port on loopback.
	b.WriteString("telemetry {\n  listen = \"\"\n}\n")
	fmt.Fprintf(&b, "vault {\n  address = [%s]\n  auth \"approle\" {\n    role_id_file   = %q\n    secret_id_file = %q\n  }\n}\n",
		strings.Join(quoted, ", "), roleFile, secretFile)
	for c := range certs {
		name := fmt.Sprintf("c%d", c)
		h.certs = append(h.certs, name)
		tlsDir := filepath.Join(h.dir, "tls")
		fmt.Fprintf(&b, `certificate %q {
  mount       = "pki_int"
  role        = "ec"
  common_name = "h%03d-%s.example.internal"
  ttl         = %q
  cert_file   = "%s/%s.crt"
  key_file    = "%s/%s.key"
  ca_file     = "%s/%s.ca.pem"
}
`, name, i, name, ttl.String(), tlsDir, name, tlsDir, name, tlsDir, name)
	}
	if err := os.WriteFile(h.config, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return h, nil
}

// start runs `certkeeper run` with its log going straight to a file, so
// the bench copies nothing while the fleet runs.
func (h *host) start(bin string, cred *syscall.Credential) error {
	f, err := os.OpenFile(h.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	h.cmd = exec.Command(bin, "run", "-config", h.config)
	h.cmd.Dir = h.dir
	h.cmd.Stdout, h.cmd.Stderr = f, f
	h.cmd.Env = cleanEnv(h.dir)
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := h.cmd.Start(); err != nil {
		return fmt.Errorf("starting host %d: %w", h.i, err)
	}
	h.exited = make(chan struct{})
	go func() {
		h.err = h.cmd.Wait()
		close(h.exited)
	}()
	return nil
}

func (h *host) running() bool {
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits; it reports a non-zero exit.
func (h *host) stop() error {
	if h.cmd == nil {
		return nil
	}
	if h.running() {
		h.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		h.cmd.Process.Kill()
		<-h.exited
		return fmt.Errorf("host %d: no exit within 30s of SIGTERM", h.i)
	}
	if h.err != nil {
		return fmt.Errorf("host %d: %w", h.i, h.err)
	}
	return nil
}

// scan reads what the log gained since the last call.
func (h *host) scan() error {
	f, err := os.Open(h.log)
	if err != nil {
		return err
	}
	defer f.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := f.Seek(h.offset, io.SeekStart); err != nil {
		return err
	}
	buf, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	h.offset += int64(len(buf))
	buf = append(h.partial, buf...)
	last := bytes.LastIndexByte(buf, '\n')
	if last < 0 {
		h.partial = buf
		return nil
	}
	h.partial = append([]byte(nil), buf[last+1:]...)
	for _, line := range strings.Split(string(buf[:last]), "\n") {
		if m := issuedRe.FindStringSubmatch(line); m != nil {
			at, _ := time.Parse(time.RFC3339Nano, m[1])
			h.issued = append(h.issued, issuance{At: at, Cert: m[2], Serial: normSerial(m[3]), Reason: m[4]})
		} else if m := readyRe.FindStringSubmatch(line); m != nil && h.ready.IsZero() {
			h.ready, _ = time.Parse(time.RFC3339Nano, m[1])
		} else if warnRe.MatchString(line) {
			h.warns = append(h.warns, line)
		}
	}
	return nil
}

// mark is how many issuances and warnings the host has logged so far.
func (h *host) mark() (issued, warns int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.issued), len(h.warns)
}

func (h *host) issuedSince(mark int) []issuance {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]issuance(nil), h.issued[mark:]...)
}

func (h *host) warnsSince(mark int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.warns[mark:]...)
}

// rotate asks the running daemon to rotate every certificate within
// spread, through its control socket, as `certkeeper rotate -spread`
// does.
func (h *host) rotate(ctx context.Context, spread time.Duration) error {
	resp, err := control.Rotate(ctx, h.state, control.RotateRequest{Spread: control.Duration(spread)})
	if err != nil {
		return fmt.Errorf("host %d: rotate: %w", h.i, err)
	}
	if len(resp.Scheduled) != len(h.certs) {
		return fmt.Errorf("host %d: rotate scheduled %d certificates, want %d", h.i, len(resp.Scheduled), len(h.certs))
	}
	return nil
}

// checkFiles says whether every certificate on disk is valid now, pairs
// with its key, chains to the CA file, and is the last one the host
// logged; it returns the serials on disk.
func (h *host) checkFiles(now time.Time) (map[string]string, error) {
	last := map[string]string{}
	h.mu.Lock()
	for _, is := range h.issued {
		last[is.Cert] = is.Serial
	}
	h.mu.Unlock()
	out := map[string]string{}
	var errs []error
	for _, c := range h.certs {
		crt, key, ca := filepath.Join(h.dir, "tls", c+".crt"), filepath.Join(h.dir, "tls", c+".key"), filepath.Join(h.dir, "tls", c+".ca.pem")
		pair, err := tls.LoadX509KeyPair(crt, key)
		if err != nil {
			errs = append(errs, fmt.Errorf("host %d %s: %w", h.i, c, err))
			continue
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			errs = append(errs, fmt.Errorf("host %d %s: %w", h.i, c, err))
			continue
		}
		if now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
			errs = append(errs, fmt.Errorf("host %d %s: not valid now (%s to %s)", h.i, c, leaf.NotBefore, leaf.NotAfter))
		}
		pool := x509.NewCertPool()
		caPEM, err := os.ReadFile(ca)
		if err != nil || !pool.AppendCertsFromPEM(caPEM) {
			errs = append(errs, fmt.Errorf("host %d %s: unreadable CA file", h.i, c))
			continue
		}
		inter := x509.NewCertPool()
		for rest := caPEM; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if ic, err := x509.ParseCertificate(blk.Bytes); err == nil {
				inter.AddCert(ic)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			errs = append(errs, fmt.Errorf("host %d %s: does not chain to its CA file: %w", h.i, c, err))
		}
		serial := serialString(leaf.SerialNumber.Bytes())
		out[c] = serial
		if last[c] != serial {
			errs = append(errs, fmt.Errorf("host %d %s: serial on disk %s, last logged %s", h.i, c, serial, last[c]))
		}
	}
	return out, errors.Join(errs...)
}

// normSerial writes a serial as Vault's API does: lowercase hex pairs
// joined by colons (Vault's LIST gives hyphens).
func normSerial(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.Trim(s, `"`), "-", ":"))
}

func serialString(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

// cleanEnv is the bench's environment without VAULT_* and with HOME in
// dir, so no process picks up a developer's token.
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
