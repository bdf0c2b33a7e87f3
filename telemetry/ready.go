package telemetry

import (
	"fmt"
	"time"

	"github.com/certkeeper/certkeeper/agent"
)

// Unready says why the agent is not ready, one reason per certificate; none
// means ready. Ready is: every certificate is on disk, not expired, and not
// past its renewal point with renewals failing. A certificate that is due
// and being renewed right now is ready; one whose renewal keeps failing
// while its renewal point has passed is the thing to page about.
func Unready(statuses []agent.Status, now time.Time) []string {
	var out []string
	for _, st := range statuses {
		if r := unready(st, now); r != "" {
			out = append(out, st.Name+": "+r)
		}
	}
	return out
}

func unready(st agent.Status, now time.Time) string {
	switch {
	case st.NotAfter.IsZero() && st.LastResult == "pending":
		return "no certificate yet (first pass not finished)"
	case st.NotAfter.IsZero():
		return withError("no certificate on disk", st)
	case !now.Before(st.NotAfter):
		return withError(fmt.Sprintf("expired at %s", st.NotAfter.UTC().Format(time.RFC3339)), st)
	case st.Failures > 0 && !now.Before(st.RenewAt):
		return withError(fmt.Sprintf("past its renewal point (%s) and renewal failed %d times in a row; expires %s",
			st.RenewAt.UTC().Format(time.RFC3339), st.Failures, st.NotAfter.UTC().Format(time.RFC3339)), st)
	}
	return ""
}

func withError(msg string, st agent.Status) string {
	if st.LastError != "" {
		msg += ": " + st.LastError
	}
	if !st.NextAttempt.IsZero() && st.Failures > 0 {
		msg += "; next attempt " + st.NextAttempt.UTC().Format(time.RFC3339)
	}
	return msg
}
