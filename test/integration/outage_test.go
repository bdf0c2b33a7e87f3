//go:build integration && faults

package integration

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/test/faultproxy"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// shortCert renews about 30s after issuance: a 270s TTL is a 300s life
// (Vault backdates 30s), and 20% of it falls 30s after issuance.
func shortCert(e *env, name string, extra ...string) string {
	return e.cert(name, vaulttest.RoleEC, append([]string{`ttl = "270s"`, `renew_fraction = 0.2`, `renew_jitter = 0.01`}, extra...)...)
}

// TestVaultDownOrHangingDuringRenewal: Vault stops answering (hangs: the
// connection is accepted and nothing comes back) or dies (connections are
// reset) just before a renewal is due, and stays so for about 100s. The
// files on disk must not change, the retries must follow the capped,
// jittered backoff (so requests per minute stay low), and the renewal must
// happen soon after Vault is back.
func TestVaultDownOrHangingDuringRenewal(t *testing.T) {
	for _, mode := range []faultproxy.Mode{faultproxy.Blackhole, faultproxy.Reset} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, vaulttest.Options{})
			p := e.proxy()
			cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", p.Addr), `timeout = "3s"`), shortCert(e, "web"))
			d := startDaemon(t, cfg)
			d.WaitLog(`certificate issued and written.*cert=web`, 1, 60*time.Second)
			before := fileSum(t, e.setPaths("web")...)

			down := time.Now()
			p.SetMode(mode)
			outage := 100 * time.Second
			time.Sleep(outage)
			if got := fileSum(t, e.setPaths("web")...); got != before {
				t.Fatal("files changed while Vault was unavailable")
			}
			failures := d.Count(`renewal failed; keeping the files on disk.*cert=web`)
			if failures < 2 {
				t.Fatalf("only %d failed attempts logged during a %v outage", failures, outage)
			}
			up := time.Now()
			p.SetMode(faultproxy.Pass)
			mark := d.mark()
			d.waitLogAfter(mark, `certificate issued and written.*cert=web`, 1, 6*time.Minute)
			recovered := time.Since(up)
			e.checkPair(t, "web")
			if got := fileSum(t, e.setPaths("web")...); got == before {
				t.Error("log says renewed but the files are unchanged")
			}

			recs := p.Records()
			var during []faultproxy.Record
			for _, r := range recs {
				if !r.At.Before(down) && r.At.Before(up) {
					during = append(during, r)
				}
			}
			perMinute := faultproxy.PerMinute(during, down, up, nil)
			peak := faultproxy.MaxInWindow(during, time.Minute, nil)
			attempts := signTimes(during)
			intervals := gaps(attempts)
			t.Logf("%s: outage %v, %d requests to vault (%d sign attempts), per minute %v, peak in any 60s %d; intervals between attempts %v; renewed %v after vault came back",
				mode, outage, len(during), len(attempts), perMinute, peak, intervals, recovered.Round(100*time.Millisecond))
			byPath := map[string]int{}
			for _, r := range during {
				byPath[r.Method+" "+r.Path]++
			}
			t.Logf("%s: requests during the outage by path: %v", mode, byPath)
			// A fixed 5s retry would be 12 a minute; the backoff's first
			// ceilings are 5, 10, 20, 40s (plus the 3s timeout per hang).
			// The revocation check polls the issuer's CRL on a schedule of
			// its own, with the same backoff capped at its 1m period: at
			// most as many again, never a storm.
			if signPeak := faultproxy.MaxInWindow(during, time.Minute, isSign); signPeak > 8 {
				t.Errorf("%d sign requests to Vault in one minute of outage: backoff is not holding them back", signPeak)
			}
			if peak > 16 {
				t.Errorf("%d requests to Vault in one minute of outage: backoff is not holding them back", peak)
			}
			for i, g := range intervals {
				ceiling := backoff.Default.Delay(i, 1) + 5*time.Second // + timeout and scheduling slack
				if g < backoff.Default.Min-200*time.Millisecond || g > ceiling {
					t.Errorf("interval %d between attempts is %v, want within [%v, %v]", i+1, g, backoff.Default.Min, ceiling)
				}
			}
			if len(intervals) >= 3 && intervals[0] == intervals[1] && intervals[1] == intervals[2] {
				t.Errorf("intervals %v are equal: retries are not jittered", intervals)
			}
			if n := d.Count(`logged in to vault`); n != 1 {
				t.Errorf("%d logins: an outage is not an auth failure", n)
			}
			d.Stop()
		})
	}
}

