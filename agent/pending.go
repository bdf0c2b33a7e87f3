package agent

import (
	"time"

	"github.com/certkeeper/certkeeper/config"
)

// A certificate obtained from Vault but not yet on disk (the disk is full,
// read-only, or denies the write) is kept here and written at the next
// attempt, instead of asking Vault for another one each time: a broken
// disk must not turn into a stream of issuance requests. It is dropped once
// written, or when it no longer fits the config or is no longer valid. Past
// its own renewal point it is still newer than what is on disk, so it is
// still written; the pass after that renews it as usual.

// takePending returns the certificate obtained earlier for c that never
// reached the disk, if it can still be used at now.
func (a *Agent) takePending(c config.Certificate, now time.Time) *held {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.pending[c.Name]
	if h == nil {
		return nil
	}
	if fits(c, h, now) != nil {
		delete(a.pending, c.Name)
		return nil
	}
	return h
}

// setPending keeps h for c until it is written (nil forgets it).
func (a *Agent) setPending(c config.Certificate, h *held) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h == nil {
		delete(a.pending, c.Name)
		return
	}
	if a.pending == nil {
		a.pending = map[string]*held{}
	}
	a.pending[c.Name] = h
}
