package services

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/pki"
)

// TestChildEnvironment: a check or reload command gets PATH, locale and
// the like, never VAULT_* (VAULT_TOKEN is certkeeper's own token with
// token auth), other secrets, or systemd's notify socket; and what it
// prints carries none of them into the error.
func TestChildEnvironment(t *testing.T) {
	const token = "hvs.CAESIJcertkeeperTestTokenNotForChildren0123"
	t.Setenv("VAULT_TOKEN", token)
	t.Setenv("VAULT_ADDR", "https://vault.example.internal:8200")
	t.Setenv("DEPLOY_API_KEY", "deploy-api-key-value-42")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LC_ALL", "C.UTF-8")
	dump := filepath.Join(t.TempDir(), "env")
	err := runCommand(t.Context(), []string{"sh", "-c", "env > " + dump + "; env; exit 1"}, 5*time.Second)
	if err == nil {
		t.Fatal("the command's failure was lost")
	}
	got, rerr := os.ReadFile(dump)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, name := range []string{"VAULT_TOKEN=", "VAULT_ADDR=", "DEPLOY_API_KEY=", "NOTIFY_SOCKET="} {
		if strings.Contains(string(got), name) {
			t.Errorf("the command's environment has %s", name)
		}
	}
	for _, name := range []string{"PATH=", "LC_ALL=C.UTF-8"} {
		if !strings.Contains(string(got), name) {
			t.Errorf("the command's environment lacks %s:\n%s", name, got)
		}
	}
	if !strings.Contains(err.Error(), "PATH=") {
		t.Errorf("the output did not reach the error: %v", err)
	}
	// Even a command that finds the secrets elsewhere (a daemon's
	// /proc/<pid>/environ is readable by its children; here, a file)
	// cannot print them into the error.
	found := filepath.Join(t.TempDir(), "found")
	os.WriteFile(found, []byte("VAULT_TOKEN="+token+"\nDEPLOY_API_KEY=deploy-api-key-value-42\n"), 0o600)
	err = runCommand(t.Context(), []string{"sh", "-c", "cat " + found + "; exit 1"}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "VAULT_TOKEN=[") {
		t.Errorf("the output did not reach the error: %v", err)
	}
	for _, s := range []string{token, "deploy-api-key-value-42"} {
		if err == nil || strings.Contains(err.Error(), s) {
			t.Errorf("the error carries a secret (%.12s...): %v", s, err)
		}
	}
}

// TestCommandOutputRedacted: a private key a command prints (whole, or
// cut by the tail kept for the error) and a Vault token never reach the
// error, which status and services.json show.
func TestCommandOutputRedacted(t *testing.T) {
	key, _ := pki.GenerateKey("ec", 256)
	keyPEM, _ := pki.MarshalKey(key)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	os.WriteFile(keyFile, keyPEM, 0o600)
	lines := strings.Split(string(keyPEM), "\n")
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("token hvs.CAESIJsomeRealLookingTokenValue0123456789\n"), 0o600)
	for name, script := range map[string]string{
		"whole key":           "cat " + keyFile + "; exit 1",
		"key cut by the tail": "cat " + keyFile + "; head -c 1900 /dev/zero | tr '\\0' x; echo; exit 1",
		"key cut by the raw tail": "head -c 30000 /dev/zero | tr '\\0' y; echo; head -c 16200 /dev/zero | tr '\\0' z; cat " + keyFile +
			"; head -c 100 /dev/zero | tr '\\0' x; echo; exit 1",
		"token": "cat " + tokenFile + "; exit 1",
	} {
		err := runCommand(t.Context(), []string{"sh", "-c", script}, 5*time.Second)
		if err == nil {
			t.Fatalf("%s: the failure was lost", name)
		}
		msg := err.Error()
		for _, l := range lines[1 : len(lines)-2] {
			if len(l) > 8 && strings.Contains(msg, l) {
				t.Errorf("%s: the error carries a line of the private key: %.200s", name, msg)
				break
			}
		}
		if strings.Contains(msg, "hvs.CAESIJ") {
			t.Errorf("%s: the error carries a Vault token: %s", name, msg)
		}
		if len(msg) > outputLimit+200 {
			t.Errorf("%s: error of %d bytes; the output kept is %d", name, len(msg), outputLimit)
		}
	}
}
