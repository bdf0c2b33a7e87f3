package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/control"
	"github.com/certkeeper/certkeeper/daemon"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/trust"
)

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcode ✓":          "plain text, ünïcode ✓",
		"red \x1b[31mALERT\x1b[0m":       `red \x1b[31mALERT\x1b[0m`,
		"title \x1b]0;pwned\x07":         `title \x1b]0;pwned\x07`,
		"two\nlines\r\tand a tab":        "two lines  and a tab",
		"C1 csi \u009b2J, del \x7f":      `C1 csi \u009b2J, del \x7f`,
		"bidi \u202eevil\u202c":          `bidi \u202eevil\u202c`,
		"bad utf-8 \xff\xfe end":         `bad utf-8 \xff\xfe end`,
		"a real replacement char \uFFFD": "a real replacement char \uFFFD",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStatusCleansEverything: escapes in a Vault error, a service's
// command output and a CA's subject reach neither the table nor the JSON.
func TestStatusCleansEverything(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	esc := "\x1b[2J\x1b[Hall good\u009b31m\u202e"
	r := daemon.StatusReport{
		Certificates: []agent.Status{{Name: "web", CommonName: "web.example.internal", State: agent.StateFailing,
			NotAfter: now.Add(time.Hour), RenewAt: now, Failures: 1, NextAttempt: now.Add(time.Minute), LastError: "vault said: " + esc}},
		Services:    []services.Status{{Name: "nginx", State: services.StateCheckFailed, LastError: "check failed: " + esc}},
		ServicesErr: errors.New("reading services.json: " + esc),
		Bundles: []trust.Status{{Name: "clients", State: trust.StateOK, LastError: esc,
			CAs: []trust.CAInfo{{Subject: "CA " + esc, NotAfter: now.Add(time.Hour)}}}},
		Telemetry: &control.TelemetryStatus{Listen: "127.0.0.1:9847", Failures: 1, Problem: "cannot listen: " + esc},
		Source:    "from " + esc,
	}
	cleanAll(&r)
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut, cfg: &config.Config{Certificates: []config.Certificate{{Name: "web", Notify: []string{"nginx"}}}}}
	printStatus(e, r, now)
	printServingStatus(e, r, now)
	e.json = true
	json.NewEncoder(&out).Encode(r)
	for name, text := range map[string]string{"stdout": out.String(), "stderr": errOut.String()} {
		for _, c := range text {
			if (unicode.IsControl(c) && c != '\n') || reorders(c) {
				t.Errorf("%s holds %U:\n%q", name, c, text)
				break
			}
		}
		// encoding/json would escape the ESC itself as \u001b, which
		// jq -r turns back into one.
		if strings.Contains(text, `\u001b`) {
			t.Errorf("%s holds an escaped ESC that a JSON reader would restore:\n%s", name, text)
		}
	}
	for _, want := range []string{`\x1b[2J\x1b[Hall good\u009b31m\u202e`, "TELEMETRY: cannot listen"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout does not show %q:\n%s", want, out.String())
		}
	}
}
