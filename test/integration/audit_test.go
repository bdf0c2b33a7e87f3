//go:build integration

package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/vault/api"
)

// auditTokens turns on a Vault file audit device that logs raw values
// and returns a function that reads back every token Vault handed out at
// a login. Those are the agent's real tokens: the strings that must never
// appear in anything certkeeper prints.
func (e *env) auditTokens() func() []string {
	e.t.Helper()
	path := filepath.Join(e.dir, "vault-audit.log")
	if err := e.vault.Client.Sys().EnableAuditWithOptions("raw", &api.EnableAuditOptions{
		Type:    "file",
		Options: map[string]string{"file_path": path, "log_raw": "true"},
	}); err != nil {
		e.t.Fatalf("enabling the audit device: %v", err)
	}
	return func() []string {
		e.t.Helper()
		f, err := os.Open(path)
		if err != nil {
			e.t.Fatalf("reading the audit log: %v", err)
		}
		defer f.Close()
		var tokens []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var entry struct {
				Type    string `json:"type"`
				Request struct {
					Path string `json:"path"`
				} `json:"request"`
				Response struct {
					Auth struct {
						ClientToken string `json:"client_token"`
					} `json:"auth"`
				} `json:"response"`
			}
			if json.Unmarshal(sc.Bytes(), &entry) != nil || entry.Type != "response" {
				continue
			}
			if tok := entry.Response.Auth.ClientToken; strings.HasPrefix(entry.Request.Path, "auth/") && strings.HasSuffix(entry.Request.Path, "/login") && tok != "" && !slices.Contains(tokens, tok) {
				tokens = append(tokens, tok)
			}
		}
		if err := sc.Err(); err != nil {
			e.t.Fatalf("reading the audit log: %v", err)
		}
		return tokens
	}
}
