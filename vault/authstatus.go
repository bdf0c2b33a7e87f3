package vault

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"time"
)

// LoginObserver hears every login attempt, by method, for metrics.
type LoginObserver interface {
	ObserveLogin(method string, ok bool)
}

// AuthMethodStatus is what status and metrics show of one auth block.
// LastError never holds a secret: login errors are built from Vault's
// messages, file names and what a metadata server answered, never from a
// token, a JWT or a signed request.
type AuthMethodStatus struct {
	Method string `json:"method"`
	Mount  string `json:"mount"`
	// InUse marks the method whose token certkeeper holds now.
	InUse      bool      `json:"in_use"`
	LoggedInAt time.Time `json:"logged_in_at,omitzero"`
	// Failures counts its failed logins since it last logged in;
	// LastError is why it failed (why it was passed over, when a later
	// method is in use), and NextAttempt is when it may be tried again.
	Failures    int       `json:"consecutive_failures"`
	LastError   string    `json:"last_error,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// AuthStatus is the chain of auth methods, in config order (the first is
// the preferred one).
func (c *Client) AuthStatus() []AuthMethodStatus {
	s := c.session
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AuthMethodStatus, len(s.methods))
	for i, m := range s.methods {
		st := AuthMethodStatus{Method: m.cfg.Method, Mount: m.cfg.Mount, Failures: m.failures, LastError: errText(m.lastErr), NextAttempt: m.nextTry}
		if s.valid && s.inUse == i {
			st.InUse, st.LoggedInAt = true, s.loggedInAt
		}
		out[i] = st
	}
	return out
}

// certValidAt says whether the first certificate in file is within its
// validity at t. Unreadable means no.
func certValidAt(file string, t time.Time) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return false
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	return !t.Before(leaf.NotBefore) && t.Before(leaf.NotAfter)
}
