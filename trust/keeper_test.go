package trust

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/test/cktest"
)

func bufferLog() (*slog.Logger, *cktest.SyncBuffer) {
	buf := &cktest.SyncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// TestRunOneBundle: Run refreshes a lone bundle, says ready, and logs a
// failed refresh as one (and a good one not).
func TestRunOneBundle(t *testing.T) {
	for _, failing := range []bool{false, true} {
		name := map[bool]string{false: "vault answers", true: "vault is sealed"}[failing]
		t.Run(name, func(t *testing.T) {
			f, _, _ := twoTier(t)
			if failing {
				f.failIssuers = 1
			}
			cfg, tb := bundleConfig(t, "pki_int", "pki")
			log, logs := bufferLog()
			k := New(Options{Config: cfg, Source: f, Log: log})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			ready := make(chan struct{})
			go func() {
				k.Run(ctx, func() { close(ready) })
				close(done)
			}()
			defer func() { cancel(); <-done }()
			select {
			case <-ready:
			case <-time.After(10 * time.Second):
				t.Fatal("ready was not called")
			}
			_, err := os.Stat(tb.CRLFile)
			logged := strings.Contains(logs.String(), "trust bundle refresh failed")
			if failing && (err == nil || !logged) {
				t.Errorf("a failed first refresh: CRL file written (%v) or failure not logged (%v):\n%s", err == nil, logged, logs)
			}
			if !failing && (err != nil || logged) {
				t.Errorf("a good refresh: CRL file %v, failure logged %v:\n%s", err, logged, logs)
			}
		})
	}
}

// TestOnceRetries: Once rides out a brief Vault failure (two failed
// attempts, then success) with the backoff of the attempt made.
func TestOnceRetries(t *testing.T) {
	f, _, _ := twoTier(t)
	f.failIssuers = 2
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	log, logs := bufferLog()
	k := New(Options{Config: cfg, Source: f, Log: log, Rand: func() float64 { return 0.5 }})
	out := k.Once(t.Context())
	if out[0].Err != nil {
		t.Fatalf("Once after two failures: %v", out[0].Err)
	}
	if _, err := os.Stat(tb.CAFile); err != nil {
		t.Error(err)
	}
	// onceRetry.Backoff (TestMain): 10ms base, 20ms cap, 5ms floor; u=0.5.
	retries := regexp.MustCompile(`retry_in=(\S+)`).FindAllStringSubmatch(logs.String(), -1)
	if len(retries) != 2 || retries[0][1] != "5ms" || retries[1][1] != "10ms" {
		t.Errorf("retries %v, want two, waiting 5ms then 10ms", retries)
	}
	f.failIssuers = onceRetry.Attempts
	if out := k.Once(t.Context()); out[0].Err == nil {
		t.Error("Once succeeded although every attempt failed")
	}
}

// TestRefreshSweepsCrashLeftovers: temp files a crash left beside the CA
// and the CRL file are removed by the next refresh.
func TestRefreshSweepsCrashLeftovers(t *testing.T) {
	f, _, _ := twoTier(t)
	cfg, tb := bundleConfig(t, "pki_int", "pki")
	var strays []string
	for _, dest := range []string{tb.CAFile, tb.CRLFile} {
		p := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".certkeeper-tmp-123")
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
		strays = append(strays, p)
	}
	if out := New(Options{Config: cfg, Source: f}).Once(t.Context()); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	for _, p := range strays {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", filepath.Base(p))
		}
	}
}

// TestWrittenLogAndStatus: what a good refresh tells the operator: the
// log names each CRL by its number, the status carries the numbers, and
// the saved state (for `certkeeper status`) is private to certkeeper.
func TestWrittenLogAndStatus(t *testing.T) {
	f, _, _ := twoTier(t)
	cfg, _ := bundleConfig(t, "pki_int", "pki")
	log, logs := bufferLog()
	k := New(Options{Config: cfg, Source: f, Log: log})
	if out := k.Once(t.Context()); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	if !strings.Contains(logs.String(), `crls="[test intermediate#1(0 revoked) test root#1(0 revoked)]"`) {
		t.Errorf("the written line does not list the CRLs by number:\n%s", logs)
	}
	if strings.Contains(logs.String(), "cannot save") {
		t.Errorf("saving the state failed:\n%s", logs)
	}
	st := k.Statuses()[0]
	if len(st.CAs) != 2 || st.CAs[0].CRLNumber != "1" || st.CAs[1].CRLNumber != "1" {
		t.Errorf("status CAs %+v, want CRL number 1 for each", st.CAs)
	}
	for path, mode := range map[string]os.FileMode{statedir.Dir(cfg.StateDir).Trust(): 0o700, statedir.Dir(cfg.StateDir).TrustState(): 0o600} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		sys := info.Sys().(*syscall.Stat_t)
		if info.Mode().Perm() != mode || int(sys.Uid) != os.Geteuid() || int(sys.Gid) != os.Getegid() {
			t.Errorf("%s: mode %o owner %d:%d, want %o owned by %d:%d", path, info.Mode().Perm(), sys.Uid, sys.Gid, mode, os.Geteuid(), os.Getegid())
		}
	}
}

