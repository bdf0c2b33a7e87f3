//go:build integration && faults

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cktest"
	"github.com/certkeeper/certkeeper/test/cloudtest"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// loginRe finds each login in the logs and its method and mount.
var loginRe = regexp.MustCompile(`msg="logged in to vault" accessor=\S+ method=(\S+) mount=(\S+)`)

// auditTrail is the logins in Vault's audit log as "mount:ok" or
// "mount:FAILED", oldest first.
func auditTrail(logins []vaulttest.AuditLogin) []string {
	var out []string
	for _, l := range logins {
		s := l.Mount() + ":ok"
		if !l.OK {
			s = l.Mount() + ":FAILED"
		}
		out = append(out, s)
	}
	return out
}

// TestFleetFallbackAndReturn is the recommended fleet setup, end to end:
// auth "cert" (certkeeper's own certificate) first, auth "aws" as the way
// back in, a wrapped secret_id last, against the roles setup-auth.sh made.
// Tokens live at most 30s, so logins are frequent.
//
//  1. First boot, no identity certificate yet: cert auth cannot even try
//     (no request reaches Vault), aws logs in, the identity is issued,
//     and the next login is cert's.
//  2. Cert auth's role stops trusting the host and STS refuses: the next
//     login falls through to the AppRole; renewals go on; the identity,
//     still valid, is renewed at once (as asked after a fallback away
//     from cert auth).
//  3. Both repaired: the next login is cert's again.
//
// Vault's audit log counts every login; the metrics' successes by method
// match it, and `status` shows the method in use and why cert auth was
// passed over.
func TestFleetFallbackAndReturn(t *testing.T) {
	t.Parallel()
	e := newCloudEnv(t)
	root := e.vault.Client
	wrapping, err := vaulttest.WrapSecretID(t.Context(), root, vaulttest.ScriptAppRole, "fleet-secret-id-never-printed", "300s")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(e.secretIDFile, []byte(wrapping), 0o600)
	metrics := freeAddr(t)
	cfg := e.config("fleet", []string{e.certBlock(), e.awsBlock(), e.approleBlock(true)}, "",
		e.identityCert("90s"), e.webCert("90s"), telemetryBlock(metrics))
	d := e.start(cfg)

	// 1. First boot.
	d.WaitLog(`certificate issued and written.*cert=vault-identity`, 1, time.Minute)
	d.WaitLog(`certificate issued and written.*cert=web`, 1, time.Minute)
	if m := loginRe.FindStringSubmatch(d.Logs.String()); m == nil || m[1] != "aws" {
		t.Fatalf("first login %v, want aws (no identity certificate yet)", m)
	}
	d.WaitLog(`msg="logged in to vault" accessor=\S+ method=cert `, 1, 2*time.Minute)
	trail := auditTrail(e.logins())
	if trail[0] != "aws:ok" || !strings.Contains(strings.Join(trail, " "), "cert:ok") {
		t.Fatalf("audit trail of the first boot %v: want aws first, then cert", trail)
	}
	t.Logf("first boot, audit trail: %v", trail)

	// 2. Cert auth no longer trusts the host; STS refuses.
	phase2 := len(e.logins())
	mark := d.mark()
	idSerial := certSerial(filepath.Join(e.dir, "id.crt"))
	if _, err := root.Logical().Write("auth/cert/certs/"+vaulttest.ScriptAuthRole, map[string]any{"allowed_common_names": "nobody.invalid"}); err != nil {
		t.Fatal(err)
	}
	e.sts.SetMode(cloudtest.Refuse)
	d.waitLogAfter(mark, `msg="logged in to vault" accessor=\S+ method=approle `, 1, 2*time.Minute)
	d.waitLogAfter(mark, `logged in with a fallback auth method.*preferred=cert .*preferred_skipped_because=`, 1, time.Second)
	d.waitLogAfter(mark, `renewing the cert auth certificate now.*cert=vault-identity`, 1, time.Second)
	d.waitLogAfter(mark, `certificate issued and written.*cert=vault-identity`, 1, time.Minute)
	d.waitLogAfter(mark, `certificate issued and written.*cert=web`, 1, 2*time.Minute)
	if certSerial(filepath.Join(e.dir, "id.crt")) == idSerial {
		t.Error("the identity certificate was not renewed after the fallback")
	}
	out, _, _ := runCertkeeper(t, e.procEnv(), "status", "-config", cfg)
	for _, re := range []string{`(?m)^1 cert +cert +failing +failed \d+ times in a row, next attempt (in |now).*auth/cert/login`,
		`(?m)^2 aws +aws +failing .*SignatureDoesNotMatch`, `(?m)^3 approle +approle +in use +logged in`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status during the fallback does not match %s:\n%s", re, out)
		}
	}
	t.Logf("status during the fallback:\n%s", out)

	// 3. Repaired: the next login that may try cert auth uses it.
	e.vault.SetupAuthScript(t, filepath.Join(e.dir, "pki"), "TOKEN_TTL="+authTokenTTL, "PREFERRED_MAX_TTL=30s", "FALLBACK_MAX_TTL=30s")
	e.sts.SetMode(cloudtest.OK)
	mark = d.mark()
	d.waitLogAfter(mark, `msg="logged in to vault" accessor=\S+ method=cert `, 1, 3*time.Minute)
	d.waitLogAfter(mark, `certificate issued and written.*cert=web`, 1, 2*time.Minute)
	samples := scrape(t, metrics)
	d.Stop()

	logins := e.logins()
	trail = auditTrail(logins)
	broken := strings.Join(trail[phase2:], " ")
	if !strings.Contains(broken, "cert:FAILED") || !strings.Contains(broken, "aws:FAILED") || !strings.Contains(broken, "approle:ok") {
		t.Errorf("audit trail while broken %v: want cert and aws refused, approle in", trail[phase2:])
	}
	if trail[len(trail)-1] != "cert:ok" {
		t.Errorf("last login %s, want cert again after the repair", trail[len(trail)-1])
	}
	if logs := d.Logs.String(); strings.Contains(logs, "renewal failed") {
		t.Error("a renewal failed although a method could always log in")
	}
	// Successes by method in the metrics match Vault's count.
	ok := map[string]int{}
	for _, l := range logins {
		if l.OK {
			ok[l.MountType]++
		}
	}
	for _, m := range []string{"cert", "aws", "approle"} {
		got, _ := cktest.Find(samples, "certkeeper_vault_logins_total", "method", m, "result", "success")
		if int(got) != ok[m] {
			t.Errorf("logins_total{method=%s,result=success} = %v, Vault's audit log counts %d", m, got, ok[m])
		}
	}
	if v, _ := cktest.Find(samples, "certkeeper_vault_auth_method_in_use", "method", "cert", "mount", "cert", "position", "1"); v != 1 {
		t.Errorf("after the return, cert's in_use = %v, want 1", v)
	}
	t.Logf("audit trail: %s", strings.Join(trail, " "))
	t.Logf("audit log excerpt, the fallback and the return:\n%s", auditExcerpt(logins[phase2:]))
}

