package main

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
	"github.com/certkeeper/certkeeper/vault"
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

// newVault builds the Vault client for a vault block; used at start and
// when a reload changes the block.
func newVault(e *env, v config.Vault) (*vault.Client, error) {
	return vault.New(v, vault.Options{Log: e.log, Observer: e.vaultObserver})
}

// live keeps a running agent in step with its config file and its output
// files: edits to the config or a template source (seen by fsnotify) and
// SIGHUP reload the config; changes to output files ask the agent to
// restore them.
type live struct {
	e      *env
	agent  *agent.Agent
	inputs *fswatch.Watcher
	output *fswatch.Watcher

	mu         sync.Mutex
	cfg        *config.Config // as last loaded from the file
	closeVault func()
	cancel     context.CancelFunc
	stopped    chan struct{}
}

// follow starts watching; stop ends it and closes the Vault client in
// force. Watch failures are logged and leave SIGHUP and the agent's own
// per-pass checks working.
func follow(ctx context.Context, e *env, a *agent.Agent, closeVault func()) *live {
	ctx, cancel := context.WithCancel(ctx)
	l := &live{e: e, agent: a, cfg: e.cfg, closeVault: closeVault, cancel: cancel, stopped: make(chan struct{})}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)

	var err error
	if l.inputs, err = fswatch.New(fswatch.Options{Quiet: configQuiet, Log: e.log}); err != nil {
		e.log.Warn("cannot watch the config file; reload with SIGHUP", "error", err)
	}
	if l.output, err = fswatch.New(fswatch.Options{Quiet: outputsQuiet, Chmod: true, Log: e.log}); err != nil {
		e.log.Warn("cannot watch output files; they are checked at each pass only", "error", err)
	}
	var wg sync.WaitGroup
	if l.inputs != nil {
		l.inputs.Set(l.inputPaths(e.cfg))
		wg.Go(func() {
			l.inputs.Run(ctx, func(evs []fswatch.Event) {
				var paths []string
				for _, ev := range evs {
					e.log.Debug("config input changed on disk", "file", ev.Path, "what", ev.What)
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
					l.output.Set(a.Outputs())
				}
			}
		})
	}
	wg.Go(func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				l.reload("SIGHUP")
			}
		}
	})
	go func() {
		wg.Wait()
		close(l.stopped)
	}()
	return l
}

// ready is called after the first pass, when output directories exist.
func (l *live) ready() {
	if l.output != nil {
		l.output.Set(l.agent.Outputs())
	}
}

// stop ends the watchers and closes the Vault client in force.
func (l *live) stop() {
	l.cancel()
	<-l.stopped
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeVault()
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
		l.e.log.Debug("output file changed on disk", "file", ev.Path, "what", ev.What)
		paths = append(paths, ev.Path)
	}
	if names := l.agent.OutputsChanged(paths); len(names) > 0 {
		l.e.log.Debug("checking certificates against their files", "certs", strings.Join(names, ","))
	}
}

// reload loads and validates the config, and puts it in force only if it
// is entirely valid: a config with any error is logged and the running
// one stays.
func (l *live) reload(trigger string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	log := l.e.log.With("config", l.cfg.Path, "trigger", trigger)
	cfg, err := config.Load(l.cfg.Path, loadOptions)
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
		vc, err := newVault(l.e, cfg.Vault)
		if err != nil {
			log.Error("config change rejected; the running config stays in force", "error", err)
			return
		}
		issuer, closeOld = vc, l.closeVault
		l.closeVault = vc.Close
	}
	ch := l.agent.Reconfigure(cfg, issuer)
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
		l.output.Set(l.agent.Outputs())
	}
}
