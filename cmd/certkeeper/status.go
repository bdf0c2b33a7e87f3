package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/services"
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
	svc := serviceStates(e)
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
			dash(st.LastResult), dash(svc(st.Name)), note(st, now))
	}
	tw.Flush()
}

// serviceStates returns, for a certificate, the state of each service it
// notifies ("nginx=ok"), from what the daemon last recorded.
func serviceStates(e *env) func(cert string) string {
	states := map[string]string{}
	if svcs, err := services.ReadStatus(e.cfg); err == nil {
		for _, st := range svcs {
			states[st.Name] = st.State
		}
	}
	return func(cert string) string {
		c, ok := e.cfg.Certificate(cert)
		if !ok {
			return ""
		}
		var out []string
		for _, name := range c.Notify {
			state := states[name]
			if state == "" {
				state = "unknown"
			}
			out = append(out, name+"="+state)
		}
		return strings.Join(out, ",")
	}
}

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
