package agent

import (
	"reflect"
	"slices"
	"time"

	"github.com/certkeeper/certkeeper/config"
)

// config is the configuration in force. Reconfigure swaps it under a.mu,
// so every read goes through here (or holds a.mu).
func (a *Agent) config() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

func (a *Agent) currentIssuer() Issuer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.issuer
}

// Changes says what a reconfiguration did, by certificate name.
type Changes struct {
	Added, Removed, Changed []string
	// Kept are global settings the new config changes that a running agent
	// cannot apply; the running values stay until a restart.
	Kept []string
}

// Empty reports whether the new config changed nothing the agent acts on.
func (c Changes) Empty() bool {
	return len(c.Added)+len(c.Removed)+len(c.Changed)+len(c.Kept) == 0
}

// Reconfigure puts a new, already validated config in force while Run is
// running. Added certificates get a pass at once. Changed ones get a pass at
// once too, where fits decides whether what is held still serves the new
// settings (a new SAN re-issues; a new template only rewrites files).
// Removed ones are forgotten at once, so status and metrics drop them, and
// are never renewed again; files already on disk are left alone.
//
// issuer, when not nil, replaces the Vault client (the caller builds it
// when the vault block changed); passes already in flight finish with the
// old one. state_dir, max_parallel, and the service, trust_bundle,
// telemetry and watch blocks cannot change under a running agent: the
// running values are kept and reported in Changes.Kept.
func (a *Agent) Reconfigure(cfg *config.Config, issuer Issuer) Changes {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cfg
	next := *cfg
	var ch Changes
	if next.StateDir != old.StateDir {
		// The records and journals of every certificate live there; moving
		// them under running passes is not worth the risk.
		ch.Kept = append(ch.Kept, "state_dir")
		next.StateDir = old.StateDir
	}
	if next.Vault.MaxParallel != old.Vault.MaxParallel {
		// Run sized its worker pool at start.
		ch.Kept = append(ch.Kept, "vault.max_parallel")
	}
	// The services, trust bundles, telemetry endpoint and file watch run
	// beside the agent, built from the config at start; a certificate's
	// notify list does follow the reload.
	for name, same := range map[string]bool{
		"service":      reflect.DeepEqual(next.Services, old.Services),
		"trust_bundle": reflect.DeepEqual(next.TrustBundles, old.TrustBundles),
		"telemetry":    reflect.DeepEqual(next.Telemetry, old.Telemetry),
		"watch":        reflect.DeepEqual(next.Watch, old.Watch),
	} {
		if !same {
			ch.Kept = append(ch.Kept, name)
		}
	}
	slices.Sort(ch.Kept)
	for _, c := range next.Certificates {
		prev, existed := old.Certificate(c.Name)
		switch {
		case !existed:
			ch.Added = append(ch.Added, c.Name)
		case !reflect.DeepEqual(prev, c):
			ch.Changed = append(ch.Changed, c.Name)
		}
	}
	for _, c := range old.Certificates {
		if _, still := next.Certificate(c.Name); !still {
			ch.Removed = append(ch.Removed, c.Name)
			delete(a.held, c.Name)
			delete(a.status, c.Name)
			delete(a.reconfigured, c.Name)
			delete(a.placed, c.Name)
		}
	}
	a.cfg = &next
	if issuer != nil {
		a.issuer = issuer
	}
	// Removed certificates are scheduled too: their pass finds them gone
	// and forgets them.
	for _, name := range slices.Concat(ch.Added, ch.Changed, ch.Removed) {
		a.queue.Set(name, time.Time{})
	}
	for _, name := range ch.Changed {
		a.reconfigured[name] = true
		// Its files were right for the old settings; the pass decides
		// whether they still are.
		delete(a.placed, name)
	}
	a.rebuildReadiness(a.now())
	return ch
}

// takeReconfigured reports, once, whether a reload changed name since its
// last pass.
func (a *Agent) takeReconfigured(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	was := a.reconfigured[name]
	delete(a.reconfigured, name)
	return was
}

// reschedule sets name's next pass after one finished, unless it was
// removed meanwhile, or something (a reload, a changed output file) asked
// for an earlier pass while it ran.
func (a *Agent) reschedule(name string, next time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.cfg.Certificate(name); !ok {
		delete(a.held, name)
		delete(a.status, name)
		return
	}
	if at, queued := a.queue.When(name); queued && at.Before(next) {
		return
	}
	a.queue.Set(name, next)
}
