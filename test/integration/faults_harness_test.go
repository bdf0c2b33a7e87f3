//go:build integration

package integration

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/faultproxy"
)

// vaultBlock is the HCL of a vault block with an AppRole for e, pointing at
// addr (a proxy, a TLS listener, a list) with extra lines inside.
func (e *env) vaultBlock(addr string, extra ...string) string {
	return fmt.Sprintf(`
vault {
  address = %s
  %s
  auth "approle" {
    role_id_file   = %q
    secret_id_file = %q
  }
}
`, addr, strings.Join(extra, "\n  "), e.roleIDFile, e.secretIDFile)
}

// writeRawConfig writes state_dir, the given vault block and certificate
// blocks as the env's config, and returns its path.
func (e *env) writeRawConfig(vault string, certs ...string) string {
	e.t.Helper()
	cfg := fmt.Sprintf("state_dir = %q\n", filepath.Join(e.dir, "state")) + vault + strings.Join(certs, "\n")
	if !strings.Contains(cfg, "telemetry {") {
		// As writeConfig: the default 127.0.0.1:9847 is taken by
		// whichever test of any package runs beside this one (the
		// packaging tests' daemon has it by right).
		cfg += "\ntelemetry {\n  listen = \"\"\n}\n"
	}
	path := filepath.Join(e.dir, "certkeeper.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// proxy puts a fault proxy in front of the env's Vault.
func (e *env) proxy() *faultproxy.Proxy {
	e.t.Helper()
	p, err := faultproxy.New(e.vault.Addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.Close() })
	return p
}

// setPaths are the files a certificate from e.cert writes.
func (e *env) setPaths(name string) []string {
	var out []string
	for _, s := range []string{".key", ".crt", ".chain.pem", ".fullchain.pem", ".ca.pem"} {
		out = append(out, filepath.Join(e.dir, name+s))
	}
	return out
}

// checkPair fails unless name's key and certificate on disk are a pair and
// its full chain verifies against its CA file.
func (e *env) checkPair(t *testing.T, name string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(e.dir, name+s) }
	certPub := openssl(t, "x509", "-in", p(".crt"), "-noout", "-pubkey")
	keyPub := openssl(t, "pkey", "-in", p(".key"), "-pubout")
	if certPub != keyPub {
		t.Errorf("%s: key does not match certificate", name)
	}
	openssl(t, "verify", "-CAfile", p(".ca.pem"), p(".fullchain.pem"))
}

// isSign matches requests that ask Vault to sign a certificate.
func isSign(r faultproxy.Record) bool { return strings.Contains(r.Path, "/sign/") }

// signTimes are the arrival times of sign requests at the proxy.
func signTimes(recs []faultproxy.Record) []time.Time {
	var out []time.Time
	for _, r := range recs {
		if isSign(r) {
			out = append(out, r.At)
		}
	}
	return out
}

func gaps(times []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(times); i++ {
		out = append(out, times[i].Sub(times[i-1]).Round(100*time.Millisecond))
	}
	return out
}

// waitLogAfter waits until re matches at least n times in log output
// written after mark (a length of d.Logs taken earlier).
func (d *daemon) waitLogAfter(mark int, re string, n int, timeout time.Duration) {
	d.T.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s := d.Logs.String(); len(s) >= mark && len(rx.FindAllStringIndex(s[mark:], -1)) >= n {
			return
		}
		select {
		case <-d.Done():
			d.T.Fatalf("certkeeper exited while waiting for %q: %v", re, d.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	d.T.Fatalf("no %d log lines matching %q within %v", n, re, timeout)
}

func (d *daemon) mark() int { return len(d.Logs.String()) }

// crashtestBin is certkeeper built with the crashtest tag, whose
// CERTKEEPER_CRASH_AT hook SIGKILLs it at a chosen step of a file-set
// write. Built once, on first use, next to the normal binary.
var (
	crashtestOnce sync.Once
	crashtestBin  string
	crashtestErr  error
)

func crashtestBinary(t *testing.T) string {
	t.Helper()
	crashtestOnce.Do(func() {
		crashtestBin = filepath.Join(filepath.Dir(certkeeperBin), "certkeeper-crashtest")
		out, err := exec.Command("go", "build", "-tags", "crashtest", "-o", crashtestBin, "github.com/certkeeper/certkeeper/cmd/certkeeper").CombinedOutput()
		if err != nil {
			crashtestErr = fmt.Errorf("building crashtest binary: %v\n%s", err, out)
		}
	})
	if crashtestErr != nil {
		t.Fatal(crashtestErr)
	}
	return crashtestBin
}

// fileBytes returns the contents of each path ("" for a missing file).
func fileBytes(paths ...string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		out[p] = string(b)
	}
	return out
}

// certSerial is the serial of the first certificate in a PEM file, or "".
func certSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return ""
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return ""
	}
	return c.SerialNumber.String()
}
