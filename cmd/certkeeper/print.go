package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/daemon"
	"github.com/certkeeper/certkeeper/services"
	"github.com/certkeeper/certkeeper/trust"
)

// printStatus prints one line per certificate, times relative to now.
func printStatus(e *env, r daemon.StatusReport, now time.Time) {
	svc := serviceStates(e, r.Services)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCOMMON NAME\tSTATE\tEXPIRES IN\tRENEWS IN\tLAST RESULT\tSERVICE\tNOTE")
	for _, st := range r.Certificates {
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
func serviceStates(e *env, svcs []services.Status) func(cert string) string {
	states := map[string]string{}
	for _, st := range svcs {
		states[st.Name] = st.State
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
	if !st.RevokedAt.IsZero() {
		n := "revoked in vault " + ago(now, st.RevokedAt) + ", being replaced"
		if st.Failures > 0 {
			n += fmt.Sprintf("; failed %d times in a row: %s", st.Failures, oneLine(st.LastError))
		}
		return n
	}
	if st.Failures > 0 {
		n := fmt.Sprintf("failed %d times in a row", st.Failures)
		if !st.NextAttempt.IsZero() {
			n += ", " + nextAttempt(now, st.NextAttempt)
		}
		return n + ": " + oneLine(st.LastError)
	}
	return strings.Join(append(nonEmpty(oneLine(st.LastError)), changeNotes(st, now)...), "; ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// printAuthStatus prints the running daemon's Vault auth methods, in the
// order they are tried: which one holds the token, and why the others (the
// preferred one above all) were passed over.
func printAuthStatus(e *env, r daemon.StatusReport, now time.Time) {
	if len(r.Auth) == 0 {
		return
	}
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VAULT AUTH\tMOUNT\tSTATE\tNOTE")
	for i, st := range r.Auth {
		state, note := "-", ""
		switch {
		case st.InUse:
			state, note = "in use", "logged in "+ago(now, st.LoggedInAt)
		case st.Failures > 0:
			state = "failing"
			note = fmt.Sprintf("failed %d times in a row, %s: %s", st.Failures, nextAttempt(now, st.NextAttempt), oneLine(st.LastError))
		}
		fmt.Fprintf(tw, "%d %s\t%s\t%s\t%s\n", i+1, st.Method, st.Mount, state, note)
	}
	tw.Flush()
}

// printServingStatus prints the services and trust bundles for `status`
// and returns 1 when one needs attention: a service that failed its check
// or reload or does not serve what is on disk, a bundle with a CA lacking
// its CRL or a stale CRL, or a telemetry endpoint that cannot bind its
// address (so whatever answers there is not this certkeeper).
func printServingStatus(e *env, r daemon.StatusReport, now time.Time) int {
	code := 0
	if r.ServicesErr != nil {
		fmt.Fprintf(e.stderr, "certkeeper status: %v\n", r.ServicesErr)
		code = 1
	}
	svcs, bundles := r.Services, r.Bundles
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
	if t := r.Telemetry; t != nil && t.Problem != "" {
		code = 1
	}
	if e.json {
		return code
	}
	if t := r.Telemetry; t != nil && t.Problem != "" {
		fmt.Fprintf(e.stdout, "\nTELEMETRY: %s\n", t.Problem)
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
			if held := heldNote(st, now); held != "" && st.LastError == "" {
				note = held
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
				if !ca.TrustedSince.IsZero() {
					note = strings.Join(append(nonEmpty(note), "in the bundle since "+ago(now, ca.TrustedSince)), "; ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, state, ca.Subject, until(now, ca.NotAfter), crl, next, note)
			}
		}
		tw.Flush()
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

// nextAttempt reads "next attempt in 40s", or "next attempt now" once its
// time has come (a retry about to run, not one in "now").
func nextAttempt(now, t time.Time) string {
	if !t.After(now) {
		return "next attempt now"
	}
	return "next attempt in " + until(now, t)
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}
