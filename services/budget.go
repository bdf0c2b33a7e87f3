package services

import (
	"slices"
	"time"

	"github.com/certkeeper/certkeeper/internal/notice"
)

// The reload budget (a service's min_reload_interval). Every reload drops
// long-lived connections and costs the server memory, so routine changes
// (notice.Reason.Urgent is false: a scheduled renewal, a move to a new
// issuer, a CRL refresh, a CA leaving a bundle, restored files) wait until
// the interval has passed since the service's last reload, and then go in
// one reload with everything else waiting. Urgent changes (a first,
// expired, revoked or rotated certificate, a config change, a CA added to
// a trust bundle) go after the settle window as before, and take the
// routine ones waiting with them. A routine change whose deadline (the
// safe margin of the certificate loaded now, the NextUpdate of a CRL
// loaded now) comes first is loaded by then.
//
// Services that share a certificate or bundle are checked and reloaded
// together (components), so the longest budget among those a batch
// notifies holds it. The budget counts from the last reload this process
// made; a restart starts without one.

// routine says whether an arrival may wait for the budget. A change that
// does not say why (a startup check) may not.
func routine(a arrival) bool {
	return a.note.Reason != "" && !a.note.Urgent
}

// release is when the pending arrivals may be handled, given settled, when
// the settle window lets them go, and whether the budget holds them past
// that.
func (g *group) release(pending []arrival, settled time.Time) (time.Time, bool) {
	var open, deadline time.Time
	for _, a := range pending {
		if !routine(a) {
			return settled, false
		}
		if d := a.note.Deadline; !d.IsZero() && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
		for _, name := range a.services {
			s := g.service(name)
			if s == nil || s.cfg.MinReloadInterval <= 0 || s.lastReload.IsZero() {
				continue
			}
			if o := s.lastReload.Add(s.cfg.MinReloadInterval); o.After(open) {
				open = o
			}
		}
	}
	if !deadline.IsZero() && deadline.Before(open) {
		open = deadline
	}
	if !open.After(settled) {
		return settled, false
	}
	return open, true
}

// backlog is what waits for the group's services now: for each service,
// the changes that will reach it with its next batch (rolled-back ones
// included), and until when the budget holds them (zero: it does not).
func (g *group) backlog(heldUntil time.Time) {
	g.mu.Lock()
	waiting := append(slices.Clone(g.parked), g.pending...)
	g.mu.Unlock()
	for _, s := range g.services {
		n := 0
		for _, a := range waiting {
			if slices.Contains(a.services, s.cfg.Name) {
				n++
			}
		}
		until := time.Time{}
		if n > 0 {
			until = heldUntil
		}
		if n == s.backlog && until.Equal(s.heldUntil) {
			continue
		}
		if until.After(s.heldUntil) && !until.IsZero() {
			g.m.log.Info("routine changes wait for the reload budget", "service", s.cfg.Name, "changes", n,
				"until", until.Format(time.RFC3339), "min_reload_interval", s.cfg.MinReloadInterval.String(), "last_reload", s.lastReload.Format(time.RFC3339))
		}
		s.backlog, s.heldUntil = n, until
		if g.m.observer != nil {
			g.m.observer.Backlog(s.cfg.Name, n)
		}
		g.m.update(s.cfg.Name, func(st *Status) { st.Backlog, st.HeldUntil = n, until })
	}
}

// Reasons label reloads in metrics: the reason of the first urgent change
// a reload loads, else of its first change; "none" when it loads no
// change (a reload after a startup check, say).
func leadingReason(loaded []notice.Notice) (reason string, urgent bool) {
	for _, n := range loaded {
		if n.Urgent {
			return string(n.Reason), true
		}
	}
	for _, n := range loaded {
		if n.Reason != "" {
			return string(n.Reason), false
		}
	}
	return "none", false
}

// notices are the changes of b that s reads.
func (b *batch) notices(s *service) []notice.Notice {
	var out []notice.Notice
	for _, a := range b.arrivals {
		if a.note.Reason != "" && slices.Contains(a.services, s.cfg.Name) {
			out = append(out, a.note)
		}
	}
	return out
}