// auditExcerpt is each login of the trail, one per line, with the
// audit fields that matter (the rest of each entry is HMAC'd anyway).
func auditExcerpt(logins []vaulttest.AuditLogin) string {
	var b strings.Builder
	for _, l := range logins {
		result := "auth granted"
		if !l.OK {
			result = "error: " + l.Error
		}
		fmt.Fprintf(&b, "%s type=response path=%slogin mount_type=%s role=%s %s\n", l.Time.Format("15:04:05.000"), l.MountPoint, l.MountType, l.Role, result)
	}
	b.WriteString("the entries as Vault wrote them:\n")
	for _, l := range logins {
		b.WriteString(l.Line + "\n")
	}
	return b.String()
}

// TestFleetHostOffPastExpiry: the case the chain exists for. A host logs
// in with cert auth, then is off past its identity certificate's expiry.
// Back on, cert auth is refused, aws logs in, the agent renews the
// identity (it is expired, so it is due; no second renewal is asked),
// and the next login is cert's again. No new bootstrap is needed.
func TestFleetHostOffPastExpiry(t *testing.T) {
	t.Parallel()
	e := newCloudEnv(t)
	cfg := e.config("off", []string{e.certBlock(), e.awsBlock()}, "", e.identityCert("60s"), e.webCert("1h"))
	d := e.start(cfg)
	d.WaitLog(`msg="logged in to vault" accessor=\S+ method=cert `, 1, 2*time.Minute)
	d.Stop()
	idCrt := filepath.Join(e.dir, "id.crt")
	expiry := cktest.ReadLeaf(t, idCrt).NotAfter
	for time.Now().Before(expiry.Add(2 * time.Second)) {
		time.Sleep(500 * time.Millisecond)
	}
	before := len(e.logins())

	d = e.start(cfg)
	d.WaitLog(`certificate issued and written.*cert=vault-identity`, 1, time.Minute)
	d.WaitLog(`msg="logged in to vault" accessor=\S+ method=cert `, 1, 2*time.Minute)
	d.Stop()
	trail := auditTrail(e.logins()[before:])
	if len(trail) < 3 || trail[0] != "cert:FAILED" || trail[1] != "aws:ok" || trail[len(trail)-1] != "cert:ok" {
		t.Errorf("audit trail after the restart %v: want cert refused, aws in, then cert", trail)
	}
	// The identity is renewed by the agent because it expired, not on
	// request (which would make two).
	logs := d.Logs.String()
	if !regexp.MustCompile(`issued and written" cert=vault-identity .*reason="certificate expired`).MatchString(logs) ||
		strings.Contains(logs, `reason="rotation requested"`) {
		t.Error("the identity was not renewed as expired, or a second renewal was asked")
	}
	if strings.Contains(logs, "renewing the cert auth certificate now") {
		t.Error("a renewal of the expired identity was asked on top of the agent's own")
	}
	if !cktest.ReadLeaf(t, idCrt).NotAfter.After(time.Now()) {
		t.Error("the identity on disk is still expired")
	}
	t.Logf("after %v off: audit trail %v", time.Since(expiry).Round(time.Second), trail)
}
