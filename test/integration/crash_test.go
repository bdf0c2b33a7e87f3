//go:build integration && faults

package integration

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/certkeeper/certkeeper/test/faultproxy"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestCrashAtEveryPointOfASetWrite: certkeeper is SIGKILLed at every step
// of replacing a certificate set (after each temp file, at the journal,
// before each rename, before the journal is removed), each in its own run.
// After each crash certkeeper starts again with Vault unreachable, so what
// is on disk is what crash recovery alone made of it: the old set or the
// new one, whole, key matching certificate, nothing empty, no temp files.
func TestCrashAtEveryPointOfASetWrite(t *testing.T) {
	t.Parallel()
	bin := crashtestBinary(t)
	e := newEnv(t, vaulttest.Options{})
	dead := e.proxy()
	dead.SetMode(faultproxy.Reset)

	// Two configs that differ in one SAN, so each switch needs a new
	// certificate and so a new set over the old one.
	sans := []string{`"localhost"]`, `"localhost", "www.example.internal"]`}
	certFor := func(i int) string {
		return strings.Replace(e.cert("web", vaulttest.RoleEC), `"localhost"]`, sans[i%2], 1)
	}
	live := func(i int) string { return e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", e.vault.Addr)), certFor(i)) }
	unreachable := func(i int) string { return e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", dead.Addr)), certFor(i)) }

	if out, errOut, code := once(t, live(0)); code != 0 {
		t.Fatalf("first once: %d %s %s", code, out, errOut)
	}
	// One uninterrupted replacement with tracing lists every crash point.
	trace := filepath.Join(t.TempDir(), "trace")
	if _, errOut, code := runBin(t, bin, live(1), "CERTKEEPER_CRASH_TRACE="+trace); code != 0 {
		t.Fatalf("traced once: %d %s", code, errOut)
	}
	raw, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	points := strings.Fields(string(raw))
	t.Logf("crash points of one set replacement: %v", points)
	if len(points) < 6 || !strings.Contains(string(raw), "journal:1") || !strings.Contains(string(raw), "commit:1") {
		t.Fatalf("trace %v lacks the journal and commit points", points)
	}

	files := append(e.setPaths("web"), filepath.Join(e.dir, "state", "certs", "web.json"))
	outcomes := map[string]int{}
	for i, point := range points {
		cfgIdx := i % 2 // the state on disk is set cfgIdx^1; crash while writing cfgIdx
		old := fileBytes(files...)
		_, errOut, code := runBin(t, bin, live(cfgIdx), "CERTKEEPER_CRASH_AT="+point)
		if code != -int(syscall.SIGKILL) {
			t.Fatalf("%s: certkeeper was not killed there (exit %d): %s", point, code, errOut)
		}
		// Restart with Vault unreachable: only recovery touches the disk.
		runBin(t, certkeeperBin, unreachable(cfgIdx))
		now := fileBytes(files...)
		outcome, err := judgeSet(old, now, e, "web")
		if err != nil {
			t.Errorf("after a crash at %s and a restart: %v", point, err)
		}
		outcomes[point] = outcome
		if leftovers, _ := filepath.Glob(filepath.Join(e.dir, ".*certkeeper-tmp-*")); len(leftovers) > 0 {
			t.Errorf("after a crash at %s and a restart: temp files left: %v", point, leftovers)
		}
		// Make sure the set on disk is cfgIdx's before the next round.
		if _, errOut, code := once(t, live(cfgIdx)); code != 0 {
			t.Fatalf("once after recovery from %s: %d %s", point, code, errOut)
		}
	}
	var summary []string
	for _, p := range points {
		summary = append(summary, fmt.Sprintf("%s=%s", p, map[int]string{0: "old", 1: "new"}[outcomes[p]]))
	}
	t.Logf("set on disk after crash and recovery: %s", strings.Join(summary, " "))
}

// judgeSet checks that the set on disk (now) is whole and consistent, and
// says whether it is the old one (0) or a new one (1).
func judgeSet(old, now map[string]string, e *env, name string) (int, error) {
	p := func(s string) string { return filepath.Join(e.dir, name+s) }
	for path, data := range now {
		if data == "" {
			return 0, fmt.Errorf("%s is empty or missing", path)
		}
	}
	if _, err := tls.X509KeyPair([]byte(now[p(".crt")]), []byte(now[p(".key")])); err != nil {
		return 0, fmt.Errorf("key and certificate do not match: %v", err)
	}
	if !strings.HasPrefix(now[p(".fullchain.pem")], now[p(".crt")]) {
		return 0, errors.New("fullchain does not start with the certificate")
	}
	var rec struct {
		Serial string `json:"serial"`
	}
	if err := json.Unmarshal([]byte(now[filepath.Join(e.dir, "state", "certs", name+".json")]), &rec); err != nil {
		return 0, fmt.Errorf("state record: %v", err)
	}
	if strings.ReplaceAll(rec.Serial, ":", "") != serialHex(p(".crt")) {
		return 0, fmt.Errorf("state record names serial %s, certificate on disk is %s", rec.Serial, serialHex(p(".crt")))
	}
	changed := 0
	for _, f := range []string{p(".key"), p(".crt"), p(".fullchain.pem")} {
		if now[f] != old[f] {
			changed++
		}
	}
	switch changed {
	case 0:
		return 0, nil
	case 3:
		return 1, nil
	}
	return 0, fmt.Errorf("a mix of old and new: %d of key, certificate and fullchain changed", changed)
}

func serialHex(path string) string {
	s := certSerial(path)
	if s == "" {
		return ""
	}
	var n big.Int
	n.SetString(s, 10)
	h := n.Text(16)
	if len(h)%2 == 1 {
		h = "0" + h
	}
	return h
}

// runBin runs `bin once` on cfg; a process killed by a signal reports the
// negated signal number as its code.
func runBin(t *testing.T, bin, cfg string, extraEnv ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, "once", "-config", cfg)
	cmd.Env = append(cleanEnv(), extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return out.String(), errb.String(), -int(ws.Signal())
		}
		code = ee.ExitCode()
	default:
		t.Fatalf("running %s: %v", bin, err)
	}
	return out.String(), errb.String(), code
}

