package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/certkeeper/certkeeper/config"
)

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// running starts Run and stops it at the end of the test.
func running(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx, nil)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusNames(a *Agent) []string {
	var names []string
	for _, st := range a.Statuses() {
		if st.LastResult != "pending" {
			names = append(names, st.Name)
		}
	}
	return names
}

func cloneConfig(cfg *config.Config) *config.Config {
	next := *cfg
	next.Certificates = slices.Clone(cfg.Certificates)
	return &next
}

// TestReconfigure: a running agent takes a new config: the added
// certificate is issued, the removed one is forgotten (status gone, never
// renewed), a changed template is written without asking Vault, and a new
// SAN re-issues.
func TestReconfigure(t *testing.T) {
	cfg := testConfig(t, "a", "b")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	running(t, a)
	waitFor(t, "a and b issued", func() bool { return slices.Equal(statusNames(a), []string{"a", "b"}) })

	extra := testConfig(t, "c")
	next := cloneConfig(cfg)
	next.Certificates = append(next.Certificates[1:], extra.Certificates[0]) // drop a, add c
	b := &next.Certificates[0]
	b.Templates = []config.Template{stockTemplate(t, "bundle", filepath.Join(filepath.Dir(b.Files.Cert), "b.bundle.pem"))}
	ch := a.Reconfigure(next, nil)
	if !slices.Equal(ch.Added, []string{"c"}) || !slices.Equal(ch.Removed, []string{"a"}) || !slices.Equal(ch.Changed, []string{"b"}) {
		t.Fatalf("changes = %+v", ch)
	}
	if slices.Contains(statusNames(a), "a") {
		t.Error("a removed certificate is still in the status")
	}
	waitFor(t, "c issued", func() bool { return slices.Equal(statusNames(a), []string{"b", "c"}) })
	waitFor(t, "b's template written", func() bool { _, err := os.Stat(b.Templates[0].Destination); return err == nil })
	if n := fv.count("b.example.internal"); n != 1 {
		t.Errorf("adding a template asked Vault for b again (%d requests)", n)
	}
	a.mu.Lock()
	_, heldA := a.held["a"]
	a.mu.Unlock()
	if heldA {
		t.Error("the removed certificate is still held")
	}
	// Removed means stopped, not deleted: its files stay where they were.
	if _, err := os.Stat(cfg.Certificates[0].Files.Cert); err != nil {
		t.Errorf("a's files were removed: %v", err)
	}

	next2 := cloneConfig(next)
	next2.Certificates[0].AltNames = append(slices.Clone(next2.Certificates[0].AltNames), "www.b.example.internal")
	if ch := a.Reconfigure(next2, nil); !slices.Equal(ch.Changed, []string{"b"}) {
		t.Fatalf("changes = %+v", ch)
	}
	waitFor(t, "b re-issued for its new SAN", func() bool { return fv.count("b.example.internal") == 2 })
}

// TestReconfigureKeepsStateDir: state_dir cannot move under a running
// agent; the running value stays and the caller is told.
func TestReconfigureKeepsStateDir(t *testing.T) {
	cfg := testConfig(t, "a")
	a := New(Options{Config: cfg, Issuer: newFakeVault(t)})
	next := cloneConfig(cfg)
	next.StateDir = t.TempDir()
	next.Vault.MaxParallel = 99
	ch := a.Reconfigure(next, nil)
	if !slices.Equal(ch.Kept, []string{"state_dir", "vault.max_parallel"}) {
		t.Errorf("kept = %v", ch.Kept)
	}
	if a.config().StateDir != cfg.StateDir {
		t.Error("state_dir changed under a running agent")
	}
}

// TestReconfigureSwapsIssuer: a new Vault client serves the passes after
// the reload.
func TestReconfigureSwapsIssuer(t *testing.T) {
	cfg := testConfig(t, "a")
	first, second := newFakeVault(t), newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: first})
	running(t, a)
	waitFor(t, "a issued", func() bool { return first.count("a.example.internal") == 1 })
	next := cloneConfig(cfg)
	next.Certificates[0].TTL = 2 * time.Hour
	next.Certificates[0].KeyBits = 384 // forces a re-issue
	a.Reconfigure(next, second)
	waitFor(t, "a re-issued by the new client", func() bool { return second.count("a.example.internal") == 1 })
	if n := first.count("a.example.internal"); n != 1 {
		t.Errorf("the old client was asked again (%d)", n)
	}
}

// TestReconfigureRace: reloads while passes run and status is read; run
// with -race.
func TestReconfigureRace(t *testing.T) {
	cfg := testConfig(t, "a", "b", "c")
	a := New(Options{Config: cfg, Issuer: newFakeVault(t)})
	running(t, a)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				a.Statuses()
				a.Outputs()
			}
		}
	})
	for i := range 30 {
		next := cloneConfig(cfg)
		next.Certificates = next.Certificates[:1+i%3]
		a.Reconfigure(next, nil)
		a.OutputsChanged([]string{cfg.Certificates[0].Files.Key})
		time.Sleep(5 * time.Millisecond)
	}
	a.Reconfigure(cfg, nil)
	waitFor(t, "all three issued after the last reload", func() bool { return len(statusNames(a)) == 3 })
	close(stop)
	wg.Wait()
}

// TestOutputsChangedRestores: a deleted key file is put back from the
// certificate held, without Vault, once the watcher reports it.
func TestOutputsChangedRestores(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	running(t, a)
	c := cfg.Certificates[0]
	// Issued means held: the key file alone exists a moment before the
	// agent holds the certificate, and OutputsChanged skips what is not held.
	waitFor(t, "web issued", func() bool {
		return slices.ContainsFunc(a.Statuses(), func(st Status) bool { return st.Name == "web" && st.LastResult == string(Issued) })
	})
	want := readAll(t, c.Files.Key)
	os.Remove(c.Files.Key)
	if names := a.OutputsChanged([]string{c.Files.Key, "/not/ours"}); !slices.Equal(names, []string{"web"}) {
		t.Fatalf("scheduled %v", names)
	}
	waitFor(t, "key restored", func() bool { _, err := os.Stat(c.Files.Key); return err == nil })
	if got := readAll(t, c.Files.Key); got != want {
		t.Error("restored key differs from the one held")
	}
	if n := fv.count("web.example.internal"); n != 1 {
		t.Errorf("restoring asked Vault (%d requests)", n)
	}
	if !slices.Contains(a.Outputs(), c.Files.Key) {
		t.Error("Outputs does not list the key file")
	}

	// A changed PKCS#12 password re-encodes the file.
	next := cloneConfig(cfg)
	withFormats(t, next, "first")
	a.Reconfigure(next, nil)
	p12 := next.Certificates[0].Files.PKCS12
	waitFor(t, "PKCS#12 written", func() bool { return exists(p12) })
	os.WriteFile(next.Certificates[0].PKCS12PasswordFile, []byte("second"), 0o600)
	if names := a.OutputsChanged([]string{next.Certificates[0].PKCS12PasswordFile}); !slices.Equal(names, []string{"web"}) {
		t.Fatalf("a password change scheduled %v", names)
	}
	waitFor(t, "PKCS#12 re-encoded with the new password", func() bool {
		data, err := os.ReadFile(p12)
		if err != nil {
			return false
		}
		_, _, _, err = pkcs12.DecodeChain(data, "second")
		return err == nil
	})
}
