package telemetry

import (
	"fmt"
	"sync"
	"time"
)

// Listener is what Serve knows of its listener. A port another process
// holds (a squatter) answers scrapes and probes in certkeeper's place, so
// a failed bind must be visible where that process cannot speak for
// certkeeper: the listen failures counter (scraped once the port is
// certkeeper's), /readyz, and `certkeeper status` over the
// owner-only control socket. Nil is fine: nothing is recorded.
// (A gauge of whether it listens would read 1 in every scrape of it.)
type Listener struct {
	metrics *Metrics // may be nil

	mu        sync.Mutex
	addr      string
	listening bool
	failures  int
	lastErr   string
	since     time.Time // first failure of the current run, zero while listening
}

// NewListener records the state of the endpoint on addr, and counts its
// failures on m (nil: no metrics).
func NewListener(addr string, m *Metrics) *Listener {
	return &Listener{addr: addr, metrics: m}
}

// ListenStatus is a snapshot of a Listener.
type ListenStatus struct {
	Addr      string
	Listening bool
	// Failures counts failed attempts to listen since the process
	// started: binds, and starts a web configuration held back.
	Failures int
	// LastError and Since describe the failures since the endpoint last
	// listened; empty while it listens.
	LastError string
	Since     time.Time
}

// Status returns what l knows now.
func (l *Listener) Status() ListenStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := ListenStatus{Addr: l.addr, Listening: l.listening, Failures: l.failures}
	if !l.listening {
		st.LastError, st.Since = l.lastErr, l.since
	}
	return st
}

// Unready is why the endpoint is not ready, or "" when it listens (or
// has not tried yet).
func (st ListenStatus) Unready() string {
	if st.Listening || st.Failures == 0 {
		return ""
	}
	return fmt.Sprintf("telemetry endpoint cannot listen on %s since %s (%d attempts): %s; whatever answers there is not this certkeeper",
		st.Addr, st.Since.UTC().Format(time.RFC3339), st.Failures, st.LastError)
}

// bindFailed records an address that could not be bound: another
// process may hold it and answer in certkeeper's place, so the counter
// (and the alert on it) hear of it.
func (l *Listener) bindFailed(err error, now time.Time) {
	if l == nil {
		return
	}
	l.failed(err, now)
	if l.metrics != nil {
		l.metrics.listenFailures.Inc()
		l.metrics.changed()
	}
}

// notStarted records an endpoint that did not try to bind because its
// web configuration cannot be loaded yet. Status and /readyz say so like
// a bind failure (nothing of certkeeper's listens there); the counter
// does not, since the address was not found taken.
func (l *Listener) notStarted(err error, now time.Time) {
	if l == nil {
		return
	}
	l.failed(err, now)
}

func (l *Listener) failed(err error, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.listening || l.lastErr == "" {
		l.since = now
	}
	l.listening = false
	l.failures++
	l.lastErr = err.Error()
}

func (l *Listener) bound() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listening, l.lastErr, l.since = true, "", time.Time{}
}
