package daemon

import (
	"context"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/fswatch"
	"github.com/certkeeper/certkeeper/sinks"
)

// Debounce windows. Config tools write in bursts (temp file, rename,
// chmod); outputs are written by certkeeper itself in one burst per set.
const (
	configQuiet  = 500 * time.Millisecond
	outputsQuiet = 500 * time.Millisecond
	// outputsRefresh re-adds watches on output directories that did not
	// exist yet (a certificate added by a reload) or were deleted.
	outputsRefresh = time.Minute
)

// live keeps a running agent in step with its config file and its output
// files: edits to the config or a template source (seen by fsnotify) and
// SIGHUP reload the config; changes to output files ask the agent to
// restore them.
type live struct {
	d      *Daemon
	inputs *fswatch.Watcher
	output *fswatch.Watcher
	hup    chan os.Signal

	mu  sync.Mutex
	cfg *config.Config // as last loaded from the file
}

// follow makes the watches and catches SIGHUP from now on (its default
// action would end the process). Watch failures are logged and leave
// SIGHUP and the agent's own per-pass checks working.
func (d *Daemon) follow() *live {
	l := &live{d: d, cfg: d.cfg, hup: make(chan os.Signal, 1)}
	signal.Notify(l.hup, syscall.SIGHUP)
	var err error
	if l.inputs, err = fswatch.New(fswatch.Options{Quiet: configQuiet, Log: d.log}); err != nil {
		d.log.Warn("cannot watch the config file; reload with SIGHUP", "error", err)
	}
	if l.output, err = fswatch.New(fswatch.Options{Quiet: outputsQuiet, Chmod: true, Log: d.log}); err != nil {
		d.log.Warn("cannot watch output files; they are checked at each pass only", "error", err)
	}
	return l
}

// run follows the config and output files until ctx ends.
func (l *live) run(ctx context.Context) {
	a := l.d.agent
	defer signal.Stop(l.hup)
	var wg sync.WaitGroup
	defer wg.Wait()
	if l.inputs != nil {
		l.inputs.Set(l.inputPaths(l.cfg))
		wg.Go(func() {
			l.inputs.Run(ctx, func(evs []fswatch.Event) {
				var paths []string
				for _, ev := range evs {
					l.d.log.Debug("config input changed on disk", "file", ev.Path, "what", ev.What)
					paths = append(paths, ev.Path)
				}
				l.reload("file changed")
				// A changed PKCS#12 password is not a config change, but
				// the file must be re-encoded with it.
				a.OutputsChanged(paths)
			})
		})
	}
	if l.output != nil {
		l.output.Set(a.Outputs())
		wg.Go(func() { l.output.Run(ctx, l.outputsChanged) })
		wg.Go(func() {
			t := time.NewTicker(outputsRefresh)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					// The files change only with the config, which
					// Sets them (reload); what may have changed is which
					// of their directories exist.
					l.output.Rewatch()
				}
			}
		})
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.hup:
			l.reload("SIGHUP")
		}
	}
}

// ready is called after the first pass, when output directories exist.
func (l *live) ready() {
	if l.output != nil {
		l.output.Set(l.d.agent.Outputs())
	}
}

func (l *live) inputPaths(cfg *config.Config) []string {
	return append([]string{cfg.Path}, cfg.InputPaths()...)
}

func (l *live) outputsChanged(evs []fswatch.Event) {
	var paths []string
	for _, ev := range evs {
		// Our own writes show up here too; they are not news. The pass
		// logs what it actually had to restore.
		if sinks.Ours(ev.Path) {
			continue
		}
		l.d.log.Debug("output file changed on disk", "file", ev.Path, "what", ev.What)
		paths = append(paths, ev.Path)
	}
	if names := l.d.agent.OutputsChanged(paths); len(names) > 0 {
		l.d.log.Debug("checking certificates against their files", "certs", strings.Join(names, ","))
	}
}

// reload loads and validates the config, and puts it in force only if it
// is entirely valid: a config with any error is logged and the running
// one stays.
func (l *live) reload(trigger string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	log := l.d.log.With("config", l.cfg.Path, "trigger", trigger)
	cfg, err := LoadConfig(l.cfg.Path)
	if err != nil {
		log.Error("config change rejected; the running config stays in force", "error", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	if l.inputs != nil {
		l.inputs.Set(l.inputPaths(cfg))
	}
	if reflect.DeepEqual(cfg, l.cfg) {
		log.Info("config unchanged")
		return
	}
	var issuer agent.Issuer
	var closeOld func()
	if !reflect.DeepEqual(cfg.Vault, l.cfg.Vault) {
		// The address, TLS settings or auth changed: a new client, which
		// logs in afresh at its first request. Passes in flight finish on
		// the old one; closing it only stops its token renewal.
		vc, err := l.d.newVault(cfg.Vault)
		if err != nil {
			log.Error("config change rejected; the running config stays in force", "error", err)
			return
		}
		issuer = vc
		l.d.vaultMu.Lock()
		closeOld = l.d.vault.Close
		l.d.vault = vc
		l.d.vaultMu.Unlock()
	}
	ch := l.d.agent.Reconfigure(cfg, issuer)
	if closeOld != nil {
		closeOld()
	}
	l.cfg = cfg
	log.Info("config reloaded", "added", strings.Join(ch.Added, ","), "removed", strings.Join(ch.Removed, ","),
		"changed", strings.Join(ch.Changed, ","), "vault_client_rebuilt", issuer != nil)
	for _, k := range ch.Kept {
		log.Warn("this setting cannot change while certkeeper runs; the running value stays until a restart", "setting", k)
	}
	if l.output != nil {
		l.output.Set(l.d.agent.Outputs())
	}
}
