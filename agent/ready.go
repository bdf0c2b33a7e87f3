package agent

import "time"

// readiness is which configured certificates are in place (see Unplaced),
// kept up to date as passes write files and record outcomes, so that the
// daemon's check after every pass costs what changed rather than a look at
// every certificate: with 10,000 certificates, the look at every one after
// every pass was 6.8 s of CPU, a fifth of the start (profile, N=10,000).
// Guarded by Agent.mu.
type readiness struct {
	// pos is each configured certificate's position in the config; in and
	// failing are indexed by it.
	pos     map[string]int
	in      []bool
	failing []bool
	// notIn and failingN count the certificates not in place, and those of
	// them whose last attempt failed.
	notIn, failingN int
	// from is a position before which every certificate is in place: the
	// listing starts there.
	from int
	// expires is no later than the earliest NotAfter of a certificate in
	// place. Until then none of them can have expired; from then on the
	// next Unplaced looks at every certificate again (rebuild), once per
	// expiry, which also finds the next earliest.
	expires time.Time
	// revives is no earlier than the latest NotAfter of a certificate
	// found not in place only because it had expired: should the clock be
	// set back before it, that one is in place again, and the next
	// Unplaced looks at every certificate again.
	revives time.Time
}

// inPlace is whether name's files are in place at now (Unplaced); a.mu is
// held. Whichever the answer, it notes when it may change with the clock
// alone.
func (a *Agent) inPlace(name string, now time.Time) (in bool, failed bool) {
	st := a.status[name]
	if a.placed[name] && st != nil && !st.NotAfter.IsZero() {
		if now.Before(st.NotAfter) {
			if a.ready.expires.IsZero() || st.NotAfter.Before(a.ready.expires) {
				a.ready.expires = st.NotAfter
			}
			return true, false
		}
		if st.NotAfter.After(a.ready.revives) {
			a.ready.revives = st.NotAfter
		}
	}
	return false, st != nil && st.LastError != ""
}

// rebuildReadiness looks at every configured certificate: at start, after
// a reconfiguration, when one in place may have expired, and when the
// clock was set back before the expiry of one that was not. a.mu is held.
func (a *Agent) rebuildReadiness(now time.Time) {
	n := len(a.cfg.Certificates)
	a.ready = readiness{pos: make(map[string]int, n), in: make([]bool, n), failing: make([]bool, n)}
	r := &a.ready
	for i, c := range a.cfg.Certificates {
		r.pos[c.Name] = i
		in, failed := a.inPlace(c.Name, now)
		r.in[i], r.failing[i] = in, failed
		switch {
		case in:
		case failed:
			r.notIn++
			r.failingN++
		default:
			r.notIn++
		}
	}
}

// reassess updates the readiness of name after its placed mark or status
// changed; a.mu is held.
func (a *Agent) reassess(name string, now time.Time) {
	r := &a.ready
	i, ok := r.pos[name]
	if !ok {
		return // not configured (any more): Unplaced does not list it
	}
	if !r.in[i] {
		r.notIn--
		if r.failing[i] {
			r.failingN--
		}
	}
	in, failed := a.inPlace(name, now)
	r.in[i], r.failing[i] = in, failed
	if !in {
		r.notIn++
		if failed {
			r.failingN++
		}
		r.from = min(r.from, i)
	}
}

// unplaced is Unplaced with a.mu held.
func (a *Agent) unplaced(limit int, now time.Time) UnplacedReport {
	if !a.ready.expires.IsZero() && !now.Before(a.ready.expires) || now.Before(a.ready.revives) {
		a.rebuildReadiness(now)
	}
	r := &a.ready
	rep := UnplacedReport{Total: r.notIn, Failing: r.failingN}
	for r.from < len(r.in) && r.in[r.from] {
		r.from++
	}
	wantFailing, wantWaiting := min(limit, r.failingN), min(limit, r.notIn-r.failingN)
	var waiting []Status
	for i := r.from; i < len(r.in) && (len(rep.Listed) < wantFailing || len(waiting) < wantWaiting); i++ {
		switch {
		case r.in[i]:
		case r.failing[i] && len(rep.Listed) < wantFailing:
			rep.Listed = append(rep.Listed, a.statusOf(a.cfg.Certificates[i], now))
		case !r.failing[i] && len(waiting) < wantWaiting:
			waiting = append(waiting, a.statusOf(a.cfg.Certificates[i], now))
		}
	}
	rep.Listed = append(rep.Listed, waiting[:min(len(waiting), limit-len(rep.Listed))]...)
	return rep
}
