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
	a.log.Error("renewal failed; keeping the files on disk", args...)
}
