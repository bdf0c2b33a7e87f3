//go:build integration && faults

package integration

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/cloudtest"
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

// TestNoCloudSecretsAnywhere is TestNoSecretsAnywhere for the machine
// identity logins, at debug level: a chain of jwt from GCP's metadata
// server, aws, jwt from Azure's and jwt from a file, where each method in
// turn refuses, answers garbage or hangs, tokens are revoked behind the
// agent's back and logins move down and up the chain. Neither the logs,
// nor `status` (text and JSON), nor the metrics, nor /v1/status, nor a
// SIGQUIT goroutine dump (what a panic prints) may contain the instance's
// AWS secret key or session token, any JWT a metadata server minted or
// the file held, a SigV4 signature, or a Vault token.
func TestNoCloudSecretsAnywhere(t *testing.T) {
	t.Parallel()
	e := newCloudEnv(t)
	tokenFile := filepath.Join(e.dir, "token.jwt")
	fileJWT := e.iss.Mint(map[string]any{"iss": jwtIssuer, "aud": jwtAudience, "sub": "system:serviceaccount:web:certkeeper"}, time.Hour)
	os.WriteFile(tokenFile, []byte(fileJWT), 0o600)
	metrics := freeAddr(t)
	cfg := e.config("secrets", []string{e.gcpBlock(), e.awsBlock(), e.azureBlock(), e.jwtFileBlock(tokenFile)}, `timeout = "3s"`,
		e.webCert("90s"), telemetryBlock(metrics))
	root := e.vault.Client
	revokeCurrent := func(d *daemon) {
		t.Helper()
		m := loginRe.FindAllStringSubmatch(d.Logs.String(), -1)
		acc := regexp.MustCompile(`accessor=(\S+)`).FindStringSubmatch(m[len(m)-1][0])[1]
		if _, err := root.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": acc}); err != nil {
			t.Fatal(err)
		}
	}

	// GCP refuses, STS refuses: Azure logs in.
	e.gcp.SetMode(cloudtest.Refuse)
	e.sts.SetMode(cloudtest.Refuse)
	d := e.start(cfg)
	d.WaitLog(`msg="logged in to vault" accessor=\S+ method=jwt mount=jwt-azure `, 1, time.Minute)
	d.WaitLog(`certificate issued and written.*cert=web`, 1, time.Minute)
	// GCP answers garbage, Azure refuses, STS is back: aws logs in.
	e.gcp.SetMode(cloudtest.Garbage)
	e.azure.SetMode(cloudtest.Refuse)
	e.sts.SetMode(cloudtest.OK)
	revokeCurrent(d)
	mark := d.mark()
	d.waitLogAfter(mark, `msg="logged in to vault" accessor=\S+ method=aws `, 1, 2*time.Minute)
	// GCP hangs, STS refuses, Azure answers garbage: the file logs in.
	e.gcp.SetMode(cloudtest.Hang)
	e.sts.SetMode(cloudtest.Refuse)
	e.azure.SetMode(cloudtest.Garbage)
	revokeCurrent(d)
	mark = d.mark()
	d.waitLogAfter(mark, `msg="logged in to vault" accessor=\S+ method=jwt mount=jwt `, 1, 2*time.Minute)
	d.waitLogAfter(mark, `certificate issued and written.*cert=web`, 1, 2*time.Minute)
	// And back up to GCP.
	e.gcp.SetMode(cloudtest.OK)
	mark = d.mark()
	d.waitLogAfter(mark, `msg="logged in to vault" accessor=\S+ method=jwt mount=jwt-gcp `, 1, 3*time.Minute)

	// Vault refusing a JWT (another audience) and a signed request (STS
	// refuses), in a one-shot run's output.
	badJWT := e.iss.Mint(map[string]any{"iss": jwtIssuer, "aud": "someone-else", "sub": "x"}, time.Hour)
	badFile := filepath.Join(e.dir, "bad.jwt")
	os.WriteFile(badFile, []byte(badJWT), 0o600)
	onceCfg := e.config("secrets-once", []string{e.jwtFileBlock(badFile), e.awsBlock()}, "", e.webCert("90s", fmt.Sprintf(`fullchain_file = "%s/once.pem"`, e.dir)))
	onceOut, onceErr, code := e.once(onceCfg)
	if code == 0 || !strings.Contains(onceOut+onceErr, "audience claim does not match") || !strings.Contains(onceOut+onceErr, "received error code 403 from STS") {
		t.Fatalf("once with a refused JWT and a refused signature: exit %d\n%s\n%s", code, onceOut, onceErr)
	}

	statusText, _, _ := runCertkeeper(t, e.procEnv(), "status", "-config", cfg)
	statusJSON, _, _ := runCertkeeper(t, e.procEnv(), "status", "-json", "-config", cfg)
	_, metricsText := httpGet(t, "http://"+metrics+"/metrics")
	_, remoteStatus := httpGet(t, "http://"+metrics+"/v1/status")
	if !strings.Contains(metricsText, `certkeeper_vault_logins_total{method="aws",result="failure"}`) || !strings.Contains(statusText, "VAULT AUTH") {
		t.Fatalf("the outputs to check lack what the test produced:\n%s\n%s", statusText, metricsText)
	}
	d.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-d.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("certkeeper did not exit on SIGQUIT")
	}
	output := strings.Join([]string{d.Logs.String(), statusText, statusJSON, metricsText, remoteStatus, onceOut, onceErr}, "\n")
	if !strings.Contains(output, "goroutine ") {
		t.Fatal("SIGQUIT produced no goroutine dump to check")
	}

	forbidden := map[string]string{
		"AWS secret key":        instanceCreds.SecretAccessKey,
		"AWS session token":     instanceCreds.SessionToken,
		"SigV4 Authorization":   "AWS4-HMAC-SHA256",
		"SigV4 signature":       "Signature=",
		"signed headers (JSON)": `"X-Amz-Date"`,
		"the JWT of the file":   fileJWT,
	}
	jwts := append(e.gcp.Issued(), e.azure.Issued()...)
	if len(e.gcp.Issued()) == 0 || len(e.azure.Issued()) == 0 {
		t.Fatal("the metadata servers minted no token")
	}
	for i, jwt := range append(jwts, fileJWT, badJWT) {
		parts := strings.Split(jwt, ".")
		forbidden[fmt.Sprintf("the payload of JWT %d", i)] = parts[1]
		forbidden[fmt.Sprintf("the signature of JWT %d", i)] = parts[2]
	}
	for what, s := range forbidden {
		if strings.Contains(output, s) {
			t.Errorf("output contains %s", what)
		}
	}
	if m := regexp.MustCompile(`hv[sb]\.[A-Za-z0-9_-]{20,}`).FindString(output); m != "" {
		t.Errorf("output contains a Vault token (%.8s...)", m)
	}
	// The login carries the signed request base64-encoded: look inside
	// anything that decodes.
	for _, blob := range regexp.MustCompile(`[A-Za-z0-9+/]{40,}={0,2}`).FindAllString(output, -1) {
		b, err := base64.StdEncoding.DecodeString(blob)
		if err != nil {
			continue
		}
		for what, s := range map[string]string{"a SigV4 signature": "AWS4-HMAC-SHA256", "the AWS session token": instanceCreds.SessionToken} {
			if strings.Contains(string(b), s) {
				t.Errorf("output contains %s, base64-encoded", what)
			}
		}
	}
	t.Logf("checked %d bytes of logs, status, metrics and goroutine dump: %d logins, %d failed logins, %d JWTs minted",
		len(output), strings.Count(output, `msg="logged in to vault"`), strings.Count(output, "trying the next auth method"), len(jwts))
}