// TestFailureStatus: a failed refresh counts, backs off from the first
// step of the backoff, and reaches `certkeeper status` through the saved
// state, where files that are still good on disk show as failing.
func TestFailureStatus(t *testing.T) {
	f, _, _ := twoTier(t)
	cfg, _ := bundleConfig(t, "pki_int", "pki")
	now := time.Now().Truncate(time.Second)
	k := New(Options{Config: cfg, Source: f, Now: func() time.Time { return now }, Rand: func() float64 { return 0.5 }})
	if out := k.Once(t.Context()); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	for failures := 1; failures <= 2; failures++ {
		f.failIssuers = onceRetry.Attempts
		if out := k.Once(t.Context()); out[0].Err == nil {
			t.Fatal("Once succeeded with Vault sealed")
		}
		st := k.Statuses()[0]
		// backoff.Default: 5s, doubling; u=0.5.
		want := time.Duration(failures) * 2500 * time.Millisecond
		if st.State != StateFailing || st.Failures != failures || st.NextRefresh.Sub(now) != want {
			t.Errorf("after %d failed refreshes: state %s, failures %d, next refresh in %v; want failing, %d, %v", failures, st.State, st.Failures, st.NextRefresh.Sub(now), failures, want)
		}
		disk := DiskStatus(cfg, time.Now())[0]
		if disk.State != StateFailing || disk.Failures != failures || !strings.Contains(disk.LastError, "vault is sealed") {
			t.Errorf("status from disk after %d failures: %+v", failures, disk)
		}
	}
}

// TestCRLPastItsRebuildPoint: a CRL Vault has not rebuilt by the point of
// its life where this process asks it to (80-90%, here 85%), and that
// Vault will not rebuild on request, is warned about (servers reject every
// client once it expires); one younger than that is neither rebuilt nor
// warned about.
func TestCRLPastItsRebuildPoint(t *testing.T) {
	for _, tt := range []struct {
		name string
		age  time.Duration // of a CRL that lives age + 60 minutes
		warn bool
	}{
		{"fresh", time.Minute, false},
		{"at 40% of its life", 40 * time.Minute, false},
		{"at 80% of its life", 240 * time.Minute, false},
		{"at 90% of its life", 540 * time.Minute, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, _, inter := twoTier(t)
			inter.age, inter.crlLife = tt.age, time.Hour
			f.rotateErr = errors.New("permission denied")
			cfg, _ := bundleConfig(t, "pki_int", "pki")
			log, logs := bufferLog()
			if out := New(Options{Config: cfg, Source: f, Log: log, Rand: func() float64 { return 0.5 }}).Once(t.Context()); out[0].Err != nil {
				t.Fatal(out[0].Err)
			}
			warned := strings.Contains(logs.String(), `the CRL of \"test intermediate\" expires at`)
			if warned != tt.warn || (f.count("rotate pki_int") > 0) != tt.warn {
				t.Errorf("warned %v, asked to rebuild %d times, want %v:\n%s", warned, f.count("rotate pki_int"), tt.warn, logs)
			}
		})
	}
}

// TestNewestFrom: of the CRLs on disk, the one signed by the issuer with
// the highest number; a numbered one over one without a number.
func TestNewestFrom(t *testing.T) {
	_, root, inter := twoTier(t)
	crl := func(ca *testCA, number int64) *x509.RevocationList {
		tmpl := &x509.RevocationList{ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
		if number > 0 {
			tmpl.Number = big.NewInt(number)
		}
		der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
		if err != nil {
			t.Fatal(err)
		}
		parsed, _ := x509.ParseRevocationList(der)
		return parsed
	}
	one, three, two, other := crl(inter, 1), crl(inter, 3), crl(inter, 2), crl(root, 9)
	if got := newestFrom([]*x509.RevocationList{one, three, other, two}, inter.cert); got != three {
		t.Errorf("newest of 1, 3, 2 (and the root's 9) is number %v, want 3", got.Number)
	}
	if got := newestFrom([]*x509.RevocationList{three, one}, inter.cert); got != three {
		t.Errorf("newest of 3, 1 is number %v, want 3", got.Number)
	}
	if got := newestFrom([]*x509.RevocationList{other}, inter.cert); got != nil {
		t.Error("a CRL of another CA was taken")
	}
	if newestFrom([]*x509.RevocationList{one}, inter.cert) != one {
		t.Error("the only CRL was not taken")
	}
	// A CRL from x509.ParseRevocationList always has a number (0 when
	// absent); equal numbers keep the first.
	if got := newestFrom([]*x509.RevocationList{two, crl(inter, 2)}, inter.cert); got != two {
		t.Error("of two CRLs with the same number, the first was not kept")
	}
}
