//go:build integration && faults

package integration

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestRoleClampsTTL: the role's max_ttl is 2 minutes while the config asks
// for 72h, and one certificate even wants renewal 24h before expiry. Both
// are warned about, and both keep renewing well before expiry, with most
// of each certificate's life left for retries.
func TestRoleClampsTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	if _, err := e.vault.Client.Logical().Write(vaulttest.IntMount+"/roles/short", map[string]any{
		"allowed_domains": vaulttest.Domain, "allow_subdomains": true, "allow_localhost": true, "allow_ip_sans": true,
		"key_type": "ec", "max_ttl": "2m", "ttl": "2m",
	}); err != nil {
		t.Fatal(err)
	}
	cfg := e.writeConfig(
		e.cert("clamped", "short", `ttl = "72h"`),
		e.cert("floor", "short", `ttl = "72h"`, `renew_before = "24h"`),
	)
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=clamped`, 3, 5*time.Minute)
	d.WaitLog(`certificate issued and written.*cert=floor`, 3, time.Minute)
	d.Stop()
	logs := d.Logs.String()
	for _, name := range []string{"clamped", "floor"} {
		if !regexp.MustCompile(`vault issued a shorter lifetime than asked.*cert=` + name + `|cert=` + name + `.*vault issued a shorter lifetime than asked`).MatchString(logs) {
			t.Errorf("%s: no warning that the role clamped the TTL", name)
		}
	}
	if !regexp.MustCompile(`renewal policy does not fit this certificate's lifetime.*cert=floor|cert=floor.*renewal policy does not fit`).MatchString(logs) {
		t.Error("floor: no warning that renew_before does not fit the lifetime")
	}

	// Each renewal must come while the previous certificate still had a
	// good share of its life left.
	issued := regexp.MustCompile(`time=(\S+) .*certificate issued and written.*cert=(\w+) .*not_after=(\S+)`)
	lastExpiry := map[string]time.Time{}
	minLeft, renewals := map[string]time.Duration{}, map[string]int{}
	for _, line := range strings.Split(logs, "\n") {
		m := issued.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, _ := time.Parse(time.RFC3339Nano, m[1])
		notAfter, _ := time.Parse(time.RFC3339, m[3])
		if prev, ok := lastExpiry[m[2]]; ok {
			left := prev.Sub(at)
			renewals[m[2]]++
			if l, ok := minLeft[m[2]]; !ok || left < l {
				minLeft[m[2]] = left
			}
			if left < 35*time.Second {
				t.Errorf("%s renewed with only %v left of a 150s certificate: no room for retries", m[2], left)
			}
		}
		lastExpiry[m[2]] = notAfter
	}
	// Three issuances of each were waited for above: a parse that matched
	// nothing must not pass as "no renewal came too late".
	for _, name := range []string{"clamped", "floor"} {
		if renewals[name] < 2 {
			t.Errorf("%s: %d renewals found in the logs, want at least 2", name, renewals[name])
			continue
		}
		t.Logf("%s: %d renewals of a 150s certificate, each with at least %v of the old one left", name, renewals[name], minLeft[name].Round(time.Second))
	}
}