// TestVaultServerErrorsThenSuccess: Vault answers 500 (the Raft election
// message), 502 and 503 to the first signs. Each is one request (the api
// client's retries are off, ours back off), none causes a new login, and
// the certificate is issued once Vault answers.
func TestVaultServerErrorsThenSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	p := e.proxy()
	faults := []struct {
		code int
		msg  string
	}{
		{http.StatusInternalServerError, "local node not active but active cluster node not found"},
		{http.StatusBadGateway, "bad gateway"},
		{http.StatusServiceUnavailable, "Vault is sealed"},
	}
	var mu sync.Mutex
	signs := 0
	p.SetHook(func(ex *faultproxy.Exchange, forward func() error) error {
		if strings.Contains(ex.Path, "/sign/") {
			mu.Lock()
			n := signs
			signs++
			mu.Unlock()
			if n < len(faults) {
				ex.Reply(faults[n].code, fmt.Sprintf(`{"errors":[%q]}`, faults[n].msg))
				return nil
			}
		}
		return forward()
	})
	cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", p.Addr)), e.cert("web", vaulttest.RoleEC))
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web`, 1, 2*time.Minute)
	e.checkPair(t, "web")
	logs := d.Logs.String()
	for _, f := range faults {
		if !strings.Contains(logs, fmt.Sprintf("vault answered %d on pki_int/sign/ec: %s", f.code, f.msg)) {
			t.Errorf("no failed attempt logged for the %d", f.code)
		}
	}
	attempts := signTimes(p.Records())
	if len(attempts) != len(faults)+1 {
		t.Errorf("%d sign requests reached the proxy, want %d: one per attempt, no hidden retries", len(attempts), len(faults)+1)
	}
	if n := d.Count(`logged in to vault`); n != 1 {
		t.Errorf("%d logins: server errors (even the election 500) are not auth failures", n)
	}
	if n := d.Count(`vault refused the token`); n != 0 {
		t.Errorf("a server error was treated as a refused token %d times", n)
	}
	t.Logf("500/502/503 then success: intervals between attempts %v", gaps(attempts))
	d.Stop()
}

// TestRateLimitRetryAfter: Vault's rate-limit quota answers 429 with
// Retry-After: 12. The next attempt waits at least that long, and nothing
// else is sent until the 12 seconds are over (what other parts of
// certkeeper held back may go then, before the retry).
func TestRateLimitRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	p := e.proxy()
	const retryAfter = 12 * time.Second
	var mu sync.Mutex
	limited := false
	p.SetHook(func(ex *faultproxy.Exchange, forward func() error) error {
		mu.Lock()
		first := !limited && strings.Contains(ex.Path, "/sign/")
		limited = limited || first
		mu.Unlock()
		if first {
			ex.Reply(http.StatusTooManyRequests, `{"errors":["request path \"pki_int/sign/ec\": rate limit quota exceeded"]}`)
			ex.RespHeader.Set("Retry-After", fmt.Sprint(int(retryAfter.Seconds())))
			return nil
		}
		return forward()
	})
	cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", p.Addr)), e.cert("web", vaulttest.RoleEC))
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web`, 1, 2*time.Minute)
	recs := p.Records()
	var limitedAt, nextAt time.Time
	var between []string
	for _, r := range recs {
		switch {
		case r.Status == http.StatusTooManyRequests:
			// From when the 429 went out: a request that reached the
			// proxy before then was sent before certkeeper could know.
			limitedAt = r.Answered
		case !limitedAt.IsZero() && nextAt.IsZero() && isSign(r):
			nextAt = r.At
		case !limitedAt.IsZero() && nextAt.IsZero() && r.At.After(limitedAt) && r.At.Before(limitedAt.Add(retryAfter)) && !strings.HasSuffix(r.Path, "/auth/token/renew-self"):
			// The token watcher renews right after a login, whenever
			// that lands; anything else would be a stacked retry.
			between = append(between, r.Method+" "+r.Path)
		}
	}
	if limitedAt.IsZero() || nextAt.IsZero() {
		t.Fatalf("no 429 followed by a retry in %+v", recs)
	}
	waited := nextAt.Sub(limitedAt)
	t.Logf("429 with Retry-After %v: next attempt %v later, other requests in between: %v", retryAfter, waited.Round(100*time.Millisecond), between)
	if waited < retryAfter {
		t.Errorf("retried %v after a 429 with Retry-After %v", waited, retryAfter)
	}
	if len(between) != 0 {
		t.Errorf("requests sent while Vault asked to wait: %v", between)
	}
	if !regexp.MustCompile(`renewal failed.*rate limit quota exceeded`).MatchString(d.Logs.String()) {
		t.Error("the 429 was not logged as a failed attempt")
	}
	d.Stop()
}
