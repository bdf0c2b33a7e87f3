package agent

import (
	"time"

	"github.com/certkeeper/certkeeper/sinks"
)

// Outputs lists every file the agent writes for the certificates in
// force, records included, so a watcher can report changes to them.
func (a *Agent) Outputs() []string {
	cfg := a.config()
	var out []string
	for _, c := range cfg.Certificates {
		out = append(out, destinations(cfg, c)...)
	}
	return out
}

// OutputsChanged is told that files the agent writes (or a PKCS#12
// password file) changed on disk. It
// asks for an immediate pass for each certificate they belong to, which
// rewrites them from the certificate held, without Vault, and logs what it
// restored. Our own writes come back here too; their pass finds the files
// right and does nothing.
//
// Only certificates held and not failing are looked at: a failing one is
// retried on its backoff schedule, and an outside process that keeps
// touching its files must not turn that into a stream of Vault requests.
// It returns the certificates scheduled.
func (a *Agent) OutputsChanged(paths []string) []string {
	cfg := a.config()
	owner := map[string]string{}
	for _, c := range cfg.Certificates {
		for _, p := range destinations(cfg, c) {
			owner[p] = c.Name
		}
		// A new password re-encodes the PKCS#12 file.
		if c.PKCS12PasswordFile != "" {
			owner[c.PKCS12PasswordFile] = c.Name
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var names []string
	seen := map[string]bool{}
	for _, p := range paths {
		name, ok := owner[p]
		if !ok || seen[name] || sinks.Ours(p) {
			continue
		}
		seen[name] = true
		if a.held[name] == nil {
			continue
		}
		if st := a.status[name]; st != nil && st.Failures > 0 {
			continue
		}
		a.queue.Set(name, time.Time{})
		names = append(names, name)
	}
	return names
}
