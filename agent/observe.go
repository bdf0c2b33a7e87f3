package agent

import "crypto/x509"

// Observer hears the outcome of every pass, after it is recorded in the
// status; telemetry counts renewals with it. It must not block: it runs on
// the pass's goroutine.
type Observer interface {
	ObservePass(st Status, res *Result, err error)
}

func (a *Agent) observe(st Status, res *Result, err error) {
	if a.observer != nil {
		a.observer.ObservePass(st, res, err)
	}
}

// CAChain returns the CA certificates that came with the certificate held
// for name (intermediates nearest first, then roots), or nil when none is
// held. Metrics export their expiry: an intermediate that expires before
// the leaf breaks every handshake just the same.
func (a *Agent) CAChain(name string) []*x509.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.held[name]
	if h == nil {
		return nil
	}
	out := make([]*x509.Certificate, 0, len(h.bundle.Intermediates)+len(h.bundle.Roots))
	out = append(out, h.bundle.Intermediates...)
	return append(out, h.bundle.Roots...)
}
