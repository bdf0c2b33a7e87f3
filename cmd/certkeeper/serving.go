package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/control"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/trust"
	"github.com/certkeeper/certkeeper/vault"
)

// serving is what runs beside the agent for the servers: the services it
// reloads and the trust bundles it keeps.
type serving struct {
	services *services.Manager
	trust    *trust.Keeper
	// trustReady is closed once every trust bundle had its first refresh.
	trustReady chan struct{}
}

func newServing(e *env, vc *vault.Client) *serving {
	so := services.Options{Config: e.cfg, Log: e.log}
	to := trust.Options{Config: e.cfg, Source: vc, Log: e.log}
	if e.metrics != nil {
		so.Observer = serviceMetrics{e.metrics}
		to.Observer = e.metrics
	}
	svc := services.New(so)
	to.Notifier = svc
	return &serving{
		services:   svc,
		trust:      trust.New(to),
		trustReady: make(chan struct{}),
	}
}

// flushTimeout bounds the reloads still owed at shutdown.
const flushTimeout = 2 * time.Minute

// start runs the services, the trust bundles and the control socket for
// `certkeeper run`. stop, after the agent returned, waits for them and
// then reloads whatever changes are still waiting, so a SIGTERM right
// after a renewal does not leave the server on the old certificate.
func (s *serving) start(ctx context.Context, e *env, a *agent.Agent) (stop func(), err error) {
	l, err := control.Listen(e.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	rotator := control.RotatorFunc(func(names []string, spread time.Duration) ([]control.Scheduled, error) {
		sched, err := a.Rotate(names, spread)
		var out []control.Scheduled
		for _, sc := range sched {
			out = append(out, control.Scheduled{Name: sc.Name, At: sc.At})
		}
		return out, err
	})
	// stop ends these even when the agent returned on its own.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.services.Run(ctx) })
	wg.Go(func() {
		s.trust.Run(ctx, func() { close(s.trustReady) })
	})
	wg.Go(func() {
		if err := control.Serve(ctx, l, rotator, e.log); err != nil {
			e.log.Error("control socket stopped; `certkeeper rotate` will not reach this daemon", "error", err)
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			defer cancel()
			for _, o := range s.services.Flush(fctx) {
				if o.Err == nil {
					e.log.Info("reloaded at shutdown for changes still waiting", "service", o.Service, "result", o.Result)
				}
			}
		})
	}, nil
}

// ready wraps the agent's ready callback: the servers may start once the
// certificates and the trust bundles are in place. Then each service with
// a verify block is checked once against what is on disk.
func (s *serving) ready(ctx context.Context, then func()) func() {
	return func() {
		go func() {
			select {
			case <-s.trustReady:
			case <-ctx.Done():
				return
			}
			then()
			s.services.Reconcile(ctx)
		}()
	}
}

// once refreshes the trust bundles and reloads the services with changes,
// for `certkeeper once`, printing one line each; it returns 1 when any
// failed.
func (s *serving) once(ctx context.Context, e *env) int {
	code := 0
	for _, o := range s.trust.Once(ctx) {
		if o.Err != nil {
			code = 1
			fmt.Fprintf(e.stdout, "trust_bundle %s: FAILED: %s\n", o.Name, strings.ReplaceAll(o.Err.Error(), "\n", "; "))
			continue
		}
		crls := 0
		for _, ca := range o.Result.CAs {
			if ca.CRLNumber != "" {
				crls++
			}
		}
		what := "ok"
		if len(o.Result.Written) > 0 {
			what = "written"
		}
		fmt.Fprintf(e.stdout, "trust_bundle %s: %s cas=%d crls=%d\n", o.Name, what, len(o.Result.CAs), crls)
	}
	return max(code, s.flush(ctx, e))
}

// flush reloads the services with changes and prints one line each.
func (s *serving) flush(ctx context.Context, e *env) int {
	code := 0
	for _, o := range s.services.Flush(ctx) {
		switch {
		case o.Err != nil:
			code = 1
			fmt.Fprintf(e.stdout, "service %s: FAILED (%s): %s\n", o.Service, o.Result, strings.ReplaceAll(o.Err.Error(), "\n", "; "))
		case o.Result == services.ResultNotRunning:
			fmt.Fprintf(e.stdout, "service %s: not running, nothing to reload\n", o.Service)
		default:
			fmt.Fprintf(e.stdout, "service %s: reloaded\n", o.Service)
		}
	}
	return code
}

func cmdRotate(ctx context.Context, e *env) int {
	req := control.RotateRequest{Names: e.names, Spread: control.Duration(e.spread)}
	resp, err := control.Rotate(ctx, e.cfg.StateDir, req)
	switch {
	case err == nil:
		for _, sc := range resp.Scheduled {
			fmt.Fprintf(e.stdout, "%s: rotation scheduled by the running daemon at %s\n", sc.Name, sc.At.Format(time.RFC3339))
		}
		return 0
	case !errors.Is(err, control.ErrNoDaemon):
		fmt.Fprintf(e.stderr, "certkeeper rotate: %v\n", err)
		return 1
	}

	// No daemon: rotate here. Holding the control socket meanwhile keeps
	// a daemon from starting and racing this rotation, and tells another
	// rotate to wait.
	l, err := control.Listen(e.cfg.StateDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "certkeeper rotate: %v\n", err)
		return 1
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	busy := control.RotatorFunc(func([]string, time.Duration) ([]control.Scheduled, error) {
		return nil, fmt.Errorf("a `certkeeper rotate` (pid %d) is rotating now, without a daemon; try again when it is done", os.Getpid())
	})
	go control.Serve(sctx, l, busy, e.log)

	e.log.Info("no certkeeper daemon answers; rotating here", "certificates", strings.Join(e.names, ","), "spread", e.spread.String())
	a, closeVault, err := newAgent(e)
	if err != nil {
		e.log.Error("cannot start", "error", err)
		return 1
	}
	defer closeVault()
	outs, err := a.RotateOnce(ctx, e.names, e.spread)
	if err != nil {
		fmt.Fprintf(e.stderr, "certkeeper rotate: %v\n", err)
		return 1
	}
	code := 0
	for _, o := range outs {
		st := o.Status
		if o.Err != nil {
			code = 1
			fmt.Fprintf(e.stdout, "%s: FAILED: %s\n", st.Name, st.LastError)
			continue
		}
		fmt.Fprintf(e.stdout, "%s: rotated serial=%s not_after=%s renew_at=%s\n", st.Name, o.Result.Serial, st.NotAfter.Format(time.RFC3339), o.Result.RenewAt.Format(time.RFC3339))
	}
	return max(code, e.serving.flush(ctx, e))
}

// printServingStatus prints the services and trust bundles for `status`
// and returns 1 when one needs attention: a service that failed its check
// or reload or does not serve what is on disk, a bundle with a CA lacking
// its CRL or a stale CRL.
func printServingStatus(e *env, now time.Time) int {
	code := 0
	svcs, err := services.ReadStatus(e.cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "certkeeper status: %v\n", err)
		code = 1
	}
	bundles := trust.DiskStatus(e.cfg, now)
	for _, st := range svcs {
		if services.Failing(st.State) {
			code = 1
		}
	}
	for _, st := range bundles {
		if trust.Failing(st.State) {
			code = 1
		}
	}
	if e.json {
		return code
	}
	if len(svcs) > 0 {
		fmt.Fprintln(e.stdout)
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tSTATE\tSERVES\tLAST RELOAD\tNOTE")
		for _, st := range svcs {
			note := st.LastError
			if st.Pending && note == "" {
				note = "changes wait for a reload"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", st.Name, st.State, dash(st.Served), ago(now, st.LastReload), note)
		}
		tw.Flush()
	}
	if len(bundles) > 0 {
		fmt.Fprintln(e.stdout)
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TRUST BUNDLE\tSTATE\tCA\tCA EXPIRES IN\tCRL\tCRL NEXT UPDATE\tNOTE")
		for _, st := range bundles {
			if len(st.CAs) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t%s\n", st.Name, st.State, st.LastError)
			}
			for i, ca := range st.CAs {
				name, state, note := st.Name, st.State, st.LastError
				if i > 0 {
					name, state, note = "", "", ""
				}
				crl, next := "none", "-"
				if ca.CRLNumber != "" {
					crl = fmt.Sprintf("#%s, %d revoked", ca.CRLNumber, ca.Revoked)
					next = until(now, ca.CRLNextUpdate)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, state, ca.Subject, until(now, ca.NotAfter), crl, next, note)
			}
		}
		tw.Flush()
	}
	return code
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}
