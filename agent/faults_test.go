package agent

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/vault"
)

// TestWriteFailureDoesNotReissue: when the certificate Vault signed cannot
// be written (here the output directory is blocked by a file of that name;
// the integration suite does the same with a full disk, a read-only mount
// and a permission problem), the old files stay, the error says what could
// not be written, and the next attempts write the certificate already
// obtained instead of asking Vault for another.
func TestWriteFailureDoesNotReissue(t *testing.T) {
	cfg := testConfig(t, "web")
	c := &cfg.Certificates[0]
	blocked := filepath.Join(filepath.Dir(c.Files.Cert), "out")
	c.Files.Chain = filepath.Join(blocked, "web.chain.pem")
	fv := newFakeVault(t)
	a := New(Options{Config: cfg, Issuer: fv})
	if err := os.WriteFile(blocked, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := a.ensure(t.Context(), *c, false)
		if err == nil || !strings.Contains(err.Error(), "web.chain.pem") {
			t.Fatalf("attempt %d: err = %v, want one naming the file it could not write", i, err)
		}
	}
	if n := fv.count("web.example.internal"); n != 1 {
		t.Errorf("Vault was asked %d times for a certificate that could not be written, want 1", n)
	}
	if _, err := os.Stat(c.Files.Cert); err == nil {
		t.Error("part of a set that could not be written landed on disk")
	}

	os.Remove(blocked)
	res, err := a.ensure(t.Context(), *c, false)
	if err != nil || res.Action != Issued {
		t.Fatalf("after the disk recovered: %+v %v", res, err)
	}
	if n := fv.count("web.example.internal"); n != 1 {
		t.Errorf("writing after recovery asked Vault again (%d requests)", n)
	}
	data, err := os.ReadFile(c.Files.Cert)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := pki.ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := pki.Serial(leaves[0]); got != res.Serial {
		t.Errorf("written serial %s, result says %s", got, res.Serial)
	}
}

// TestPolicyDenialIsAlerted: a 403 that re-login does not cure is logged
// once per attempt with its own message and an alert key, and the next
// attempt is backed off, not immediate.
func TestPolicyDenialIsAlerted(t *testing.T) {
	cfg := testConfig(t, "web")
	fv := newFakeVault(t)
	fv.failFor["web.example.internal"] = &vault.DeniedError{Path: "pki_int/sign/web", Err: errors.New("vault answered 403 on pki_int/sign/web: permission denied")}
	var buf cktest.SyncBuffer
	now := time.Now()
	a := New(Options{Config: cfg, Issuer: fv, Log: slog.New(slog.NewTextHandler(&buf, nil)), Now: func() time.Time { return now }, Rand: func() float64 { return 0.5 }})
	next, _ := a.pass(t.Context(), "web")
	logs := buf.String()
	if !strings.Contains(logs, "vault policy denies it and logging in again does not help") || !strings.Contains(logs, "alert=vault_permission_denied") {
		t.Errorf("no alert-worthy line for a policy denial:\n%s", logs)
	}
	if d := next.Sub(now); d < time.Second {
		t.Errorf("next attempt in %v: a denial must back off", d)
	}
	if st := a.Statuses()[0]; !strings.Contains(st.LastError, "permission denied by vault policy") {
		t.Errorf("status error %q does not say it is a policy denial", st.LastError)
	}
}

// TestResumeAfterSuspend: the agent's renewal decision reads the wall clock
// and the certificate's dates, nothing else. After a suspend past the
// renewal point the next pass renews, and the new schedule comes from the
// new certificate; after a suspend past NotAfter the same.
func TestResumeAfterSuspend(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sleep time.Duration
	}{
		{"past the renewal point", 50 * time.Minute},
		{"past NotAfter", 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "web")
			var mu sync.Mutex
			now := time.Now()
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			fv := newFakeVault(t)
			fv.clock = clock
			a := New(Options{Config: cfg, Issuer: fv, Now: clock})
			first, ok := a.pass(t.Context(), "web")
			if !ok {
				t.Fatal("first pass lost the certificate")
			}
			mu.Lock()
			now = now.Add(tc.sleep)
			mu.Unlock()
			next, _ := a.pass(t.Context(), "web")
			if n := fv.count("web.example.internal"); n != 2 {
				t.Fatalf("after waking %s, Vault was asked %d times, want a renewal (2)", tc.name, n)
			}
			st := a.Statuses()[0]
			if st.State != StateValid || !next.After(clock()) || !next.After(first) {
				t.Errorf("after renewal: state %s, next %v (now %v): want valid and a renewal point ahead", st.State, next, clock())
			}
			if want := st.NotBefore.Add(time.Duration(0.56 * float64(st.NotAfter.Sub(st.NotBefore)))); next.Before(want.Add(-time.Second)) {
				t.Errorf("next renewal %v is before the jitter window of the new certificate (from %v)", next, want)
			}
		})
	}
}
