package main

import (
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/services"
)

// Status says when a certificate will change and why not sooner: its
// window, a CA rotation it waits for, an issuer that expires first; and
// for a service, the changes its reload budget holds.
func TestChangeNotes(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	st := agent.Status{
		Window:         &agent.WindowStatus{Windows: []string{"Mon-Fri 02:00-05:00 UTC"}, NextStart: now.Add(14 * time.Hour), NextEnd: now.Add(17 * time.Hour)},
		CARotation:     &agent.CAStatus{NewIssuer: "client CA 2", Pinned: true, TrustedSince: now.Add(-time.Hour), SoakEnd: now.Add(23 * time.Hour)},
		OutlivesIssuer: true, IssuerNotAfter: now.Add(72 * time.Hour),
	}
	got := strings.Join(changeNotes(st, now), "; ")
	for _, want := range []string{
		"window Mon-Fri 02:00-05:00 UTC: next opens in 14h0m",
		"new issuer client CA 2: renewals stay with the old issuer until the soak ends in 23h0m",
		"outlives its issuer, which expires in 3d0h",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("notes %q lack %q", got, want)
		}
	}
	st = agent.Status{Window: &agent.WindowStatus{Windows: []string{"Sun 02:00-03:00"}, Outside: true},
		CARotation: &agent.CAStatus{NewIssuer: "client CA 2", MoveAt: now.Add(90 * time.Minute)}}
	got = strings.Join(changeNotes(st, now), "; ")
	for _, want := range []string{"none opens before the safe margin", "new issuer client CA 2, moves to it in 1h30m"} {
		if !strings.Contains(got, want) {
			t.Errorf("notes %q lack %q", got, want)
		}
	}
	if n := heldNote(services.Status{Backlog: 3, HeldUntil: now.Add(40 * time.Second)}, now); n != "3 change(s) held by min_reload_interval, reload in 40s" {
		t.Errorf("held note %q", n)
	}
}
