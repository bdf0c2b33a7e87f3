//go:build integration && faults

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestNoSecretsAnywhere runs a full lifecycle at debug level with every
// path that handles a secret: a response-wrapped secret_id (unwrapped at
// start), tokens that are renewed, expire and are replaced by new logins, a
// token revoked behind the agent's back, Vault-generated keys (issue mode)
// next to host keys, a request Vault refuses, `status -json`, and finally a
// SIGQUIT goroutine dump, which is what a panic prints. None of it may
// contain the wrapping token, the secret_id, the role_id, any Vault token,
// or any line of a private key.
func TestNoSecretsAnywhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	root := e.vault.Client
	roleID, _ := e.vault.AppRole(t, vaulttest.AppRoleOptions{Name: "lifecycle", TokenTTL: "15s", TokenMaxTTL: "25s"})
	const secretID = "secret-id-that-must-never-be-printed"
	wrapping, err := vaulttest.WrapSecretID(t.Context(), root, "lifecycle", secretID, "120s")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(e.roleIDFile, []byte(roleID), 0o600)
	os.WriteFile(e.secretIDFile, []byte(wrapping), 0o600)
	vault := fmt.Sprintf(`
vault {
  address = %q
  auth "approle" {
    role_id_file      = %q
    secret_id_file    = %q
    secret_id_wrapped = true
  }
}
`, e.vault.Addr, e.roleIDFile, e.secretIDFile)
	refused := strings.ReplaceAll(e.cert("refused", vaulttest.RoleEC), "refused.example.internal", "refused.example.com")
	cfg := e.writeRawConfig(vault,
		shortCert(e, "web"),
		shortCert(e, "iss", `issue_mode = "issue"`),
		refused)

	agentTokens := e.auditTokens()

	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web`, 1, time.Minute)
	d.WaitLog(`certificate issued and written.*cert=iss`, 1, time.Minute)
	// Revoke the current token behind the agent's back.
	m := regexp.MustCompile(`logged in to vault" accessor=(\S+)`).FindStringSubmatch(d.Logs.String())
	if m == nil {
		t.Fatal("no login line with the token accessor: cannot revoke the agent's token")
	}
	if _, err := root.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": m[1]}); err != nil {
		t.Fatal(err)
	}
	d.WaitLog(`certificate issued and written.*cert=web`, 3, 3*time.Minute)
	d.WaitLog(`logged in to vault`, 3, time.Minute)
	d.WaitLog(`renewal failed.*cert=refused`, 1, time.Minute)

	status := exec.Command(certkeeperBin, "status", "-json", "-config", cfg)
	statusOut, _ := status.CombinedOutput()

	// A goroutine dump is what a panic would print.
	d.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-d.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("certkeeper did not exit on SIGQUIT")
	}
	output := d.Logs.String() + "\n" + string(statusOut)
	if !strings.Contains(output, "goroutine ") {
		t.Fatal("SIGQUIT produced no goroutine dump to check")
	}

	forbidden := map[string]string{
		"wrapping token": wrapping,
		"secret_id":      secretID,
		"role_id":        roleID,
		"PEM key header": "PRIVATE KEY",
	}
	// The tokens Vault gave the agent, read from the audit log: one per
	// login, and the agent logged in at least three times.
	tokens := agentTokens()
	if logins := strings.Count(output, "logged in to vault"); len(tokens) < logins || logins < 3 {
		t.Fatalf("the audit log holds %d login tokens for %d logins: the check below would not cover them all", len(tokens), logins)
	}
	for i, tok := range tokens {
		forbidden[fmt.Sprintf("token of login %d", i+1)] = tok
	}
	for what, s := range forbidden {
		if strings.Contains(output, s) {
			t.Errorf("output contains the %s", what)
		}
	}
	// Any other token (the dev server's root token is the word "root",
	// which paths in a goroutine dump contain, so it is not looked for).
	if m := regexp.MustCompile(`hv[sb]\.[A-Za-z0-9_-]{20,}`).FindString(output); m != "" {
		t.Errorf("output contains a Vault token (%.8s...)", m)
	}
	for _, name := range []string{"web", "iss"} {
		keyPEM, _ := os.ReadFile(filepath.Join(e.dir, name+".key"))
		for _, line := range strings.Split(string(keyPEM), "\n") {
			if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(output, line) {
				t.Errorf("output contains a line of %s's private key", name)
			}
		}
	}
	t.Logf("checked %d bytes of logs, status and goroutine dump: %d logins, %d issuances, token revoked and replaced",
		len(output), strings.Count(output, "logged in to vault"), strings.Count(output, "certificate issued and written"))
}
