package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPprofFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "certkeeper.hcl")
	err := os.WriteFile(cfg, []byte(`
state_dir = "`+dir+`/state"
vault {
  address = "http://127.0.0.1:1"
  auth "token" { token_file = "`+dir+`/token" }
}
certificate "web" {
  mount       = "pki_int"
  role        = "ec"
  common_name = "web.example.internal"
  cert_file   = "`+dir+`/web.crt"
  key_file    = "`+dir+`/web.key"
}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"run", "-config", cfg, "-pprof", "0.0.0.0:6060"}, &stdout, &stderr); code != 1 {
		t.Fatalf("run -pprof 0.0.0.0:6060: exit %d, want 1\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "loopback address only") {
		t.Errorf("stderr does not say why: %s", stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"validate", "-config", cfg, "-pprof", "127.0.0.1:6060"}, &stdout, &stderr); code != 2 {
		t.Errorf("validate -pprof: exit %d, want 2 (the flag is for run only)", code)
	}
}
