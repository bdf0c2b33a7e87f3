package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
)

func TestParseRenewWindow(t *testing.T) {
	tests := []struct {
		spec   string
		cron   string
		length time.Duration
		zone   string
	}{
		{"Mon-Fri 02:00-05:00", "0 2 * * mon-fri", 3 * time.Hour, ""},
		{"mon,wed,FRIDAY 01:30-02:15", "30 1 * * mon,wed,fri", 45 * time.Minute, ""},
		{"02:00-05:00", "0 2 * * *", 3 * time.Hour, ""},
		{"daily 00:00-24:00 UTC", "0 0 * * *", 24 * time.Hour, "UTC"},
		{"Sat,Sun 22:00-02:00 Europe/Berlin", "0 22 * * sat,sun", 4 * time.Hour, "Europe/Berlin"},
		{"0 2 * * 1-5 for 3h", "0 2 * * 1-5", 3 * time.Hour, ""},
		{"@daily for 90m America/New_York", "@daily", 90 * time.Minute, "America/New_York"},
		{"0 2 * * 1#1 for 2d", "0 2 * * 1#1", 48 * time.Hour, ""},
	}
	for _, tt := range tests {
		w, err := config.ParseRenewWindow(tt.spec)
		if err != nil {
			t.Errorf("%q: %v", tt.spec, err)
			continue
		}
		if w.Cron != tt.cron || w.Length != tt.length || w.Zone != tt.zone || w.Spec != tt.spec {
			t.Errorf("%q = %+v, want cron %q length %v zone %q", tt.spec, w, tt.cron, tt.length, tt.zone)
		}
	}
	for spec, want := range map[string]string{
		"":                         "is empty",
		"Mon-Fri":                  "must be days and hours",
		"Mon-Fri 2-5":              "must be days and hours",
		"Mon-Fri 02:00-25:00":      "must be HH:MM-HH:MM",
		"Mon-Fri 24:00-02:00":      "must be HH:MM-HH:MM",
		"0 2 * * 1-5":              "must be days and hours",
		"0 2 * * for 3h":           "must have 5 fields",
		"0 2 * * * for":            "needs a length",
		"0 2 * * * for 30s":        "shorter than a minute",
		"0 25 * * * for 1h":        "cron expression",
		"Mon 02:00-03:00 Local":    `time zone "Local"`,
		"Mon 02:00-03:00 UTC UTC":  "must be days and hours",
		"0 2 * * * for 1h UTC UTC": "at most a time zone",
	} {
		if _, err := config.ParseRenewWindow(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one with %q", spec, err, want)
		}
	}
}

// TestRenewWindowDefault: the top-level renew_window applies to every
// certificate that has none; "any" lifts it for one.
func TestRenewWindowDefault(t *testing.T) {
	cfg, err := config.Parse("windows.hcl", []byte(`
vault { address = "http://127.0.0.1:8200" }
renew_window = "Mon-Fri 02:00-05:00 UTC"
certificate "a" {
  mount = "pki" 
  role = "r"
  common_name = "a.example"
  cert_file = "/tmp/a.crt"
  key_file = "/tmp/a.key"
}
certificate "b" {
  mount = "pki"
  role = "r"
  common_name = "b.example"
  cert_file = "/tmp/b.crt"
  key_file = "/tmp/b.key"
  renew_window = "any"
}
certificate "c" {
  mount = "pki"
  role = "r"
  common_name = "c.example"
  cert_file = "/tmp/c.crt"
  key_file = "/tmp/c.key"
  renew_window = ["Sat 10:00-12:00", "0 3 * * 0 for 1h"]
}
`), withTemplates)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := cfg.Certificate("a")
	b, _ := cfg.Certificate("b")
	c, _ := cfg.Certificate("c")
	if len(a.RenewWindows) != 1 || a.RenewWindows[0].Cron != "0 2 * * mon-fri" || a.RenewWindows[0].Zone != "UTC" {
		t.Errorf("a: %+v, want the default window", a.RenewWindows)
	}
	if b.RenewWindows != nil {
		t.Errorf("b: %+v, want none (any)", b.RenewWindows)
	}
	if len(c.RenewWindows) != 2 || c.RenewWindows[1].Cron != "0 3 * * 0" {
		t.Errorf("c: %+v, want its own two windows", c.RenewWindows)
	}
	if cfg.CASoak != config.DefaultCASoak || cfg.IssuerCheck != config.DefaultIssuerCheck {
		t.Errorf("ca_soak %v, issuer_check %v, want the defaults", cfg.CASoak, cfg.IssuerCheck)
	}
}
