package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/control"
	"github.com/certkeeper/certkeeper/internal/sdnotify"
	"github.com/certkeeper/certkeeper/telemetry"
	"github.com/certkeeper/certkeeper/trust"
)

// flushTimeout bounds the reloads still owed at shutdown.
const flushTimeout = 2 * time.Minute

// Run keeps every certificate fresh until ctx ends: the daemon. It logs
// the error it returns (a part that cannot start). The control socket is
// claimed before anything else, so a second daemon on the same state_dir
// refuses before it touches anything. The parts start in this order and
// stop in the reverse one, after the agent (which runs in the foreground)
// has returned and no write is in flight:
//
//	telemetry  metrics endpoint, the textfile and the watch of unmanaged files
//	live       config and output file watches, SIGHUP; closes Vault last
//	pprof      Go profiles, when asked for
//	services   reloads; at stop, reloads still owed are done (Flush)
//	trust      trust bundles
//	control    the control socket (rotate, status, once)
//	ready      READY=1 once certificates and trust bundles are in place
//	           (awaitReady)
//	watchdog   systemd's watchdog, fed while the agent answers
//	agent      the certificate lifecycle, until ctx ends
func (d *Daemon) Run(ctx context.Context) error {
	runCtx := ctx
	// The control socket first: a second daemon on this state_dir must
	// refuse before it binds a port, asks Vault anything (Prepare may
	// unwrap a single-use secret_id) or logs anything else.
	sock, err := control.Listen(d.cfg.StateDir)
	if err != nil {
		d.log.Error("cannot start", "error", err)
		return err
	}
	var g group
	defer g.stop()
	// Until control.Serve takes it over, the socket is closed here.
	served := false
	defer func() {
		if !served {
			sock.Close()
		}
	}()
	d.prepareVault()

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

	g.start(ctx, d.services.Run, d.flushAtStop)
	// Every pass of a certificate and every round of trust bundles wakes
	// the readiness check.
	passed := make(chan struct{}, 1)
	wake := func() {
		select {
		case passed <- struct{}{}:
		default:
		}
	}
	g.start(ctx, func(ctx context.Context) { d.trust.Run(ctx, wake) }, nil)
	served = true
	g.start(ctx, func(ctx context.Context) {
		if err := control.Serve(ctx, sock, d.handlers(runCtx, l)); err != nil {
			d.log.Error("control socket stopped; `certkeeper rotate` will not reach this daemon", "error", err)
		}
	}, nil)

	sd := sdnotify.FromEnv()
	g.start(ctx, func(ctx context.Context) {
		if !awaitReady(ctx, passed, d.unplaced, d.log) {
			return
		}
		d.log.Info("ready: every certificate and trust bundle is in place")
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
		releaseAfterBursts(ctx, passed, burstSettle, burstPasses, debug.FreeOSMemory)
	}, nil)
	// A deadlocked agent cannot answer Statuses, so the watchdog goes
	// quiet and systemd restarts it.
	g.start(ctx, func(ctx context.Context) {
		sd.Watchdog(ctx, sdnotify.WatchdogInterval(), func() bool { d.agent.Statuses(); return true })
	}, nil)

	err = d.agent.Run(ctx, func(string) { wake() })
	sd.Send("STOPPING=1")
	if err != nil {
		d.log.Error("stopped", "error", err)
		return err
	}
	g.stop()
	d.log.Info("certkeeper stopped")
	return nil
}

// awaitReady is what READY=1 means. It blocks until unplaced lists
// nothing, checking again at every wake (a pass or a refresh round has
// ended), and is false when ctx ended first. The daemon's unplaced lists
// every configured certificate whose files this process has not yet
// written (or found right) from a certificate that fits the config and
// has not expired, and every trust bundle neither refreshed yet nor
// complete and current on disk. So READY=1 means the files exist and
// servers can start with them; while a certificate cannot be obtained,
// READY waits and certkeeper keeps trying with backoff, and the unit's
// TimeoutStartSec decides how long systemd waits. What is still missing
// is logged each time the list changes.
func awaitReady(ctx context.Context, wake <-chan struct{}, unplaced func() []string, log *slog.Logger) bool {
	var last []string
	for {
		missing := unplaced()
		if len(missing) == 0 {
			return true
		}
		if !slices.Equal(missing, last) {
			// Only a failed attempt is news; the first ones under way
			// are what every start looks like.
			level := slog.LevelInfo
			if !slices.ContainsFunc(missing, func(m string) bool { return !strings.HasSuffix(m, firstAttempt) }) {
				level = slog.LevelDebug
			}
			log.Log(context.Background(), level, "not ready yet: READY=1 waits until every certificate and trust bundle is in place; retrying with backoff",
				"waiting_for", strings.Join(missing, "; "))
			last = missing
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		}
	}
}

