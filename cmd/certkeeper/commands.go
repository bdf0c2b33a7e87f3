package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/control"
	"github.com/certkeeper/certkeeper/daemon"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/vault"
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

// newDaemon builds the daemon's parts for a command; run wants telemetry
// and profiles, the one-shot commands do not.
func newDaemon(e *env, run bool) (*daemon.Daemon, bool) {
	o := daemon.Options{Log: e.log, Version: version}
	if run {
		o.Telemetry, o.Pprof = true, e.pprof
	}
	d, err := daemon.New(e.cfg, o)
	if err != nil {
		e.log.Error("cannot start", "error", err)
		return nil, false
	}
	return d, true
}

func cmdRun(ctx context.Context, e *env) int {
	d, ok := newDaemon(e, true)
	if !ok {
		return 1
	}
	if d.Run(ctx) != nil {
		return 1 // Run logged why
	}
	return 0
}

func cmdOnce(ctx context.Context, e *env) int {
	d, ok := newDaemon(e, false)
	if !ok {
		return 1
	}
	r := d.Once(ctx)
	code := 0
	for _, o := range r.Certificates {
		st := o.Status
		if o.Err != nil {
			code = 1
			fmt.Fprintf(e.stdout, "%s: FAILED: %s\n", st.Name, st.LastError)
			continue
		}
		res := o.Result
		switch res.Action {
		case agent.Issued:
			fmt.Fprintf(e.stdout, "%s: issued serial=%s not_after=%s renew_at=%s (%s)\n", st.Name, res.Serial, st.NotAfter.Format(time.RFC3339), res.RenewAt.Format(time.RFC3339), res.Reason)
		case agent.Restored:
			fmt.Fprintf(e.stdout, "%s: ok, restored %d files serial=%s not_after=%s renew_at=%s\n", st.Name, len(res.Written), res.Serial, st.NotAfter.Format(time.RFC3339), res.RenewAt.Format(time.RFC3339))
		default:
			fmt.Fprintf(e.stdout, "%s: ok serial=%s not_after=%s renew_at=%s\n", st.Name, res.Serial, st.NotAfter.Format(time.RFC3339), res.RenewAt.Format(time.RFC3339))
		}
	}
	for _, o := range r.Bundles {
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
	return max(code, printReloads(e, r.Services))
}

// printReloads prints one line per service reloaded and returns 1 when
// any failed.
func printReloads(e *env, outs []services.Outcome) int {
	code := 0
	for _, o := range outs {
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
	d, ok := newDaemon(e, false)
	if !ok {
		return 1
	}
	r, err := d.Rotate(ctx, e.names, e.spread)
	if err != nil {
		fmt.Fprintf(e.stderr, "certkeeper rotate: %v\n", err)
		return 1
	}
	code := 0
	for _, o := range r.Certificates {
		st := o.Status
		if o.Err != nil {
			code = 1
			fmt.Fprintf(e.stdout, "%s: FAILED: %s\n", st.Name, st.LastError)
			continue
		}
		fmt.Fprintf(e.stdout, "%s: rotated serial=%s not_after=%s renew_at=%s\n", st.Name, o.Result.Serial, st.NotAfter.Format(time.RFC3339), o.Result.RenewAt.Format(time.RFC3339))
	}
	return max(code, printReloads(e, r.Services))
}

func cmdStatus(ctx context.Context, e *env) int {
	now := time.Now()
	r := daemon.Status(ctx, e.cfg, e.log, now)
	if e.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r.Certificates); err != nil {
			return 1
		}
	} else if len(e.cfg.Certificates) == 0 {
		// A host that only keeps trust bundles: no empty table.
		fmt.Fprintln(e.stdout, "(no certificate blocks: this host keeps trust bundles only)")
	} else {
		printStatus(e, r, now)
		fmt.Fprintf(e.stdout, "(%s)\n", r.Source)
	}
	code := printServingStatus(e, r, now)
	for _, st := range r.Certificates {
		if st.State == agent.StateMissing || st.State == agent.StateExpired || st.State == agent.StateRevoked {
			return 1
		}
	}
	return code
}
