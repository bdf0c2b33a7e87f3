package daemon

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/certkeeper/certkeeper/control"
	"github.com/certkeeper/certkeeper/internal/sdnotify"
	"github.com/certkeeper/certkeeper/telemetry"
)

// flushTimeout bounds the reloads still owed at shutdown.
const flushTimeout = 2 * time.Minute

// Run keeps every certificate fresh until ctx ends: the daemon. It logs
// the error it returns (a part that cannot start). The parts
// start in this order and stop in the reverse one, after the agent (which
// runs in the foreground) has returned and no write is in flight:
//
//	telemetry  metrics endpoint, the textfile and the watch of unmanaged files
//	live       config and output file watches, SIGHUP; closes Vault last
//	pprof      Go profiles, when asked for
//	services   reloads; at stop, reloads still owed are done (Flush)
//	trust      trust bundles
//	control    the control socket (rotate, status)
//	ready      READY=1 once certificates and trust bundles are in place
//	watchdog   systemd's watchdog, fed while the agent answers
//	agent      the certificate lifecycle, until ctx ends
func (d *Daemon) Run(ctx context.Context) error {
	d.prepareVault()
	var g group
	defer g.stop()

	d.startTelemetry(ctx, &g)
	l := d.follow()
	g.start(ctx, l.run, d.closeVault)
	stopPprof, err := startPprof(d.opts.Pprof, d.log)
	if err != nil {
		d.log.Error("cannot start", "error", err)
		return err
	}
	g.add(stopPprof)
	d.log.Info("certkeeper starting", "version", d.opts.Version, "config", d.cfg.Path, "certificates", len(d.cfg.Certificates))

	sock, err := control.Listen(d.cfg.StateDir)
	if err != nil {
		d.log.Error("cannot start", "error", err)
		return err
	}
	g.start(ctx, d.services.Run, d.flushAtStop)
	bundlesReady := make(chan struct{})
	g.start(ctx, func(ctx context.Context) { d.trust.Run(ctx, func() { close(bundlesReady) }) }, nil)
	g.start(ctx, func(ctx context.Context) {
		if err := control.Serve(ctx, sock, d.handlers()); err != nil {
			d.log.Error("control socket stopped; `certkeeper rotate` will not reach this daemon", "error", err)
		}
	}, nil)

	sd := sdnotify.FromEnv()
	certsReady := make(chan struct{})
	g.start(ctx, func(ctx context.Context) {
		if !awaitReady(ctx, certsReady, bundlesReady) {
			return
		}
		d.log.Info("initial pass complete")
		releaseStartupMemory()
		l.ready()
		// systemd starts units ordered After=certkeeper.service (nginx)
		// only now.
		if err := sd.Send("READY=1"); err != nil {
			d.log.Warn("cannot tell systemd we are ready", "error", err)
		}
		// Each service with a verify block is checked once against what
		// is on disk.
		d.services.Reconcile(ctx)
	}, nil)
	// A deadlocked agent cannot answer Statuses, so the watchdog goes
	// quiet and systemd restarts it.
	g.start(ctx, func(ctx context.Context) {
		sd.Watchdog(ctx, sdnotify.WatchdogInterval(), func() bool { d.agent.Statuses(); return true })
	}, nil)

	err = d.agent.Run(ctx, func() { close(certsReady) })
	sd.Send("STOPPING=1")
	if err != nil {
		d.log.Error("stopped", "error", err)
		return err
	}
	g.stop()
	d.log.Info("certkeeper stopped")
	return nil
}

// awaitReady is what READY=1 means: it blocks until every certificate has
// had its first pass (certs closed) and every trust bundle its first
// refresh (bundles closed), which is when the servers reading them may
// start, and is false when ctx ended first.
func awaitReady(ctx context.Context, certs, bundles <-chan struct{}) bool {
	for _, ch := range []<-chan struct{}{certs, bundles} {
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// handlers are what the daemon answers on its control socket.
func (d *Daemon) handlers() control.Handlers {
	return control.Handlers{
		Rotate: func(req control.RotateRequest) (*control.RotateResponse, error) {
			sched, err := d.agent.Rotate(req.Names, time.Duration(req.Spread))
			if err != nil {
				return nil, err
			}
			d.log.Info("rotation requested over the control socket", "certificates", len(sched), "spread", time.Duration(req.Spread).String())
			return &control.RotateResponse{Scheduled: sched}, nil
		},
		Status: func(control.StatusRequest) (*control.StatusResponse, error) {
			return &control.StatusResponse{Config: d.configPath(), Certificates: d.agent.Statuses(), Auth: d.currentVault().AuthStatus()}, nil
		},
	}
}

// flushAtStop reloads whatever changes are still waiting once the
// services stopped, so a SIGTERM right after a renewal does not leave the
// server on the old certificate.
func (d *Daemon) flushAtStop() {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	for _, o := range d.services.Flush(ctx) {
		if o.Err == nil {
			d.log.Info("reloaded at shutdown for changes still waiting", "service", o.Service, "result", o.Result)
		}
	}
}

// startTelemetry runs the telemetry endpoint, the textfile, and the watch
// of unmanaged files (which only they report).
func (d *Daemon) startTelemetry(ctx context.Context, g *group) {
	if d.metrics == nil {
		return
	}
	if d.watch != nil {
		g.start(ctx, func(ctx context.Context) { d.watch.Run(ctx) }, nil)
	}
	d.startTextfile(ctx, g)
	if d.cfg.Telemetry.Listen == "" {
		d.log.Info("telemetry endpoint is off (telemetry { listen = \"\" })")
		return
	}
	handler := telemetry.Handler(telemetry.HandlerOptions{Gatherer: d.registry, Status: d.agent, ConfigPath: d.configPath(), Log: d.log})
	so := telemetry.ServeOptions{Listen: d.cfg.Telemetry.Listen, Handler: handler, Log: d.log}
	d.secureTelemetry(&so)
	g.start(ctx, func(ctx context.Context) {
		if err := telemetry.Serve(ctx, so); err != nil {
			d.log.Error("telemetry endpoint stopped", "error", err)
		}
	}, nil)
}

// releaseStartupMemory hands back to the OS what loading the config and
// the first pass over every certificate needed but the daemon no longer
// does. With 1,000 certificates those two bursts grow the heap to about
// 40 MB while the agent then holds about 7 MB; the runtime would keep the
// difference mapped until a scavenger cycle, and the daemon then sleeps for
// hours. Called once, after the first pass.
func releaseStartupMemory() { debug.FreeOSMemory() }
