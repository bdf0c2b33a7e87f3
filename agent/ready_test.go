package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// unplacedByScan is what Unplaced reports, found the plain way: a look at
// every configured certificate. readiness must always agree with it.
func (a *Agent) unplacedByScan(limit int) UnplacedReport {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	var r UnplacedReport
	var waiting []Status
	for _, c := range a.cfg.Certificates {
		st := a.status[c.Name]
		if a.placed[c.Name] && st != nil && !st.NotAfter.IsZero() && now.Before(st.NotAfter) {
			continue
		}
		r.Total++
		failed := st != nil && st.LastError != ""
		if failed {
			r.Failing++
		}
		switch {
		case failed && len(r.Listed) < limit:
			r.Listed = append(r.Listed, a.statusOf(c, now))
		case !failed && len(waiting) < limit:
			waiting = append(waiting, a.statusOf(c, now))
		}
	}
	r.Listed = append(r.Listed, waiting[:min(len(waiting), limit-len(r.Listed))]...)
	return r
}

// TestUnplacedFollowsEveryChange: through passes that write, fail, find a
// certificate expired, and reloads that add, remove and change
// certificates, with the clock moving past certificates' expiry, Unplaced
// (kept up to date change by change) says exactly what a look at every
// certificate says, at every limit.
func TestUnplacedFollowsEveryChange(t *testing.T) {
	// The sequences must reach every state Unplaced tells apart.
	var saw struct{ placed, failing, expired, revived bool }
	for seed := range uint64(4) {
		unplacedSequence(t, seed, &saw.placed, &saw.failing, &saw.expired, &saw.revived)
	}
	if !saw.placed || !saw.failing || !saw.expired || !saw.revived {
		t.Errorf("the sequences missed a state: in place %v, failing %v, expired while placed %v, in place again after the clock was set back %v",
			saw.placed, saw.failing, saw.expired, saw.revived)
	}
}

func unplacedSequence(t *testing.T, seed uint64, sawPlaced, sawFailing, sawExpired, sawRevived *bool) {
	all := make([]string, 12)
	for i := range all {
		all[i] = fmt.Sprintf("c%02d", i)
	}
	cfg := testConfig(t, all...)
	fv := newFakeVault(t)
	now := time.Now()
	clock := func() time.Time { return now }
	fv.clock = clock
	a := New(Options{Config: cfg, Issuer: fv, Now: clock, Log: slog.New(slog.DiscardHandler)})
	rnd := rand.New(rand.NewPCG(18, seed))
	configured := slices.Clone(cfg.Certificates)
	expired := func() map[string]bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		out := map[string]bool{}
		for _, c := range a.cfg.Certificates {
			if st := a.status[c.Name]; st != nil && a.placed[c.Name] {
				*sawPlaced = true
				out[c.Name] = !now.Before(st.NotAfter)
			}
		}
		return out
	}
	check := func(step int, what string) {
		t.Helper()
		for _, e := range expired() {
			*sawExpired = *sawExpired || e
		}
		for _, limit := range []int{0, 1, 3, 100} {
			got, want := a.Unplaced(limit), a.unplacedByScan(limit)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d, step %d (%s), limit %d: Unplaced = %d/%d %v, a look at every certificate says %d/%d %v",
					seed, step, what, limit, got.Total, got.Failing, names(got.Listed), want.Total, want.Failing, names(want.Listed))
			}
			*sawFailing = *sawFailing || want.Failing > 0
		}
	}
	check(0, "start")
	for step := 1; step <= 200; step++ {
		var what string
		switch op := rnd.IntN(10); {
		case op < 6:
			name := all[rnd.IntN(len(all))]
			fv.mu.Lock()
			if rnd.IntN(3) == 0 {
				fv.failFor[name+".example.internal"] = errors.New("vault is unreachable")
			} else {
				delete(fv.failFor, name+".example.internal")
			}
			fv.mu.Unlock()
			a.pass(t.Context(), name)
			what = "pass of " + name
		case op < 8:
			// Sometimes past the one-hour certificates' expiry; now and
			// then set back, as an operator may set a wrong clock right.
			d := time.Duration(rnd.IntN(40)) * time.Minute
			if rnd.IntN(4) == 0 {
				d = -d
			}
			before := expired()
			now = now.Add(d)
			for name, e := range expired() {
				*sawRevived = *sawRevived || before[name] && !e
			}
			what = fmt.Sprintf("clock moved by %s", d)
		default:
			next := *a.config()
			next.Certificates = nil
			for _, c := range configured {
				switch rnd.IntN(6) {
				case 0: // removed
				case 1: // changed: another SAN
					c.AltNames = []string{c.Name + ".example.internal", fmt.Sprintf("%s-%d.example.internal", c.Name, step)}
					next.Certificates = append(next.Certificates, c)
				default:
					next.Certificates = append(next.Certificates, c)
				}
			}
			rnd.Shuffle(len(next.Certificates), func(i, j int) {
				next.Certificates[i], next.Certificates[j] = next.Certificates[j], next.Certificates[i]
			})
			a.Reconfigure(&next, nil)
			what = fmt.Sprintf("reload to %d certificates", len(next.Certificates))
		}
		check(step, what)
	}
}
