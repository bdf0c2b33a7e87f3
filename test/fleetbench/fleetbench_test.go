//go:build linux

package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The spread check must catch a fleet that does not spread: every
// rotation in the first second of a one-minute spread fails it, the
// same rotations drawn uniformly over the minute pass.
func TestCheckSpread(t *testing.T) {
	const hosts, certs = 100, 4
	spread := time.Minute
	for _, tc := range []struct {
		name   string
		offset func(rng *rand.Rand) time.Duration
		fail   bool
	}{
		{"uniform", func(rng *rand.Rand) time.Duration { return time.Duration(rng.Float64() * float64(spread)) }, false},
		{"burst", func(rng *rand.Rand) time.Duration { return time.Duration(rng.Float64() * float64(time.Second)) }, true},
		{"late", func(rng *rand.Rand) time.Duration { return spread + time.Duration(rng.Float64()*float64(spread)) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			start := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
			r := &runResult{opts: &options{n: hosts, certs: certs}}
			ph := r.begin("rotate", spread, "")
			ph.start, ph.asked = start, start.Add(100*time.Millisecond)
			for range hosts * certs {
				at := start.Add(tc.offset(rng))
				r.records = append(r.records, record{Start: at, Dur: 5 * time.Millisecond, Method: "PUT", Path: "pki_int/sign/ec", Status: 200})
				if at.After(ph.last) {
					ph.last = at
				}
			}
			s := r.stats(ph)
			r.checkSpread(ph, s)
			if got := len(r.failures) > 0; got != tc.fail {
				t.Errorf("check failed = %v, want %v; failures %v (even %.1f/s, mean %.1f/s, busiest tenth %.1f/s, simulated p99 %.1f/s)",
					got, tc.fail, r.failures, s.even, s.meanInSpread, s.peakBin, s.predP99)
			}
		})
	}
}

// The simulated busiest tenth is above the even share and grows with
// the noise of small fleets.
func TestPredictPeak(t *testing.T) {
	for _, want := range []int{80, 800, 8000} {
		p50, p99 := predictPeak(want, 10, 2000, 1)
		even := float64(want) / 10
		if p50 <= even || p99 < p50 || p99 > 3*even {
			t.Errorf("%d draws in 10 bins: busiest bin p50 %.0f p99 %.0f, even %.0f", want, p50, p99, even)
		}
	}
	small, _ := predictPeak(80, 10, 2000, 1)
	large, _ := predictPeak(8000, 10, 2000, 1)
	if small/8 <= large/800 {
		t.Errorf("a small fleet's busiest bin (%.0f of 80) should be relatively higher than a large one's (%.0f of 8000)", small, large)
	}
}

// A proxy counts what passes, points a standby's redirect at the other
// node's proxy, refuses connections while down (as a dead node does), and
// comes back on the same address.
func TestProxy(t *testing.T) {
	active := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"data":{}}`)
	}))
	defer active.Close()
	standby := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, active.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer standby.Close()
	ps, err := newProxySet([]string{standby.URL, active.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(ps.proxies[0].Addr + "/v1/pki_int/sign/ec")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != ps.proxies[1].Addr+"/v1/pki_int/sign/ec" {
		t.Errorf("redirect to %q, want the active node's proxy %s", loc, ps.proxies[1].Addr)
	}
	ps.proxies[1].Down()
	if _, err := http.Get(ps.proxies[1].Addr + "/v1/x"); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("a request to a proxy that is down got %v, want connection refused", err)
	}
	if err := ps.proxies[1].Up(); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(ps.proxies[1].Addr + "/v1/pki_int/sign/ec")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	recs := ps.rec.all()
	if len(recs) != 2 || recs[0].Status != 307 || recs[1].Status != 200 || recs[1].Node != 1 || recs[1].kind() != "issue" {
		t.Errorf("records %+v, want a 307 at node 0 and a 200 issue at node 1", recs)
	}
}

// The plotting library is for the bench alone: certkeeper must not link
// it.
func TestCertkeeperDoesNotLinkGonum(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list certkeeper's dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/certkeeper/certkeeper/cmd/certkeeper").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "gonum.org/") {
			t.Errorf("certkeeper links %s", p)
		}
	}
}
