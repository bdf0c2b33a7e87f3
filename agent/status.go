package agent

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
)

// States a certificate can be in, as status and metrics show them.
const (
	StateValid   = "valid"   // good and before its renewal point
	StateDue     = "due"     // past its renewal point, not yet renewed
	StateFailing = "failing" // the last attempt failed
	StateMissing = "missing" // nothing usable on disk
	StateExpired = "expired"
	// StateRevoked: Vault revoked the certificate on disk; it is being
	// replaced.
	StateRevoked = "revoked"
)

// Status is what is known about one certificate.
type Status struct {
	Name       string    `json:"name"`
	CommonName string    `json:"common_name"`
	Serial     string    `json:"serial,omitempty"`
	Issuer     string    `json:"issuer,omitempty"`
	NotBefore  time.Time `json:"not_before,omitzero"`
	NotAfter   time.Time `json:"not_after,omitzero"`
	RenewAt    time.Time `json:"renew_at,omitzero"`
	// RevokedAt is when Vault revoked the certificate on disk, as its
	// issuer's CRL says; zero when it is not known to be revoked.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	State     string    `json:"state"`
	// LastResult is the last pass's action, or "failed".
	LastResult  string    `json:"last_result,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	Failures    int       `json:"consecutive_failures"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`

	// Window is the certificate's renewal windows, when it has any: the
	// next one, and whether RenewAt falls outside them and why.
	Window *WindowStatus `json:"renew_window,omitempty"`
	// CARotation is set while the mount's default issuer is not the one
	// the certificate came from (carotation.go).
	CARotation *CAStatus `json:"ca_rotation,omitempty"`
	// OutlivesIssuer: the certificate expires after the CA that signed
	// it (at IssuerNotAfter), when clients stop verifying it.
	OutlivesIssuer bool      `json:"outlives_issuer,omitempty"`
	IssuerNotAfter time.Time `json:"issuer_not_after,omitzero"`
}

// record folds the outcome of a pass into c's status and returns a copy.
func (a *Agent) record(c config.Certificate, res *Result, err error) Status {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.status[c.Name]
	if st == nil {
		st = &Status{Name: c.Name}
		a.status[c.Name] = st
	}
	st.CommonName = c.CommonName
	if h := a.held[c.Name]; h != nil {
		leaf := h.bundle.Leaf
		st.Serial, st.Issuer = h.record.Serial, leaf.Issuer.CommonName
		st.NotBefore, st.NotAfter = leaf.NotBefore, leaf.NotAfter
		st.RenewAt, _ = renewAt(c, h, now)
		st.Window = windowStatus(c, plan(c, h, now), now)
		st.CARotation = a.caStepFor(a.cfg, c, h, now).status()
		st.OutlivesIssuer, st.IssuerNotAfter = outlivesIssuer(h)
		st.RevokedAt = time.Time{}
		if r, ok := a.revoked[c.Name]; ok && r.serial == h.record.Serial {
			st.RevokedAt = r.at
		}
	}
	if err != nil {
		st.Failures++
		st.LastResult = "failed"
		st.LastError = strings.ReplaceAll(err.Error(), "\n", "; ")
		st.NextAttempt = now.Add(a.retryDelay(backoff.Default, st.Failures, err))
	} else {
		st.Failures = 0
		st.LastResult = string(res.Action)
		st.LastError = ""
		st.LastSuccess = now
		st.NextAttempt = res.RenewAt
	}
	st.State = stateOf(st, now)
	a.reassess(c.Name, now)
	return *st
}

func stateOf(st *Status, now time.Time) string {
	switch {
	case st.NotAfter.IsZero():
		return StateMissing
	case !now.Before(st.NotAfter):
		return StateExpired
	case !st.RevokedAt.IsZero():
		return StateRevoked
	case st.Failures > 0:
		return StateFailing
	case !now.Before(st.RenewAt):
		return StateDue
	}
	return StateValid
}

// Statuses returns the status of every configured certificate, sorted by
// name, as the running agent knows it.
func (a *Agent) Statuses() []Status {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Status, 0, len(a.cfg.Certificates))
	for _, c := range a.cfg.Certificates {
		out = append(out, a.statusOf(c, now))
	}
	slices.SortFunc(out, func(x, y Status) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

// statusOf is c's status as known at now; a.mu is held.
func (a *Agent) statusOf(c config.Certificate, now time.Time) Status {
	st, ok := a.status[c.Name]
	if !ok {
		return Status{Name: c.Name, CommonName: c.CommonName, State: StateMissing, LastResult: "pending"}
	}
	cp := *st
	cp.State = stateOf(&cp, now)
	return cp
}

// DiskStatus reads each configured certificate from disk, without Vault
// and without a running agent, for `certkeeper status`.
func DiskStatus(cfg *config.Config, now time.Time) []Status {
	var out []Status
	for _, c := range cfg.Certificates {
		st := Status{Name: c.Name, CommonName: c.CommonName}
		h, err := loadHeld(cfg, c)
		if err != nil {
			st.State = StateMissing
			if !errors.Is(err, errNothingOnDisk) {
				st.LastError = err.Error()
			}
			out = append(out, st)
			continue
		}
		leaf := h.bundle.Leaf
		st.Serial, st.Issuer = h.record.Serial, leaf.Issuer.CommonName
		st.NotBefore, st.NotAfter = leaf.NotBefore, leaf.NotAfter
		st.RenewAt, _ = renewAt(c, h, now)
		st.Window = windowStatus(c, plan(c, h, now), now)
		st.OutlivesIssuer, st.IssuerNotAfter = outlivesIssuer(h)
		st.State = stateOf(&st, now)
		if err := fits(c, h, now); err != nil && st.State == StateValid {
			// Good but no longer what the config asks: the agent will
			// replace it at its next pass.
			st.State = StateDue
			st.LastError = strings.ReplaceAll(err.Error(), "\n", "; ")
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(x, y Status) int { return cmp.Compare(x.Name, y.Name) })
	return out
}
