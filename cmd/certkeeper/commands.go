package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/agent/vault"
)

func cmdValidate(_ context.Context, e *env) int {
	fmt.Fprintf(e.stdout, "%s: ok (%d certificates)\n", e.cfg.Path, len(e.cfg.Certificates))
	return 0
}

func newAgent(e *env) (*agent.Agent, func(), error) {
	vc, err := vault.New(e.cfg.Vault, vault.Options{Log: e.log})
	if err != nil {
		return nil, nil, err
	}
	prepareVault(e, vc)
	a := agent.New(agent.Options{Config: e.cfg, Issuer: vc, Log: e.log})
	return a, vc.Close, nil
}

func cmdRun(ctx context.Context, e *env) int {
	a, closeVault, err := newAgent(e)
	if err != nil {
		e.log.Error("cannot start", "error", err)
		return 1
	}
	defer closeVault()
	e.log.Info("certkeeper starting", "version", version, "config", e.cfg.Path, "certificates", len(e.cfg.Certificates))
	ready := func() { e.log.Info("initial pass complete") }
	if err := a.Run(ctx, ready); err != nil {
		e.log.Error("stopped", "error", err)
		return 1
	}
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
	return code
}

func cmdStatus(_ context.Context, e *env) int {
	now := time.Now()
	statuses := agent.DiskStatus(e.cfg, now)
	if e.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(statuses); err != nil {
			return 1
		}
	} else {
		printStatus(e, statuses, now)
	}
	for _, st := range statuses {
		if st.State == agent.StateMissing || st.State == agent.StateExpired {
			return 1
		}
	}
	return 0
}

func printStatus(e *env, statuses []agent.Status, now time.Time) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCOMMON NAME\tSERIAL\tNOT AFTER\tEXPIRES IN\tRENEWS IN\tSTATE\tNOTE")
	for _, st := range statuses {
		if st.NotAfter.IsZero() {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t%s\t%s\n", st.Name, st.CommonName, st.State, st.LastError)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Name, st.CommonName, st.Serial,
			st.NotAfter.UTC().Format(time.RFC3339), until(now, st.NotAfter), until(now, st.RenewAt), st.State, st.LastError)
	}
	tw.Flush()
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
