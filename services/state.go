package services

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
)

// States a service can be in, as `certkeeper status` shows them.
const (
	StateIdle         = "idle"          // nothing to reload since certkeeper started
	StateOK           = "ok"            // reloaded (and verified, if configured)
	StateNotRunning   = "not_running"   // the pid file names no live process
	StateCheckFailed  = "check_failed"  // files rolled back; retrying
	StateReloadFailed = "reload_failed" // retrying
	StateNotServed    = "not_served"    // written but not served; reloading again
	// StateClientsRefused: with a trust bundle's new files the server
	// refused the canary's valid client certificate; they were rolled
	// back and are tried again later.
	StateClientsRefused = "clients_refused"
)

// Failing reports whether state is one an operator must look at.
func Failing(state string) bool {
	return state == StateCheckFailed || state == StateReloadFailed || state == StateNotServed || state == StateClientsRefused
}

// Status is what is known about one service.
type Status struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// Pending is true while changed files wait to be loaded.
	Pending bool `json:"pending"`
	// Reloads counts successful reloads by this certkeeper process.
	Reloads     int       `json:"reloads"`
	LastReload  time.Time `json:"last_reload,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Failures    int       `json:"consecutive_failures"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Served is the serial the server presented at the last verify.
	Served string `json:"served_serial,omitempty"`
	// Backlog counts the changes waiting for the next reload; HeldUntil
	// is when the reload budget lets routine ones go (zero: it does not
	// hold them).
	Backlog   int       `json:"backlog,omitempty"`
	HeldUntil time.Time `json:"held_until,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// stateFile is where statuses are kept for `certkeeper status`, which
// runs without the daemon.
type stateFile struct {
	Version  int      `json:"version"`
	Services []Status `json:"services"`
}

const stateVersion = 1

// update changes one service's status and saves all of them.
func (m *Manager) update(name string, f func(*Status)) {
	m.mu.Lock()
	st := m.status[name]
	if st == nil {
		m.mu.Unlock()
		return
	}
	f(st)
	st.UpdatedAt = m.now()
	m.mu.Unlock()
	m.save()
}

// Statuses returns every service's status, in config order.
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Status
	for _, s := range m.cfg.Services {
		out = append(out, *m.status[s.Name])
	}
	return out
}

func (m *Manager) save() {
	if len(m.cfg.Services) == 0 {
		return
	}
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	dir := statedir.Dir(m.cfg.StateDir)
	data, err := json.MarshalIndent(stateFile{Version: stateVersion, Services: m.Statuses()}, "", "  ")
	if err == nil {
		err = dir.Ensure()
	}
	if err == nil {
		_, err = sinks.WriteSet(dir.ServicesJournal(), []sinks.File{{
			Path: dir.ServicesState(), Data: append(data, '\n'), Mode: 0o600, UID: -1, GID: -1,
		}})
	}
	if err != nil {
		m.log.Warn("cannot save service states for `certkeeper status`", "error", err)
	}
}

// ReadStatus returns the service states the last certkeeper process saved,
// in config order; services it never saw are idle.
func ReadStatus(cfg *config.Config) ([]Status, error) {
	var file stateFile
	path := statedir.Dir(cfg.StateDir).ServicesState()
	data, err := sinks.ReadState(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("service states: %w", err)
	default:
		if err := json.Unmarshal(data, &file); err != nil || file.Version != stateVersion {
			return nil, fmt.Errorf("service state file %s is unreadable or from another version", path)
		}
	}
	var out []Status
	for _, s := range cfg.Services {
		st := Status{Name: s.Name, State: StateIdle}
		for _, saved := range file.Services {
			if saved.Name == s.Name {
				st = saved
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// Reconcile checks, once, that every service with a verify block serves
// the certificate on disk, and schedules a reload for those that serve
// another one: after a crash or a restart, a change whose reload was lost
// would otherwise go unnoticed until the next one. A server that does not
// answer is left alone: it is stopped, or not yet started.
func (m *Manager) Reconcile(ctx context.Context) {
	for _, g := range m.groups {
		for _, s := range g.services {
			if s.cfg.Verify == nil {
				continue
			}
			served, err := m.verifyOnce(ctx, s.cfg)
			var mismatch *mismatchError
			switch {
			case err == nil:
				m.update(s.cfg.Name, func(st *Status) { st.Served = served })
			case errors.As(err, &mismatch):
				m.log.Warn("service does not serve the certificate on disk; reloading it", "service", s.cfg.Name, "error", err)
				g.add(arrival{source: "startup check", services: []string{s.cfg.Name}, at: m.now()})
			default:
				m.log.Debug("startup check of the served certificate skipped", "service", s.cfg.Name, "error", err)
			}
		}
	}
}
