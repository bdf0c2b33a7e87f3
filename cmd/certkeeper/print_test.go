package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/daemon"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/services"
)

// The table is read at a glance: one line per certificate, times relative
// to now, and for a failing certificate why and when it is tried next.
func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	// web notifies nginx, whose last recorded state is reload_failed; api
	// notifies one the daemon has not recorded yet.
	stateDir := t.TempDir()
	statedir.Dir(stateDir).Ensure()
	os.WriteFile(statedir.Dir(stateDir).ServicesState(), []byte(`{"version":1,"services":[{"name":"nginx","state":"reload_failed"}]}`), 0o600)
	cfg := &config.Config{StateDir: stateDir, Services: []config.Service{{Name: "nginx"}, {Name: "apache"}}, Certificates: []config.Certificate{
		{Name: "api", Notify: []string{"apache"}},
		{Name: "pending"},
		{Name: "web", Notify: []string{"nginx"}},
	}}
	e := &env{stdout: &out, cfg: cfg}
	svcs, err := services.ReadStatus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	printStatus(e, daemon.StatusReport{Services: svcs, Certificates: []agent.Status{
		{Name: "api", CommonName: "api.example.internal", State: agent.StateFailing, NotAfter: now.Add(20 * time.Hour),
			RenewAt: now.Add(-time.Hour), LastResult: "failed", Failures: 3, NextAttempt: now.Add(40 * time.Second),
			LastError: "pki_int/sign/web: vault answered 503\non pki_int/sign/web"},
		{Name: "pending", CommonName: "p.example.internal", State: agent.StateMissing, LastResult: "pending"},
		{Name: "web", CommonName: "web.example.internal", State: agent.StateValid, NotAfter: now.Add(72 * time.Hour),
			RenewAt: now.Add(47*time.Hour + 30*time.Minute), LastResult: "issued"},
	}}, now)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 lines, got:\n%s", out.String())
	}
	want := []string{
		`^NAME +COMMON NAME +STATE +EXPIRES IN +RENEWS IN +LAST RESULT +SERVICE +NOTE$`,
		`^api +api\.example\.internal +failing +20h0m +now +failed +apache=idle +failed 3 times in a row, next attempt in 40s: pki_int/sign/web: vault answered 503 on pki_int/sign/web$`,
		`^pending +p\.example\.internal +missing +- +- +pending +- *$`,
		`^web +web\.example\.internal +valid +3d0h +47h30m +issued +nginx=reload_failed *$`,
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d:\n%q\ndoes not match\n%s", i, lines[i], re)
		}
	}
}
