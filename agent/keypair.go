package agent

import "crypto/tls"

// KeyPair returns the certificate held for name, with its key and
// intermediates, as a TLS server in this process serves it (the telemetry
// endpoint), or nil when none is held. It is what was last written, so a
// renewal is served from the next handshake on.
func (a *Agent) KeyPair(name string) *tls.Certificate {
	a.mu.Lock()
	h := a.held[name]
	a.mu.Unlock()
	if h == nil {
		return nil
	}
	b := h.bundle
	chain := make([][]byte, 0, 1+len(b.Intermediates))
	chain = append(chain, b.Leaf.Raw)
	for _, c := range b.Intermediates {
		chain = append(chain, c.Raw)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: b.Key, Leaf: b.Leaf}
}
