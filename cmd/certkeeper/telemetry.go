package main

import (
	"context"
	"path/filepath"
	"sync"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/telemetry"
	"github.com/certkeeper/certkeeper/telemetry/filewatch"
)

// newRunAgent is newAgent for `run`: the agent and its Vault client report
// to the metrics, and the telemetry endpoint (and the watch of unmanaged
// files, which only it reports) runs beside the agent. stop ends them and
// waits; the Vault client is closed by closeVault.
func newRunAgent(ctx context.Context, e *env) (a *agent.Agent, closeVault, stop func(), err error) {
	reg := telemetry.NewRegistry()
	m, err := telemetry.New(reg)
	if err != nil {
		return nil, nil, nil, err
	}
	// Set before newAgent: the Vault client (also one rebuilt by a config
	// reload), the agent, the services and the trust bundles report to m.
	e.vaultObserver = m
	e.metrics = m
	a, closeVault, err = newAgent(e)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, s := range e.cfg.Services {
		m.ServiceConfigured(s.Name)
	}
	vc := e.vaultClient
	tel := e.cfg.Telemetry
	if tel.Listen == "" {
		e.log.Info("telemetry endpoint is off (telemetry { listen = \"\" })")
		return a, closeVault, func() {}, nil
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	src := telemetry.Sources{Certificates: a, Token: vc}
	if len(e.cfg.Watch.Paths) > 0 {
		w := filewatch.New(filewatch.Options{Paths: e.cfg.Watch.Paths, Rescan: e.cfg.Watch.Rescan, Log: e.log.With("component", "watch")})
		src.Files = w
		wg.Go(func() { w.Run(ctx) })
	}
	if err := m.ExposeState(src); err != nil {
		cancel()
		wg.Wait()
		closeVault()
		return nil, nil, nil, err
	}
	configPath := e.cfg.Path
	if abs, err := filepath.Abs(configPath); err == nil {
		configPath = abs
	}
	handler := telemetry.Handler(telemetry.HandlerOptions{Gatherer: reg, Status: a, ConfigPath: configPath, Log: e.log})
	wg.Go(func() {
		if err := telemetry.Serve(ctx, telemetry.ServeOptions{Listen: tel.Listen, Handler: handler, Log: e.log}); err != nil {
			e.log.Error("telemetry endpoint stopped", "error", err)
		}
	})
	return a, closeVault, func() { cancel(); wg.Wait() }, nil
}

// serviceMetrics turns the services' detailed results into the metric's
// success/failure; a server that is not running was not reloaded, so it
// counts as neither.
type serviceMetrics struct{ m *telemetry.Metrics }

func (s serviceMetrics) ServiceReloaded(service, result string) {
	switch result {
	case services.ResultOK:
		s.m.ServiceReloaded(service, telemetry.ResultSuccess)
	case services.ResultNotRunning:
	default:
		s.m.ServiceReloaded(service, telemetry.ResultFailure)
	}
}

func (s serviceMetrics) ServedMatches(service string, ok bool) { s.m.ServedMatches(service, ok) }