// TestCrashAtEveryPointOfTheMigration: certkeeper is SIGKILLed at every
// step of moving a flat state_dir (as certkeeper up to 170922d left it) to
// the per-kind layout, each in its own run; then started again with Vault
// unreachable. Every time the certificate is kept from disk (nothing is
// asked of Vault, which could not answer), its record is in certs/ and
// nowhere else, and no temp file is left.
func TestCrashAtEveryPointOfTheMigration(t *testing.T) {
	t.Parallel()
	bin := crashtestBinary(t)
	e := newEnv(t, vaulttest.Options{})
	dead := e.proxy()
	dead.SetMode(faultproxy.Reset)
	cert := e.cert("web", vaulttest.RoleEC)
	if out, errOut, code := once(t, e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", e.vault.Addr)), cert)); code != 0 {
		t.Fatalf("first once: %d %s %s", code, out, errOut)
	}
	unreachable := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", dead.Addr)), cert)
	state := filepath.Join(e.dir, "state")
	record, err := os.ReadFile(filepath.Join(state, "certs", "web.json"))
	if err != nil {
		t.Fatal(err)
	}
	flat := func() {
		t.Helper()
		os.RemoveAll(state)
		os.Mkdir(state, 0o700)
		if err := os.WriteFile(filepath.Join(state, "web.json"), record, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flat()
	trace := filepath.Join(t.TempDir(), "trace")
	if out, errOut, code := runBin(t, bin, unreachable, "CERTKEEPER_CRASH_TRACE="+trace); code != 0 || !strings.Contains(out, "web: ok") {
		t.Fatalf("traced migration: %d %s %s", code, out, errOut)
	}
	raw, _ := os.ReadFile(trace)
	points := strings.Fields(string(raw))
	if !strings.Contains(string(raw), "journal:1") || !strings.Contains(string(raw), "commit:1") {
		t.Fatalf("the migration's trace %v lacks the journal and commit points", points)
	}
	t.Logf("crash points of the migration: %v", points)
	for _, point := range points {
		flat()
		if _, errOut, code := runBin(t, bin, unreachable, "CERTKEEPER_CRASH_AT="+point); code != -int(syscall.SIGKILL) {
			t.Fatalf("%s: certkeeper was not killed there (exit %d): %s", point, code, errOut)
		}
		out, errOut, code := runBin(t, certkeeperBin, unreachable)
		if code != 0 || !strings.Contains(out, "web: ok serial=") {
			t.Errorf("after a crash at %s, the restart did not keep the certificate (exit %d):\n%s\n%s", point, code, out, errOut)
		}
		if got, err := os.ReadFile(filepath.Join(state, "certs", "web.json")); err != nil || !bytes.Equal(got, record) {
			t.Errorf("after a crash at %s and a restart: the record in certs/ is %q (%v)", point, got, err)
		}
		entries, _ := os.ReadDir(state)
		for _, e := range entries {
			if !e.IsDir() {
				t.Errorf("after a crash at %s and a restart: %s left at the top of state_dir", point, e.Name())
			}
		}
		if leftovers, _ := filepath.Glob(filepath.Join(state, "*", ".*certkeeper-tmp-*")); len(leftovers) > 0 {
			t.Errorf("after a crash at %s and a restart: temp files left: %v", point, leftovers)
		}
	}
}