// listedUnplaced bounds how many certificates the not-ready log line
// names; the rest are counted.
const listedUnplaced = 10

// unplaced lists what READY=1 still waits for, one entry per certificate
// (up to listedUnplaced, then a count) or trust bundle, with why when a
// pass has failed.
func (d *Daemon) unplaced() []string {
	return unplacedLines(d.agent.Unplaced(listedUnplaced), d.trust.Unplaced())
}

func unplacedLines(certs agent.UnplacedReport, bundles []trust.Status) []string {
	var out []string
	for _, st := range certs.Listed {
		out = append(out, "certificate "+st.Name+reason(st.LastResult, st.LastError))
	}
	if more := certs.Total - len(certs.Listed); more > 0 {
		// Failing ones are listed first, so the rest fail only if more
		// failed than were listed.
		why := firstAttempt
		if unlisted := certs.Failing - min(certs.Failing, len(certs.Listed)); unlisted > 0 {
			why = fmt.Sprintf(": %d of them failing", unlisted)
		}
		out = append(out, fmt.Sprintf("%d more certificates%s", more, why))
	}
	for _, st := range bundles {
		out = append(out, "trust_bundle "+st.Name+reason(st.State, st.LastError))
	}
	return out
}

// firstAttempt ends an unplaced entry whose first attempt is under way.
const firstAttempt = ": first attempt not finished"

func reason(state, lastErr string) string {
	switch {
	case lastErr != "":
		return ": " + lastErr
	case state == "pending", state == trust.StateMissing:
		return firstAttempt
	}
	return ""
}

// handlers are what the daemon answers on its control socket. Work a
// request starts runs under ctx, the daemon's: it is not cut short when
// the client goes away, and is when the daemon stops.
func (d *Daemon) handlers(ctx context.Context, l *live) control.Handlers {
	return control.Handlers{
		Once: func(req control.OnceRequest) (*control.OnceResponse, error) {
			if !control.SameConfig(req.Config, d.configPath()) {
				return nil, fmt.Errorf("this daemon runs %s, not %s", d.configPath(), req.Config)
			}
			d.log.Info("once requested over the control socket")
			r := d.onceRunning(ctx, l).Summary()
			return &r, nil
		},
		Rotate: func(req control.RotateRequest) (*control.RotateResponse, error) {
			sched, err := d.agent.Rotate(req.Names, time.Duration(req.Spread))
			if err != nil {
				return nil, err
			}
			d.log.Info("rotation requested over the control socket", "certificates", len(sched), "spread", time.Duration(req.Spread).String())
			return &control.RotateResponse{Scheduled: sched}, nil
		},
		Status: func(control.StatusRequest) (*control.StatusResponse, error) {
			resp := &control.StatusResponse{Config: d.configPath(), Certificates: d.agent.Statuses(), Auth: d.currentVault().AuthStatus()}
			if d.listener != nil {
				st := d.listener.Status()
				resp.Telemetry = &control.TelemetryStatus{Listen: st.Addr, Listening: st.Listening, Failures: st.Failures, Problem: st.Unready()}
			}
			return resp, nil
		},
	}
}

// onceRunning is Once for a running daemon (a once request): the config
// file is read again first, so the passes follow the file the caller
// just changed even before the file watch notices; the services are held
// meanwhile, so every change joins one batch per service, checked and
// reloaded once, whose outcome is this request's.
func (d *Daemon) onceRunning(ctx context.Context, l *live) OnceReport {
	flush := d.services.Hold()
	l.reload("once request")
	var r OnceReport
	r.Certificates = d.agent.OnceRunning(ctx)
	r.Bundles = d.trust.Once(ctx)
	r.Services = flush(ctx)
	return r
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
	handler := telemetry.Handler(telemetry.HandlerOptions{Gatherer: d.registry, Status: d.agent, ConfigPath: d.configPath(), Log: d.log, Listener: d.listener})
	so := telemetry.ServeOptions{Listen: d.cfg.Telemetry.Listen, Handler: handler, Log: d.log, Listener: d.listener}
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
