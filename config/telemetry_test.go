package config

import (
	"path/filepath"
	"testing"
	"time"
)

const minimal = `
vault { address = "http://127.0.0.1:8200" }
certificate "a" {
  mount       = "pki"
  role        = "r"
  common_name = "a.example.internal"
  cert_file   = "/tmp/a.crt"
  key_file    = "/tmp/a.key"
}
`

// The endpoint is on by default, on loopback only, and listen = "" is the
// one way to turn it off.
func TestTelemetryListen(t *testing.T) {
	tests := []struct {
		name, extra, want string
	}{
		{"no block", "", DefaultTelemetryListen},
		{"block without listen", "telemetry {}", DefaultTelemetryListen},
		{"explicit", `telemetry { listen = "0.0.0.0:9100" }`, "0.0.0.0:9100"},
		{"ipv6", `telemetry { listen = "[::1]:9100" }`, "[::1]:9100"},
		{"off", `telemetry { listen = "" }`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.hcl", []byte(minimal+tt.extra), withTemplates)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Telemetry.Listen != tt.want {
				t.Errorf("listen = %q, want %q", cfg.Telemetry.Listen, tt.want)
			}
		})
	}
	if DefaultTelemetryListen != "127.0.0.1:9847" {
		t.Errorf("default listen %q is not the documented loopback 127.0.0.1:9847", DefaultTelemetryListen)
	}
}

func TestWatchPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "certkeeper.hcl")
	cfg, err := Parse(path, []byte(minimal+`watch {
  paths  = ["/etc/ssl/private/*.pem", "tls", "other/*.crt"]
  rescan = "90s"
}`), withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/etc/ssl/private/*.pem", filepath.Join(dir, "tls"), filepath.Join(dir, "other/*.crt")}
	if len(cfg.Watch.Paths) != len(want) {
		t.Fatalf("paths = %q, want %q", cfg.Watch.Paths, want)
	}
	for i := range want {
		if cfg.Watch.Paths[i] != want[i] {
			t.Errorf("paths[%d] = %q, want %q (relative paths are relative to the config file)", i, cfg.Watch.Paths[i], want[i])
		}
	}
	if cfg.Watch.Rescan != 90*time.Second {
		t.Errorf("rescan = %v", cfg.Watch.Rescan)
	}

	cfg, err = Parse(path, []byte(minimal+`watch { paths = ["/x.pem"] }`), withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Watch.Rescan != DefaultWatchRescan {
		t.Errorf("default rescan = %v, want %v", cfg.Watch.Rescan, DefaultWatchRescan)
	}
}
