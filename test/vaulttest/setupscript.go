package vaulttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// What examples/vault/setup-pki.sh makes, which every example config uses.
const (
	ScriptRootMount   = "pki_root"
	ScriptServerMount = "pki_servers"
	ScriptClientMount = "pki_clients"
	ScriptServerRole  = "web"
	ScriptClientRole  = "client"
	ScriptAppRole     = "web-host"
)

// SetupScript runs examples/vault/setup-pki.sh, unchanged, against the
// server as its root token would, with the vault CLI being this very
// binary, and writes the script's outputs (CA certificates, the policy)
// to out. It returns the role_id and a fresh secret_id of the script's
// AppRole for web hosts.
func SetupScript(ctx context.Context, s *Server, out string) (roleID, secretID string, err error) {
	if err := runScript(ctx, s, "setup-pki.sh", out); err != nil {
		return "", "", err
	}
	sec, err := s.Client.Logical().ReadWithContext(ctx, "auth/approle/role/"+ScriptAppRole+"/role-id")
	if err != nil {
		return "", "", fmt.Errorf("reading the role_id of %s: %w", ScriptAppRole, err)
	}
	if roleID, err = stringField(sec, "role_id"); err != nil {
		return "", "", err
	}
	sec, err = s.Client.Logical().WriteWithContext(ctx, "auth/approle/role/"+ScriptAppRole+"/secret-id", nil)
	if err != nil {
		return "", "", fmt.Errorf("creating a secret_id for %s: %w", ScriptAppRole, err)
	}
	if secretID, err = stringField(sec, "secret_id"); err != nil {
		return "", "", err
	}
	return strings.TrimSpace(roleID), strings.TrimSpace(secretID), nil
}

// SetupScript is the test form of SetupScript.
func (s *Server) SetupScript(t testing.TB, out string) (roleID, secretID string) {
	t.Helper()
	roleID, secretID, err := SetupScript(t.Context(), s, out)
	if err != nil {
		t.Fatal(err)
	}
	return roleID, secretID
}

// The auth role every method of examples/vault/setup-auth.sh makes.
const ScriptAuthRole = "web-host"

// SetupAuthScript runs examples/vault/setup-auth.sh, unchanged, after
// SetupScript, with env (such as AWS_ACCOUNT=...) choosing its sections
// and pointing it at the tests' stand-ins for the clouds.
func SetupAuthScript(ctx context.Context, s *Server, out string, env ...string) error {
	return runScript(ctx, s, "setup-auth.sh", out, env...)
}

// runScript runs examples/vault/<name> against the server as its root
// token would, with the vault CLI being this very binary.
func runScript(ctx context.Context, s *Server, name, out string, env ...string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := moduleRoot(wd)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	// The script calls `vault`: give it a PATH where that name is this
	// binary, whatever the binary is called.
	cli, err := os.MkdirTemp("", "vaulttest-cli-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cli)
	if err := os.Symlink(s.bin, filepath.Join(cli, "vault")); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "examples", "vault", name))
	cmd.Env = append(append(childEnv(out), "VAULT_ADDR="+s.Addr, "VAULT_TOKEN="+s.RootToken, "OUT="+out,
		"PATH="+cli+string(os.PathListSeparator)+os.Getenv("PATH")), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, b)
	}
	return nil
}

// SetupAuthScript is the test form of SetupAuthScript.
func (s *Server) SetupAuthScript(t testing.TB, out string, env ...string) {
	t.Helper()
	if err := SetupAuthScript(t.Context(), s, out, env...); err != nil {
		t.Fatal(err)
	}
}
