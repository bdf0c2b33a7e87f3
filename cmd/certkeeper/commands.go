package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/control"
	"github.com/certkeeper/certkeeper/daemon"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/trust"
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
	// A running daemon does the passes, so nothing is issued or reloaded
	// twice; its answer is printed as if they were done here.
	resp, err := control.Once(ctx, e.cfg.StateDir, e.cfg.Path)
	switch {
	case err == nil:
		e.log.Info("the running daemon did the passes over the control socket")
		return printOnce(e, *resp, "issued")
	case !errors.Is(err, control.ErrNoDaemon):
		fmt.Fprintf(e.stderr, "certkeeper once: %v\n", err)
		return 1
	}
	d, ok := newDaemon(e, false)
	if !ok {
		return 1
	}
	r, err := d.Once(ctx)
	if err != nil {
		fmt.Fprintf(e.stderr, "certkeeper once: %v\n", err)
		return 1
	}
	return printOnce(e, r.Summary(), "issued")
}

// printOnce prints what once (or rotate without a daemon, whose verb for
// a new certificate is "rotated") did, one line per certificate, trust
// bundle and service, and returns 1 when anything failed, a rolled-back
// write included: its certificate is not on disk.
func printOnce(e *env, r control.OnceResponse, issued string) int {
	code := 0
	for _, c := range r.Certificates {
		switch {
		case c.Error != "":
			code = 1
			fmt.Fprintf(e.stdout, "%s: FAILED: %s\n", c.Name, c.Error)
		case c.RolledBack != "":
			code = 1
			fmt.Fprintf(e.stdout, "%s: FAILED: rolled back: %s; serial=%s is not on disk, the files are those from before this run\n", c.Name, c.RolledBack, c.Serial)
		case c.Action == string(agent.Issued) && issued == "rotated":
			fmt.Fprintf(e.stdout, "%s: rotated serial=%s not_after=%s renew_at=%s\n", c.Name, c.Serial, c.NotAfter.Format(time.RFC3339), c.RenewAt.Format(time.RFC3339))
		case c.Action == string(agent.Issued):
			fmt.Fprintf(e.stdout, "%s: issued serial=%s not_after=%s renew_at=%s (%s)\n", c.Name, c.Serial, c.NotAfter.Format(time.RFC3339), c.RenewAt.Format(time.RFC3339), c.Reason)
		case c.Action == string(agent.Restored):
			fmt.Fprintf(e.stdout, "%s: ok, restored %d files serial=%s not_after=%s renew_at=%s\n", c.Name, c.Restored, c.Serial, c.NotAfter.Format(time.RFC3339), c.RenewAt.Format(time.RFC3339))
		default:
			fmt.Fprintf(e.stdout, "%s: ok serial=%s not_after=%s renew_at=%s\n", c.Name, c.Serial, c.NotAfter.Format(time.RFC3339), c.RenewAt.Format(time.RFC3339))
		}
	}
	for _, b := range r.Bundles {
		switch {
		case b.Error != "":
			code = 1
			fmt.Fprintf(e.stdout, "trust_bundle %s: FAILED: %s\n", b.Name, b.Error)
		case b.RolledBack != "":
			code = 1
			fmt.Fprintf(e.stdout, "trust_bundle %s: FAILED: rolled back: %s; the files are those from before this run\n", b.Name, b.RolledBack)
		default:
			what := "ok"
			if b.Written {
				what = "written"
			}
			fmt.Fprintf(e.stdout, "trust_bundle %s: %s cas=%d crls=%d\n", b.Name, what, b.CAs, b.CRLs)
		}
	}
	for _, o := range r.Services {
		switch {
		case o.Error != "":
			code = 1
			fmt.Fprintf(e.stdout, "service %s: FAILED (%s): %s\n", o.Service, o.Result, o.Error)
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
	return printOnce(e, r.Summary(), "rotated")
}

func cmdStatus(ctx context.Context, e *env) int {
	now := time.Now()
	r := daemon.Status(ctx, e.cfg, e.log, now)
	cleanAll(&r)
	if e.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(statusJSON(r)); err != nil {
			return 1
		}
	} else if len(e.cfg.Certificates) == 0 {
		// A host that only keeps trust bundles: no empty table.
		fmt.Fprintln(e.stdout, "(no certificate blocks: this host keeps trust bundles only)")
	} else {
		printStatus(e, r, now)
		fmt.Fprintf(e.stdout, "(%s)\n", r.Source)
	}
	if !e.json {
		printAuthStatus(e, r, now)
	}
	code := printServingStatus(e, r, now)
	for _, st := range r.Certificates {
		if st.State == agent.StateMissing || st.State == agent.StateExpired || st.State == agent.StateRevoked {
			return 1
		}
	}
	return code
}

// statusOutput is what status -json prints: everything the table shows.
type statusOutput struct {
	// Source says where the certificates' state came from: the running
	// daemon, or the files on disk and why.
	Source       string            `json:"source"`
	Certificates []agent.Status    `json:"certificates"`
	Services     []services.Status `json:"services"`
	// ServicesError says why the services' saved states could not be read.
	ServicesError string                   `json:"services_error,omitempty"`
	Bundles       []trust.Status           `json:"trust_bundles"`
	Telemetry     *control.TelemetryStatus `json:"telemetry,omitempty"`
	// Auth is the running daemon's Vault auth chain (absent when no
	// daemon answered): which method holds the token, why others failed.
	Auth []vault.AuthMethodStatus `json:"auth,omitempty"`
}

func statusJSON(r daemon.StatusReport) statusOutput {
	out := statusOutput{Source: r.Source, Certificates: r.Certificates, Services: r.Services, Bundles: r.Bundles, Telemetry: r.Telemetry, Auth: r.Auth}
	if r.ServicesErr != nil {
		out.ServicesError = r.ServicesErr.Error()
	}
	// Lists, never null, for scripts that iterate.
	out.Certificates = nonNil(out.Certificates)
	out.Services = nonNil(out.Services)
	out.Bundles = nonNil(out.Bundles)
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
