package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/agent/vault"
	"github.com/certkeeper/certkeeper/internal/sdnotify"
)

func cmdValidate(_ context.Context, e *env) int {
	// Warnings do not fail validate: the config works, unsafely.
	for _, w := range e.cfg.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	if n := len(e.cfg.TrustBundles); n > 0 {
		fmt.Fprintf(e.stdout, "%s: ok (%d certificates, %d trust bundles)\n", e.cfg.Path, len(e.cfg.Certificates), n)
		return 0
	}
	fmt.Fprintf(e.stdout, "%s: ok (%d certificates)\n", e.cfg.Path, len(e.cfg.Certificates))
	return 0
}

func cmdPolicy(_ context.Context, e *env) int {
	fmt.Fprint(e.stdout, vault.Policy(e.cfg))
	return 0
}

func newAgent(e *env) (*agent.Agent, func(), error) {
	vc, err := newVault(e, e.cfg.Vault)
	if err != nil {
		return nil, nil, err
	}
	prepareVault(e, vc)
	e.vaultClient = vc
	e.serving = newServing(e, vc)
	opts := agent.Options{Config: e.cfg, Issuer: vc, Log: e.log, Notifier: e.serving.services}
	if e.metrics != nil {
		opts.Observer = e.metrics
	}
	return agent.New(opts), vc.Close, nil
}

func cmdRun(ctx context.Context, e *env) int {
	a, closeVault, stopTelemetry, err := newRunAgent(ctx, e)
	if err != nil {
		e.log.Error("cannot start", "error", err)
		return 1
	}
	defer stopTelemetry()
	// live closes the Vault client in force, which a reload may replace.
	live := follow(ctx, e, a, closeVault)
	defer live.stop()
	stopPprof, err := startPprof(e.pprof, e.log)
	if err != nil {
		e.log.Error("cannot start", "error", err)
		return 1
	}
	defer stopPprof()
	e.log.Info("certkeeper starting", "version", version, "config", e.cfg.Path, "certificates", len(e.cfg.Certificates))
	stopServing, err := e.serving.start(ctx, e, a)
	if err != nil {
		e.log.Error("cannot start", "error", err)
		return 1
	}
	defer stopServing()
	sd := sdnotify.FromEnv()
	// The servers may start once certificates and trust bundles are in
	// place: that is when systemd hears READY=1.
	ready := e.serving.ready(ctx, func() {
		e.log.Info("initial pass complete")
		releaseStartupMemory()
		live.ready()
		// systemd starts units ordered After=certkeeper.service (nginx)
		// only now.
		if err := sd.Send("READY=1"); err != nil {
			e.log.Warn("cannot tell systemd we are ready", "error", err)
		}
	})
	// A deadlocked agent cannot answer Statuses, so the watchdog goes
	// quiet and systemd restarts it.
	go sd.Watchdog(ctx, sdnotify.WatchdogInterval(), func() bool { a.Statuses(); return true })
	err = a.Run(ctx, ready)
	sd.Send("STOPPING=1")
	if err != nil {
		e.log.Error("stopped", "error", err)
		return 1
	}
	stopServing()
	e.log.Info("certkeeper stopped")
	return 0
}

func cmdOnce(ctx context.Context, e *env) int {
	a, closeVault, err := newAgent(e)
	if err != nil {
		e.log.Error("cannot start", "error", err)
		return 1
	}
	defer closeVault()
	code := 0
	for _, o := range a.Once(ctx) {
		st := o.Status
		if o.Err != nil {
			code = 1
			fmt.Fprintf(e.stdout, "%s: FAILED: %s\n", st.Name, st.LastError)
			continue
		}
		r := o.Result
		switch r.Action {
		case agent.Issued:
			fmt.Fprintf(e.stdout, "%s: issued serial=%s not_after=%s renew_at=%s (%s)\n", st.Name, r.Serial, st.NotAfter.Format(time.RFC3339), r.RenewAt.Format(time.RFC3339), r.Reason)
		case agent.Restored:
			fmt.Fprintf(e.stdout, "%s: ok, restored %d files serial=%s not_after=%s renew_at=%s\n", st.Name, len(r.Written), r.Serial, st.NotAfter.Format(time.RFC3339), r.RenewAt.Format(time.RFC3339))
		default:
			fmt.Fprintf(e.stdout, "%s: ok serial=%s not_after=%s renew_at=%s\n", st.Name, r.Serial, st.NotAfter.Format(time.RFC3339), r.RenewAt.Format(time.RFC3339))
		}
	}
	return max(code, e.serving.once(ctx, e))
}

func cmdStatus(ctx context.Context, e *env) int {
	now := time.Now()
	statuses, source := currentStatus(ctx, e, now)
	if e.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(statuses); err != nil {
			return 1
		}
	} else if len(e.cfg.Certificates) == 0 {
		// A host that only keeps trust bundles: no empty table.
		fmt.Fprintln(e.stdout, "(no certificate blocks: this host keeps trust bundles only)")
	} else {
		printStatus(e, statuses, now)
		fmt.Fprintf(e.stdout, "(%s)\n", source)
	}
	code := printServingStatus(e, now)
	for _, st := range statuses {
		if st.State == agent.StateMissing || st.State == agent.StateExpired {
			return 1
		}
	}
	return code
}

// until renders a time relative to now the way an operator reads it.
func until(now, t time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return "now"
	}
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return d.Round(time.Second).String()
}
