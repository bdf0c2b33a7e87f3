//go:build integration

package integration

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestGeneratedPolicy applies what `certkeeper policy` prints to a fresh
// AppRole that has no other policy (not even Vault's default), proves a full
// `once` works with it, and proves a request outside it is denied.
func TestGeneratedPolicy(t *testing.T) {
	e := newEnv(t, vaulttest.Options{})
	cfg := e.writeConfig(
		e.cert("web", vaulttest.RoleEC),
		e.cert("legacy", vaulttest.RoleRSA, `issue_mode = "issue"`, `key_type = "rsa"`),
	)
	cmd := exec.Command(certkeeperBin, "policy", "-config", cfg)
	cmd.Env = cleanEnv()
	policy, err := cmd.Output()
	if err != nil {
		t.Fatalf("certkeeper policy: %v", err)
	}
	for _, want := range []string{`path "pki_int/sign/ec"`, `path "pki_int/issue/rsa"`, `path "auth/token/renew-self"`} {
		if !strings.Contains(string(policy), want) {
			t.Errorf("policy lacks %s:\n%s", want, policy)
		}
	}
	root := e.vault.Client
	if err := root.Sys().PutPolicy("generated", string(policy)); err != nil {
		t.Fatalf("Vault rejected the generated policy: %v", err)
	}
	if _, err := root.Logical().Write("auth/approle/role/generated", map[string]any{
		"token_policies":          []string{"generated"},
		"token_no_default_policy": true,
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().Read("auth/approle/role/generated/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().Write("auth/approle/role/generated/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	roleID, secretID := rid.Data["role_id"].(string), sid.Data["secret_id"].(string)
	os.WriteFile(e.roleIDFile, []byte(roleID), 0o600)
	os.WriteFile(e.secretIDFile, []byte(secretID), 0o600)

	out, errOut, code := once(t, cfg)
	if code != 0 {
		t.Fatalf("once with only the generated policy exited %d:\n%s\n%s", code, out, errOut)
	}

	// The same identity cannot step outside the policy.
	c, err := vaulttest.NewClient(e.vault.Addr, "")
	if err != nil {
		t.Fatal(err)
	}
	login, err := c.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(login.Auth.ClientToken)
	// During a CA rotation certkeeper names the issuer in the path; the
	// policy allows that for the certificates' own roles and operations.
	if _, err := c.Logical().Write("pki_int/issuer/default/issue/rsa", map[string]any{"common_name": "legacy.example.internal"}); err != nil {
		t.Errorf("issuing with the issuer in the path under the generated policy: %v", err)
	}
	if _, err := c.Logical().List("pki_int/issuers"); err != nil {
		t.Errorf("listing the mount's issuers under the generated policy: %v", err)
	}
	for path, data := range map[string]map[string]any{
		"pki_int/issuer/default/issue/ec": {"common_name": "web.example.internal"}, // named issuer, same rule
		"pki_int/issue/ec":                {"common_name": "web.example.internal"}, // sign is allowed, issue is not
		"pki_int/sign/rsa":                {"common_name": "x.example.internal"},   // another role
		"pki/root/sign-intermediate":      {"common_name": "evil"},
		"sys/policy/generated":            {"policy": `path "*" { capabilities = ["sudo"] }`},
		"auth/approle/role/generated":     {"token_policies": "root"},
	} {
		_, err := c.Logical().Write(path, data)
		var re *api.ResponseError
		if !errors.As(err, &re) || re.StatusCode != 403 {
			t.Errorf("write to %s with the generated policy: %v, want 403", path, err)
		}
	}
}
