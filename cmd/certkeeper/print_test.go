package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/control"
	"github.com/certkeeper/certkeeper/daemon"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/trust"
	"github.com/certkeeper/certkeeper/vault"
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

// TestStatusJSONHasEverything: status -json carries what the table
// shows: certificates, services, trust bundles, the telemetry endpoint's
// trouble, the Vault auth chain, and where it came from; lists are []
// rather than null.
func TestStatusJSONHasEverything(t *testing.T) {
	r := daemon.StatusReport{
		Source:       "from the running agent on /var/lib/certkeeper/control.sock",
		Certificates: []agent.Status{{Name: "web", State: agent.StateValid}},
		Services:     []services.Status{{Name: "nginx", State: services.StateCheckFailed, LastError: "check failed"}},
		Bundles:      []trust.Status{{Name: "clients", State: trust.StateStale}},
		Telemetry:    &control.TelemetryStatus{Listen: "127.0.0.1:9847", Failures: 3, Problem: "cannot listen"},
		Auth: []vault.AuthMethodStatus{{Method: "cert", Mount: "cert", Failures: 1, LastError: "invalid certificate"},
			{Method: "aws", Mount: "aws", InUse: true}},
	}
	var got map[string]any
	data, _ := json.Marshal(statusJSON(r))
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"source", "certificates", "services", "trust_bundles", "telemetry", "auth"} {
		if got[key] == nil {
			t.Errorf("status -json has no %q:\n%s", key, data)
		}
	}
	if !strings.Contains(string(data), `"state":"check_failed"`) || !strings.Contains(string(data), `"state":"stale"`) {
		t.Errorf("services or bundles without their state:\n%s", data)
	}
	if !strings.Contains(string(data), `"method":"aws","mount":"aws","in_use":true`) || !strings.Contains(string(data), `"last_error":"invalid certificate"`) {
		t.Errorf("the auth chain without which method is in use or why the preferred one failed:\n%s", data)
	}
	data, _ = json.Marshal(statusJSON(daemon.StatusReport{}))
	if want := `{"source":"","certificates":[],"services":[],"trust_bundles":[]}`; string(data) != want {
		t.Errorf("empty status -json = %s, want %s", data, want)
	}
}

// The auth table says which method holds the token and why the preferred
// one was passed over; with no daemon answering there is none.
func TestPrintAuthStatus(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	e := &env{stdout: &out}
	printAuthStatus(e, daemon.StatusReport{}, now)
	if out.Len() != 0 {
		t.Fatalf("printed without auth state: %q", out.String())
	}
	printAuthStatus(e, daemon.StatusReport{Auth: []vault.AuthMethodStatus{
		{Method: "cert", Mount: "cert", Failures: 2, NextAttempt: now.Add(90 * time.Second),
			LastError: "cert login with /etc/certkeeper/id.crt: vault answered 400 on auth/cert/login: invalid certificate"},
		{Method: "aws", Mount: "aws", InUse: true, LoggedInAt: now.Add(-5 * time.Minute)},
		{Method: "approle", Mount: "approle"},
		{Method: "jwt", Mount: "jwt", Failures: 1, NextAttempt: now.Add(-time.Second), LastError: "jwt login: vault answered 400"},
	}}, now)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`^VAULT AUTH +MOUNT +STATE +NOTE$`,
		`^1 cert +cert +failing +failed 2 times in a row, next attempt in 1m30s: cert login with /etc/certkeeper/id.crt: vault answered 400 on auth/cert/login: invalid certificate$`,
		`^2 aws +aws +in use +logged in 5m0s ago$`,
		`^3 approle +approle +- *$`,
		`^4 jwt +jwt +failing +failed 1 times in a row, next attempt now: jwt login: vault answered 400$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got:\n%s", out.String())
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d:\n%q\ndoes not match\n%s", i, lines[i], re)
		}
	}
}
