//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/test/cktest"
)

// TestValidateRunsNothing: validate reads the config and nothing else
// happens, even as root and with a template that calls sockaddr (which ran
// `ip route` from $PATH) and services whose commands it must not run.
// strace follows every thread and child: the only program started is
// certkeeper itself.
func TestValidateRunsNothing(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not installed (Debian package strace)")
	}
	dir := t.TempDir()
	// A fake ip first in $PATH: if anything runs it, strace sees it.
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "ip"), []byte("#!/bin/sh\necho 'default via 192.0.2.1 dev lo'\n"), 0o755)
	base := fmt.Sprintf(`
vault {
  address = "https://vault.example.internal:8200"
}
service "web" {
  check  = ["/bin/sh", "-c", "touch %[1]s/checked"]
  reload = ["/bin/sh", "-c", "touch %[1]s/reloaded"]
}
trust_bundle "clients" {
  mount   = "pki_int"
  ca_file = "%[1]s/clients.pem"
  notify  = ["web"]
}
certificate "web" {
  mount       = "pki_int"
  role        = "web"
  common_name = "web.example.internal"
  cert_file   = "%[1]s/web.crt"
  key_file    = "%[1]s/web.key"
  notify      = ["web"]
  template {
    stock       = "haproxy"
    destination = "%[1]s/web.pem"
  }
  template {
    contents    = "{{ with certificate }}{{ .NotAfter.Format \"2006\" }} {{ timestamp }} {{ .Cert | sha256Hex }}{{ end }}"
    destination = "%[1]s/web.txt"
  }
  %%s
}
`, dir)
	for _, tt := range []struct {
		name, extra string
		code        int
	}{
		{"valid", "", 0},
		{"sockaddr", `template {
    contents    = "{{ sockaddr \"GetDefaultInterfaces | attr \\\"name\\\"\" }}"
    destination = "` + dir + `/web.addr"
  }`, 1},
	} {
		cfg := filepath.Join(dir, tt.name+".hcl")
		os.WriteFile(cfg, []byte(fmt.Sprintf(base, tt.extra)), 0o600)
		trace := filepath.Join(dir, tt.name+".strace")
		env := cktest.Env("PATH=" + bin + ":" + os.Getenv("PATH"))
		stdout, stderr, code := cktest.Run(t, "strace", env, "-f", "-qq", "-e", "trace=execve", "-o", trace, certkeeperBin, "validate", "-config", cfg)
		if code != tt.code {
			t.Errorf("%s: validate exited %d, want %d:\n%s%s", tt.name, code, tt.code, stdout, stderr)
		}
		if tt.name == "sockaddr" && !strings.Contains(stderr, `function "sockaddr" is disabled`) {
			t.Errorf("sockaddr: validate does not say why it refuses:\n%s", stderr)
		}
		data, err := os.ReadFile(trace)
		if err != nil {
			t.Fatal(err)
		}
		var execs []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, "execve(") && !strings.Contains(l, "execve(\""+certkeeperBin+"\"") {
				execs = append(execs, l)
			}
		}
		if len(execs) > 0 {
			t.Errorf("%s: validate ran programs:\n%s", tt.name, strings.Join(execs, "\n"))
		}
		for _, f := range []string{"checked", "reloaded", "web.crt", "web.pem", "clients.pem"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				t.Errorf("%s: validate made %s", tt.name, f)
			}
		}
	}
}
