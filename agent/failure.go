package agent

import (
	"errors"
	"time"

	"github.com/certkeeper/certkeeper/vault"
)

// logFailure logs a failed pass once, where it is handled. Most failures
// fix themselves (Vault back, disk freed) and the backoff rides them out;
// a policy denial never does, so it gets its own line and an alert key
// that log-based alerting can match without parsing the error.
func (a *Agent) logFailure(name string, err error, st Status) {
	args := []any{"cert", name, "error", err, "failures", st.Failures,
		"retry_at", st.NextAttempt.Format(time.RFC3339), "current_not_after", formatTime(st.NotAfter)}
	var denied *vault.DeniedError
	if errors.As(err, &denied) {
		a.log.Error("renewal failed: vault policy denies it and logging in again does not help; fix the policy, or the mount or role in the config if it does not exist (keeping the files on disk, retrying with backoff)",
			append(args, "alert", "vault_permission_denied", "path", denied.Path)...)
		return
	}
	a.log.Error(failedMsg(st, true), args...)
}

// failedMsg is the log message of a failed pass: it says what is on disk
// (a certificate kept, or none at all) and, for the daemon (retrying),
// that another attempt follows; once and rotate exit instead.
func failedMsg(st Status, retrying bool) string {
	switch {
	case !st.NotAfter.IsZero() && retrying:
		return "renewal failed; keeping the files on disk"
	case !st.NotAfter.IsZero():
		return "renewal failed; the files on disk stay as they were"
	case retrying:
		return "renewal failed; no certificate on disk yet, retrying with backoff"
	}
	return "renewal failed; no certificate on disk"
}
