package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/telemetry"
)

// currentStatus asks the running agent, which knows the last result and
// the next attempt, and falls back to reading the files on disk when no
// agent for this config answers. source says which, for the reader.
func currentStatus(ctx context.Context, e *env, now time.Time) (statuses []agent.Status, source string) {
	listen := e.cfg.Telemetry.Listen
	if listen == "" {
		return agent.DiskStatus(e.cfg, now), "read from disk (the telemetry endpoint is off)"
	}
	url, err := telemetry.StatusURL(listen)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		statuses, err = telemetry.FetchStatus(ctx, url, e.cfg.Path)
		if err == nil {
			return statuses, "from the running agent at " + url
		}
	}
	e.log.Debug("no running agent answered; reading the files on disk", "error", err)
	var other *telemetry.OtherAgentError
	if errors.As(err, &other) {
		return agent.DiskStatus(e.cfg, now), "read from disk: " + other.Error()
	}
	return agent.DiskStatus(e.cfg, now), "read from disk (no running agent answered at " + listen + ")"
}

func printStatus(e *env, statuses []agent.Status, now time.Time) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCOMMON NAME\tSTATE\tEXPIRES IN\tRENEWS IN\tLAST RESULT\tSERVICE\tNOTE")
	for _, st := range statuses {
		expires, renews := "-", "-"
		if !st.NotAfter.IsZero() {
			expires, renews = until(now, st.NotAfter), until(now, st.RenewAt)
			if st.State == agent.StateExpired {
				expires = "expired"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Name, st.CommonName, st.State, expires, renews,
			dash(st.LastResult), dash(serviceState(st)), note(st, now))
	}
	tw.Flush()
}

// serviceState is what the services reading the certificate make of it
// (reloaded, serving it); empty until certkeeper reloads services.
func serviceState(agent.Status) string { return "" }

// note is what an operator needs next: why it fails and when the next
// attempt is, or why a certificate on disk will be replaced.
func note(st agent.Status, now time.Time) string {
	if st.Failures > 0 {
		n := fmt.Sprintf("failed %d times in a row", st.Failures)
		if !st.NextAttempt.IsZero() {
			n += ", next attempt in " + until(now, st.NextAttempt)
		}
		return n + ": " + oneLine(st.LastError)
	}
	return oneLine(st.LastError)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
