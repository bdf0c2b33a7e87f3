package services

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
)

// childEnvAllowed are the variables check and reload commands get from
// certkeeper's environment: what programs need to find things and speak
// the right language, nothing else. It is a list of what may pass, not of
// what may not, because the daemon's environment holds things certkeeper
// cannot judge: VAULT_TOKEN (its own Vault token with token auth), other
// VAULT_* settings, whatever a unit's Environment= lines carry, and
// NOTIFY_SOCKET, which would let a child talk to systemd as certkeeper. A
// command that needs more says so itself: ["env", "NAME=value", "cmd"].
var childEnvAllowed = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"}

// secretName matches names of variables whose values are removed from a
// command's output (besides being withheld from it): a child can still
// find them (in /proc/<ppid>/environ), and a script that prints what it
// found must not carry them into logs and status.
var secretName = regexp.MustCompile(`(?i)^VAULT_|TOKEN|SECRET|PASS|PRIVATE|CRED|AUTH|KEY`)

// childEnv splits environ (os.Environ) into what a child gets and the
// values of withheld variables whose names look secret.
func childEnv(environ []string) (env, secrets []string) {
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if slices.Contains(childEnvAllowed, name) || strings.HasPrefix(name, "LC_") {
			env = append(env, kv)
			continue
		}
		// Short values (a "1", a "yes") would blank out ordinary words.
		if secretName.MatchString(name) && len(value) >= 8 {
			secrets = append(secrets, value)
		}
	}
	// Longest first, so a value that contains another goes whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	return env, secrets
}

// vaultToken matches Vault service, batch and recovery tokens, and the
// legacy s.<24> form.
var vaultToken = regexp.MustCompile(`\bhv[sbr]\.[A-Za-z0-9_-]{20,}|\bs\.[A-Za-z0-9]{24}\b`)

// privateKey matches a PEM private key block; the tail of a command's
// output may have cut its start or end, and partial blocks go too.
var privateKey = regexp.MustCompile(`(?s)(?:-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z))|(?:\A.*?-----END [A-Z0-9 ]*PRIVATE KEY-----)`)

// redact removes what must never leave certkeeper from a command's output:
// private keys, Vault tokens, and the values of secrets.
func redact(out []byte, secrets []string) []byte {
	out = privateKey.ReplaceAll(out, []byte("[private key removed]"))
	out = vaultToken.ReplaceAll(out, []byte("[vault token removed]"))
	for _, s := range secrets {
		out = bytes.ReplaceAll(out, []byte(s), []byte("[secret removed]"))
	}
	return out
}
