package telemetry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/vault"
)

// parseProm reads a .prom file the way node_exporter's textfile collector
// does (the Prometheus text format) and fails on anything it would refuse.
func parseProm(t *testing.T, data string) map[string][]string {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(data))
	if err != nil {
		t.Fatalf("the textfile does not parse: %v\n%s", err, data)
	}
	out := map[string][]string{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.TimestampMs != nil {
				t.Errorf("%s has a timestamp, which the textfile collector refuses", name)
			}
			out[name] = append(out[name], m.String())
		}
	}
	return out
}

// TestTextfile: the file holds the certificate, renewal and failure
// metrics and nothing of the process; it is written again after a change
// (the interval here is an hour, so only the change can have caused it);
// every write replaces the file by rename from a temporary name the
// collector ignores, so a reader holding the old file keeps reading the
// old bytes.
func TestTextfile(t *testing.T) {
	now := time.Now()
	reg := NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	fa := &fakeAgent{statuses: []agent.Status{{Name: "web", CommonName: "web.example.internal", Serial: "0a:0b",
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), RenewAt: now.Add(20 * time.Minute), LastResult: "issued"}}}
	if err := m.ExposeState(Sources{Certificates: fa, Token: fakeToken{now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	m.ServiceConfigured("nginx")
	m.ObserveVaultRequest("sign", 200, time.Millisecond)

	dir := t.TempDir()
	path := filepath.Join(dir, "certkeeper.prom")
	// Every name that appears in the directory, as the collector could
	// see it.
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	go func() {
		for ev := range w.Events {
			mu.Lock()
			seen = append(seen, filepath.Base(ev.Name))
			mu.Unlock()
		}
	}()

	tf := NewTextfile(TextfileOptions{Path: path, Interval: time.Hour, Gatherer: reg, Log: slog.New(slog.DiscardHandler)})
	m.OnChange(tf.Changed)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tf.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	read := func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			return ""
		}
		return string(b)
	}
	waitUntil(t, "the first write", 5*time.Second, func() bool { return read() != "" })
	first := read()
	got := parseProm(t, first)
	for _, want := range []string{"certkeeper_certificate_not_after_timestamp_seconds", "certkeeper_certificate_renewals_total",
		"certkeeper_certificate_consecutive_failures", "certkeeper_certificate_info", "certkeeper_service_reloads_total",
		"certkeeper_vault_token_expiry_timestamp_seconds"} {
		if len(got[want]) == 0 {
			t.Errorf("the textfile has no %s:\n%s", want, first)
		}
	}
	for name := range got {
		if !slices.Contains(TextfileMetricNames(), name) {
			t.Errorf("the textfile has %s, which is not for it", name)
		}
	}
	for _, not := range []string{"go_", "process_", "certkeeper_vault_request"} {
		if strings.Contains(first, not) {
			t.Errorf("the textfile has %s* series", not)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v (%v), want 0644 so node_exporter's user reads it", fi.Mode().Perm(), err)
	}

	// A reader that opened the file keeps the bytes it opened.
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// A failed renewal reaches the file.
	m.ObservePass(agent.Status{Name: "web"}, nil, errors.New("vault said no"))
	waitUntil(t, "the write after a change", 30*time.Second, func() bool {
		return strings.Contains(read(), `certkeeper_certificate_renewals_total{name="web",result="failure"} 1`)
	})
	if b, err := io.ReadAll(old); err != nil || string(b) != first {
		t.Errorf("a reader holding the file saw it change under it (written in place, not replaced): %v", err)
	}

	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left in the directory: %v", entries)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no file system events seen")
	}
	for _, name := range seen {
		if name != "certkeeper.prom" && strings.HasSuffix(name, ".prom") {
			t.Errorf("a temporary file %q ends in .prom: the collector would read it half-written", name)
		}
	}
	if !slices.ContainsFunc(seen, func(n string) bool { return n != "certkeeper.prom" }) {
		t.Errorf("every event named the target (%v): written in place, not through a temporary file", seen)
	}
}

// Without any change the file is written again at the interval: its
// modification time is what shows certkeeper is alive.
func TestTextfileInterval(t *testing.T) {
	reg := NewRegistry()
	if _, err := New(reg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "certkeeper.prom")
	tf := NewTextfile(TextfileOptions{Path: path, Interval: 200 * time.Millisecond, Gatherer: reg, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tf.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	var first os.FileInfo
	waitUntil(t, "the first write", 30*time.Second, func() bool {
		fi, err := os.Stat(path)
		first = fi
		return err == nil
	})
	waitUntil(t, "a write at the interval", 30*time.Second, func() bool {
		fi, err := os.Stat(path)
		return err == nil && !os.SameFile(fi, first)
	})
}

// A directory that is missing is retried, not fatal; the file appears
// once it exists.
func TestTextfileDirectoryAppears(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-exporter")
	reg := NewRegistry()
	if _, err := New(reg); err != nil {
		t.Fatal(err)
	}
	tf := NewTextfile(TextfileOptions{Path: filepath.Join(dir, "certkeeper.prom"), Interval: 200 * time.Millisecond, Gatherer: reg, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tf.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(300 * time.Millisecond)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the file once its directory exists", 5*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dir, "certkeeper.prom"))
		return err == nil
	})
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTextfileAuthAndListenFailures: the series the auth-fallback and
// port-taken alerts read reach the file, and a login or a failed bind of
// the endpoint writes it at once (the interval here is an hour).
func TestTextfileAuthAndListenFailures(t *testing.T) {
	reg := NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	auth := &fakeAuth{st: []vault.AuthMethodStatus{{Method: "cert", Mount: "cert"}, {Method: "aws", Mount: "aws"}}}
	if err := m.ExposeState(Sources{Auth: auth}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "certkeeper.prom")
	tf := NewTextfile(TextfileOptions{Path: path, Interval: time.Hour, Gatherer: reg, Log: slog.New(slog.DiscardHandler)})
	m.OnChange(tf.Changed)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tf.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	read := func() string {
		b, _ := os.ReadFile(path)
		return string(b)
	}
	waitUntil(t, "the first write", 5*time.Second, func() bool { return read() != "" })

	// The bind first: nothing else is pending then, so only its own
	// change can write the file.
	l := NewListener("127.0.0.1:9847", m)
	l.bindFailed(errors.New("address already in use"), time.Now())
	waitUntil(t, "the write after a failed bind", 30*time.Second, func() bool {
		return strings.Contains(read(), "certkeeper_telemetry_listen_failures_total 1")
	})
	auth.mu.Lock()
	auth.st[1].InUse = true
	auth.mu.Unlock()
	m.ObserveLogin("cert", false)
	m.ObserveLogin("aws", true)
	waitUntil(t, "the write after a login", 30*time.Second, func() bool {
		s := read()
		return strings.Contains(s, `certkeeper_vault_logins_total{method="aws",result="success"} 1`) &&
			strings.Contains(s, `certkeeper_vault_logins_total{method="cert",result="failure"} 1`) &&
			strings.Contains(s, `certkeeper_vault_auth_method_in_use{method="aws",mount="aws",position="2"} 1`)
	})

	parseProm(t, read())
}
